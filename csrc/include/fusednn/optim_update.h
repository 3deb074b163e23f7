// Keras 3's optimizer update rules, one element at a time, shared by the CPU
// kernels (csrc/cpu/optim_keras*.cpp), the CUDA kernel (csrc/cuda/optim_keras.cu)
// and the fused trainer (trainer.h), in the operation order of Keras'
// update_step / _clip_gradients / _apply_weight_decay / EMA code, float32
// throughout. Every quantity that depends on the step (the learning rate from a
// schedule, bias corrections, Nadam's momentum products, the EMA momentum) is
// computed once per step in Python (fusednn.optimizers) and handed over as a row
// of kOptParams floats, so the per-op and fused paths read the same numbers.
#pragma once
#include <cmath>
#include <cstddef>

#ifdef __CUDACC__
#define FUSEDNN_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// always inlined: the portable and the AVX2 translation units both include this
// header, and an out-of-line copy from the AVX2 one must never serve the other
#define FUSEDNN_HD inline __attribute__((always_inline))
#else
#define FUSEDNN_HD inline
#endif

namespace fusednn {

enum class OptKind : int { sgd = 0, adam = 1, rmsprop = 2, adagrad = 3, adadelta = 4, adamax = 5, nadam = 6, lion = 7 };
constexpr int kOptKinds = 8;

// Flag bits of an update (constant over a run).
namespace optf {
constexpr int nesterov = 1;       // SGD
constexpr int centered = 2;       // RMSprop
constexpr int amsgrad = 4;        // Adam/AdamW: s3 = max of v so far
constexpr int momentum = 8;       // SGD, RMSprop: momentum > 0 (uses a momentum state)
constexpr int weight_decay = 16;  // w -= w * wd * lr before the update
constexpr int ema = 32;           // keep an exponential moving average of w
constexpr int clip_value = 64;    // g = clip(g, -c, c)
constexpr int clip_norm = 128;    // g = g * c / max(||g||, c), per variable
constexpr int clip_global = 256;  // g = g * c * min(1/N, 1/c) + (N - N), N = the global norm
constexpr int all = 511;
}  // namespace optf

// The row of per-step parameters. P_A.. mean, per kind:
//   sgd:      A momentum
//   adam:     A alpha = lr*sqrt(1-b2^t)/(1-b1^t), B 1-b1, C 1-b2, D epsilon
//   rmsprop:  A rho, B 1-rho, C epsilon, D momentum
//   adagrad:  A epsilon
//   adadelta: A rho, B 1-rho, C epsilon
//   adamax:   A 1-b1, B b2, C epsilon, D 1-b1^t
//   nadam:    A 1-b1, B 1-b2, C epsilon, D u_{t+1}, E 1-u_prod_{t+1}, F 1-u_t, G 1-u_prod_t, H 1-b2^t
//   lion:     A b1, B 1-b1, C b2, D 1-b2
// P_EMA is the EMA momentum of this step (0 on the first step, as Keras), P_EMA1
// one minus it, P_EMA_OW 1 when the model variables take the average this step.
enum OptParam : int { P_LR = 0, P_WD, P_CLIP, P_EMA, P_EMA1, P_EMA_OW, P_A, P_B, P_C, P_D, P_E, P_F, P_G, P_H };
constexpr int kOptParams = 16;

struct OptStep {
  float p[kOptParams];
};

// The clipping factor from the sum of squares of the gradient(s) it applies to:
// the per-variable denominator max(||g||, c), or the global scale. Computed in
// double from the float32 clip value (the same formula runs in Python for the
// NumPy backend), rounded once.
FUSEDNN_HD float clip_factor(int flags, float clip, double sumsq) {
  const double c = double(clip);
  if (flags & optf::clip_norm) {
    const double norm = sqrt(sumsq);
    return float(norm > c ? norm : c);
  }
  if (flags & optf::clip_global) {
    const double norm = sqrt(sumsq);
    const double inv = 1.0 / norm, invc = 1.0 / c;  // 1/0 = inf: min picks 1/c, scale 1
    return float(c * (inv < invc ? inv : invc) + (norm - norm));
  }
  return 1.f;
}

FUSEDNN_HD float clip_grad(float g, int flags, float clip, float factor) {
  if (flags & optf::clip_value) return g < -clip ? -clip : (g > clip ? clip : g);
  if (flags & optf::clip_norm) return (g * clip) / factor;
  if (flags & optf::clip_global) return g * factor;
  return g;
}

// sign(x), NaN for NaN; branch-free so that the CPU loops vectorise
FUSEDNN_HD float sign_of(float x) {
  const float s = float(x > 0.f) - float(x < 0.f);
  return x != x ? x : s;
}

// The flag bits that change a kind's own arithmetic (the kernels are compiled
// once per valid combination of them: kf below is a compile-time constant).
constexpr int kKindFlagMask = optf::nesterov | optf::centered | optf::amsgrad | optf::momentum;

// Whether kind K with kind-flags KF reads state array `slot` (1..3).
FUSEDNN_HD constexpr bool opt_uses(int K, int KF, int slot) {
  return K == int(OptKind::sgd)       ? (slot == 1 && (KF & optf::momentum))
         : K == int(OptKind::adam)    ? (slot <= 2 || (KF & optf::amsgrad))
         : K == int(OptKind::rmsprop) ? (slot == 1 || (slot == 2 && (KF & optf::momentum)) ||
                                         (slot == 3 && (KF & optf::centered)))
         : (K == int(OptKind::adagrad) || K == int(OptKind::lion)) ? slot == 1
                                                                    : slot <= 2;
}

// Keras' _apply_weight_decay: w - w * wd * lr.
FUSEDNN_HD float decayed(float w, const float* p) { return w - w * p[P_WD] * p[P_LR]; }

// The kind's update_step on one element: w (already decayed), the clipped
// gradient g and the state values a, b, c (s1..s3; unused ones untouched).
// Which state a kind keeps:
//   sgd: s1 momentum | adam: s1 m, s2 v, s3 v_hat | rmsprop: s1 velocity, s2 momentum, s3 average gradient
//   adagrad: s1 accumulator | adadelta: s1 accumulated grad, s2 accumulated delta | adamax: s1 m, s2 u
//   nadam: s1 m, s2 v | lion: s1 m
template <int K, int KF>
FUSEDNN_HD void opt_core(const float* p, float& w, float g, float& a, float& b, float& c) {
  const float lr = p[P_LR];
  if (K == int(OptKind::sgd)) {
    if (KF & optf::momentum) {
      const float mom = p[P_A];
      a = a * mom - g * lr;
      w = w + ((KF & optf::nesterov) ? a * mom - g * lr : a);
    } else {
      w = w - g * lr;
    }
  } else if (K == int(OptKind::adam)) {
    a = a + (g - a) * p[P_B];
    b = b + (g * g - b) * p[P_C];
    float v = b;
    if (KF & optf::amsgrad) {
      c = c > v ? c : v;
      v = c;
    }
    w = w - (a * p[P_A]) / (sqrtf(v) + p[P_D]);
  } else if (K == int(OptKind::rmsprop)) {
    a = p[P_A] * a + p[P_B] * (g * g);
    float den;
    if (KF & optf::centered) {
      c = p[P_A] * c + p[P_B] * g;
      den = (a - c * c) + p[P_C];
    } else {
      den = a + p[P_C];
    }
    const float inc = (lr * g) / sqrtf(den);
    if (KF & optf::momentum) {
      b = p[P_D] * b + inc;
      w = w - b;
    } else {
      w = w - inc;
    }
  } else if (K == int(OptKind::adagrad)) {
    a = a + g * g;
    w = w - (lr * g) / sqrtf(a + p[P_A]);
  } else if (K == int(OptKind::adadelta)) {
    a = p[P_A] * a + p[P_B] * (g * g);
    const float delta = -((sqrtf(b + p[P_C]) * g) / sqrtf(a + p[P_C]));
    b = p[P_A] * b + p[P_B] * (delta * delta);
    w = w + lr * delta;
  } else if (K == int(OptKind::adamax)) {
    a = a + (g - a) * p[P_A];
    const float bu = p[P_B] * b, ag = fabsf(g);
    b = bu > ag ? bu : ag;
    w = w - (lr * a) / (p[P_D] * (b + p[P_C]));
  } else if (K == int(OptKind::nadam)) {
    a = a + (g - a) * p[P_A];
    b = b + (g * g - b) * p[P_B];
    const float m_hat = (p[P_D] * a) / p[P_E] + (p[P_F] * g) / p[P_G];
    const float v_hat = b / p[P_H];
    w = w - (m_hat * lr) / (sqrtf(v_hat) + p[P_C]);
  } else if (K == int(OptKind::lion)) {
    w = w - lr * sign_of(a * p[P_A] + g * p[P_B]);
    a = a * p[P_C] + g * p[P_D];
  }
}

// The moving average after the update (Keras' _update_model_variables_moving_average),
// and the model variable overwritten by it on the steps ema_overwrite_frequency says.
FUSEDNN_HD void ema_elem(const float* p, float& w, float& avg) {
  avg = p[P_EMA] * avg + p[P_EMA1] * w;
  if (p[P_EMA_OW] != 0.f) w = avg;
}

// One element, the whole of a step in Keras' order: clip g, decay w, update, EMA.
template <int K, int KF>
FUSEDNN_HD void opt_elem(const float* p, int flags, float factor, std::size_t i, float* w, const float* grad,
                         float* s1, float* s2, float* s3, float* ema) {
  const float g = clip_grad(grad[i], flags, p[P_CLIP], factor);
  float wi = w[i];
  if (flags & optf::weight_decay) wi = decayed(wi, p);
  float a = opt_uses(K, KF, 1) ? s1[i] : 0.f, b = opt_uses(K, KF, 2) ? s2[i] : 0.f,
        c = opt_uses(K, KF, 3) ? s3[i] : 0.f;
  opt_core<K, KF>(p, wi, g, a, b, c);
  if (opt_uses(K, KF, 1)) s1[i] = a;
  if (opt_uses(K, KF, 2)) s2[i] = b;
  if (opt_uses(K, KF, 3)) s3[i] = c;
  if (flags & optf::ema) ema_elem(p, wi, ema[i]);
  w[i] = wi;
}

// Calls f.template operator()<K, KF>() for the compiled (kind, kind-flags)
// combination of `kind` and `flags` (the kind flags a kind ignores are dropped).
template <class F>
inline void opt_dispatch(int kind, int flags, F&& f) {
  const bool mom = (flags & optf::momentum) != 0;
  switch (kind) {
    case int(OptKind::sgd):
      if (!mom) return f.template run<0, 0>();
      if (flags & optf::nesterov) return f.template run<0, optf::momentum | optf::nesterov>();
      return f.template run<0, optf::momentum>();
    case int(OptKind::adam):
      if (flags & optf::amsgrad) return f.template run<1, optf::amsgrad>();
      return f.template run<1, 0>();
    case int(OptKind::rmsprop):
      if (flags & optf::centered) {
        if (mom) return f.template run<2, optf::centered | optf::momentum>();
        return f.template run<2, optf::centered>();
      }
      if (mom) return f.template run<2, optf::momentum>();
      return f.template run<2, 0>();
    case int(OptKind::adagrad): return f.template run<3, 0>();
    case int(OptKind::adadelta): return f.template run<4, 0>();
    case int(OptKind::adamax): return f.template run<5, 0>();
    case int(OptKind::nadam): return f.template run<6, 0>();
    default: return f.template run<7, 0>();
  }
}

// Which optional state arrays a kind/flags combination reads (s1, s2, s3).
inline void opt_state_use(OptKind kind, int flags, bool* s1, bool* s2, bool* s3) {
  *s1 = *s2 = *s3 = false;
  switch (kind) {
    case OptKind::sgd: *s1 = (flags & optf::momentum) != 0; break;
    case OptKind::adam: *s1 = *s2 = true; *s3 = (flags & optf::amsgrad) != 0; break;
    case OptKind::rmsprop:
      *s1 = true;
      *s2 = (flags & optf::momentum) != 0;
      *s3 = (flags & optf::centered) != 0;
      break;
    case OptKind::adagrad: *s1 = true; break;
    case OptKind::adadelta: case OptKind::adamax: case OptKind::nadam: *s1 = *s2 = true; break;
    case OptKind::lion: *s1 = true; break;
  }
}

}  // namespace fusednn
