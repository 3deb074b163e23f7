// The formulas of the LossFn losses (activation.h), shared by the CPU kernel
// (cpu/loss_extra.cpp) and its CUDA twin (cuda/loss.cu) so both compute the
// same thing in the same order: each term in double from float inputs, the
// gradient rounded to float once. Keras 3's definitions (keras/src/losses):
// eps is keras.backend.epsilon() = 1e-7.
#pragma once
#include <cmath>

#include "fusednn/activation.h"

#ifdef __CUDACC__
#define FUSEDNN_HD __host__ __device__ __forceinline__
#else
#define FUSEDNN_HD inline
#endif

namespace fusednn {
namespace loss_math {

constexpr double kEps = 1e-7;
// The focal losses clip probabilities to Keras' float32 bounds [1e-7, 1 - 1e-7] (as
// float32 values: the upper one is 1 - 1.19e-7), so that a saturated output
// gives the same clipped value as in Keras.
constexpr double kClipLo = double(1e-7f);
constexpr double kClipHi = double(1.0f - 1e-7f);

FUSEDNN_HD double sigmoid(double z) {
  if (z >= 0) return 1.0 / (1.0 + exp(-z));
  const double e = exp(z);
  return e / (1.0 + e);
}

// Keras 3's binary focal cross-entropy of one element (keras/src/losses/losses.py):
// t smoothed to t (1 - s) + s / 2; q = p, or sigmoid(p) from logits; bce the
// cross-entropy of q clipped to [kClipLo, kClipHi]; p_t = t q + (1 - t)(1 - q) with
// the unclipped q; loss = w (1 - p_t)^gamma bce, w = t alpha + (1 - t)(1 - alpha)
// with class balancing, else 1. *dl: d loss / d p (through the sigmoid from logits;
// the clip passes no gradient outside its bounds).
FUSEDNN_HD double binary_focal(double p, double t, const LossParams& lp, double* dl) {
  const double gamma = lp.param, s = lp.smoothing;
  if (s != 0.0) t = t * (1.0 - s) + 0.5 * s;
  const bool logits = lp.flags & loss_flags::from_logits;
  const double q = logits ? sigmoid(p) : p;
  const double qc = fmin(fmax(q, kClipLo), kClipHi);
  const double bce = -(t * log(qc) + (1.0 - t) * log(1.0 - qc));
  const double dbce = (q >= kClipLo && q <= kClipHi) ? (qc - t) / (qc * (1.0 - qc)) : 0.0;
  const double m = 1.0 - (t * q + (1.0 - t) * (1.0 - q));  // 1 - p_t
  const double f = pow(m, gamma);
  const double df = gamma == 0.0 ? 0.0 : gamma * pow(m, gamma - 1.0) * (1.0 - 2.0 * t);  // d f / d q
  const double w = (lp.flags & loss_flags::class_balancing) ? t * lp.alpha + (1.0 - t) * (1.0 - lp.alpha) : 1.0;
  const double dq = w * (df * bce + f * dbce);
  *dl = logits ? dq * q * (1.0 - q) : dq;
  return w * f * bce;
}

// Keras 3's categorical focal cross-entropy of one row: t smoothed to
// t (1 - s) + s / cols; q = p / sum(p), or softmax(p) from logits; qc = q clipped to
// [kClipLo, kClipHi]; loss = sum_j alpha (1 - qc_j)^gamma (-t_j log qc_j). When g is
// not null it receives scale * d loss / d p (through the normalisation or softmax).
FUSEDNN_HD double categorical_focal(const float* p, const float* t, long cols, float scale, float* g,
                                    const LossParams& lp) {
  const double gamma = lp.param, alpha = lp.alpha, s = lp.smoothing, share = s / double(cols);
  const bool logits = lp.flags & loss_flags::from_logits;
  double norm = 0.0, mx = -INFINITY;  // sum(p), or the softmax's shift and sum
  if (logits) {
    for (long j = 0; j < cols; ++j) mx = fmax(mx, double(p[j]));
    for (long j = 0; j < cols; ++j) norm += exp(double(p[j]) - mx);
  } else {
    for (long j = 0; j < cols; ++j) norm += double(p[j]);
  }
  const auto prob = [&](long j) { return logits ? exp(double(p[j]) - mx) / norm : double(p[j]) / norm; };
  const auto target = [&](long j) { return s != 0.0 ? double(t[j]) * (1.0 - s) + share : double(t[j]); };
  // d loss / d q_j: that of -alpha t (1 - qc)^gamma log qc w.r.t. qc, zero where the clip is active
  const auto dq = [&](double q, double tj) {
    if (!(q >= kClipLo && q <= kClipHi)) return 0.0;
    const double df = gamma == 0.0 ? 0.0 : gamma * pow(1.0 - q, gamma - 1.0);
    return alpha * tj * (df * log(q) - pow(1.0 - q, gamma) / q);
  };
  double l = 0.0, dq_dot_q = 0.0;
  for (long j = 0; j < cols; ++j) {
    const double q = prob(j), qc = fmin(fmax(q, kClipLo), kClipHi), tj = target(j);
    l += alpha * pow(1.0 - qc, gamma) * (-tj * log(qc));
    if (g) dq_dot_q += dq(q, tj) * q;
  }
  if (g) {
    // through q = p / sum(p): (dq_k - dq.q) / sum(p); through the softmax: q_k (dq_k - dq.q)
    for (long j = 0; j < cols; ++j) {
      const double q = prob(j), d = dq(q, target(j)) - dq_dot_q;
      g[j] = float(double(scale) * (logits ? q * d : d / norm));
    }
  }
  return l;
}

// Loss term of one element and its derivative w.r.t. p (before the mean's
// scale). hinge01: the call's targets are all 0 or 1, so they become 2t - 1.
FUSEDNN_HD double elem(LossFn fn, float pf, float tf, const LossParams& lp, bool hinge01, double* dl) {
  const double p = pf, t = tf, param = lp.param;
  switch (fn) {
    case LossFn::mae: {
      const double d = p - t;
      *dl = d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0);
      return fabs(d);
    }
    case LossFn::mape: {  // 100 |t - p| / max(|t|, eps)
      const double m = fmax(fabs(t), kEps), d = p - t;
      *dl = (d > 0 ? 100.0 : (d < 0 ? -100.0 : 0.0)) / m;
      return 100.0 * fabs(d) / m;
    }
    case LossFn::msle: {  // (log(max(p, eps) + 1) - log(max(t, eps) + 1))^2
      const double pc = fmax(p, kEps), d = log1p(pc) - log1p(fmax(t, kEps));
      *dl = p > kEps ? 2.0 * d / (pc + 1.0) : 0.0;
      return d * d;
    }
    case LossFn::huber: {
      const double delta = param, e = p - t, a = fabs(e);
      if (a <= delta) {
        *dl = e;
        return 0.5 * e * e;
      }
      *dl = e > 0 ? delta : -delta;
      return delta * a - 0.5 * delta * delta;
    }
    case LossFn::log_cosh: {  // x + softplus(-2x) - log 2, x = p - t: log(cosh x) without overflow
      const double x = p - t;
      *dl = tanh(x);
      return fabs(x) + log1p(exp(-2.0 * fabs(x))) - 0.69314718055994530942;
    }
    case LossFn::hinge:
    case LossFn::squared_hinge: {
      const double y = hinge01 ? 2.0 * t - 1.0 : t, m = 1.0 - y * p;
      if (m <= 0) {
        *dl = 0.0;
        return 0.0;
      }
      if (fn == LossFn::hinge) {
        *dl = -y;
        return m;
      }
      *dl = -2.0 * y * m;
      return m * m;
    }
    case LossFn::poisson: {  // p - t log(p + eps)
      *dl = 1.0 - t / (p + kEps);
      return p - t * log(p + kEps);
    }
    case LossFn::binary_focal_crossentropy:
      return binary_focal(p, t, lp, dl);
    default:
      *dl = 0.0;
      return 0.0;
  }
}

// Loss of one row of `cols` values (the row kinds) and, when g is not null,
// scale * its gradient w.r.t. the row of p.
FUSEDNN_HD double row(LossFn fn, const float* p, const float* t, long cols, float scale, float* g,
                      const LossParams& lp) {
  if (fn == LossFn::categorical_focal_crossentropy) return categorical_focal(p, t, cols, scale, g, lp);
  if (fn == LossFn::categorical_hinge) {  // max(neg - pos + 1, 0), neg = max_j (1 - t_j) p_j, pos = sum t p
    double pos = 0.0, neg = -INFINITY;
    long jmax = 0;
    for (long j = 0; j < cols; ++j) {
      pos += double(t[j]) * double(p[j]);
      const double v = (1.0 - double(t[j])) * double(p[j]);
      if (v > neg) {
        neg = v;
        jmax = j;
      }
    }
    const double l = neg - pos + 1.0;
    if (g) {
      for (long j = 0; j < cols; ++j) {
        const double d = l > 0 ? -double(t[j]) + (j == jmax ? 1.0 - double(t[j]) : 0.0) : 0.0;
        g[j] = float(double(scale) * d);
      }
    }
    return l > 0 ? l : 0.0;
  }
  if (fn == LossFn::kl_divergence) {  // sum tc log(tc / pc), tc, pc clipped to [eps, 1]
    double l = 0.0;
    for (long j = 0; j < cols; ++j) {
      const double tc = fmin(fmax(double(t[j]), kEps), 1.0), pj = p[j], pc = fmin(fmax(pj, kEps), 1.0);
      l += tc * log(tc / pc);
      if (g) g[j] = float(double(scale) * (pj >= kEps && pj <= 1.0 ? -tc / pc : 0.0));
    }
    return l;
  }
  // cosine_similarity: -sum t^ p^ with x^ = x / sqrt(max(sum x^2, eps^2))
  double pp = 0.0, tt = 0.0, tp = 0.0;
  for (long j = 0; j < cols; ++j) {
    pp += double(p[j]) * double(p[j]);
    tt += double(t[j]) * double(t[j]);
    tp += double(t[j]) * double(p[j]);
  }
  const double floor2 = kEps * kEps;
  const double ip = 1.0 / sqrt(fmax(pp, floor2)), it = 1.0 / sqrt(fmax(tt, floor2));
  const double l = -tp * ip * it;
  if (g) {
    // d/dp_j of -(t.p) it ip: -t_j it ip + (t.p) it ip^3 p_j (the second term only where the norm is not clamped)
    const double c = pp > floor2 ? tp * it * ip * ip * ip : 0.0;
    for (long j = 0; j < cols; ++j) g[j] = float(double(scale) * (-double(t[j]) * it * ip + c * double(p[j])));
  }
  return l;
}

// The loss of one sample (a row of `cols` values): the row kinds' value, or the mean of
// the elementwise kind over the row, as Keras reduces before weighting a sample.
// `rowwise` is loss_fn_is_rowwise(fn), taken on the host.
FUSEDNN_HD double sample_loss(LossFn fn, bool rowwise, const float* p, const float* t, long cols,
                              const LossParams& lp, bool hinge01) {
  if (rowwise) return row(fn, p, t, cols, 1.f, nullptr, lp);
  double l = 0.0, dl;
  for (long c = 0; c < cols; ++c) l += elem(fn, p[c], t[c], lp, hinge01, &dl);
  return l / double(cols);
}

}  // namespace loss_math
}  // namespace fusednn
