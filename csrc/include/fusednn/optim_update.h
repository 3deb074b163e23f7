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

FUSEDNN_HD float sign_of(float x) { return x > 0.f ? 1.f : (x < 0.f ? -1.f : x); }  // keeps 0 and NaN

// One element: clip g, decay w, the kind's update of w and its state s1..s3,
// then the moving average. Which state arrays a kind uses:
//   sgd: s1 momentum | adam: s1 m, s2 v, s3 v_hat | rmsprop: s1 velocity, s2 momentum, s3 average gradient
//   adagrad: s1 accumulator | adadelta: s1 accumulated grad, s2 accumulated delta | adamax: s1 m, s2 u
//   nadam: s1 m, s2 v | lion: s1 m
template <int K>
FUSEDNN_HD void opt_elem(const float* p, int flags, float factor, std::size_t i, float* w, const float* grad,
                         float* s1, float* s2, float* s3, float* ema) {
  const float lr = p[P_LR];
  const float g = clip_grad(grad[i], flags, p[P_CLIP], factor);
  float wi = w[i];
  if (flags & optf::weight_decay) wi = wi - wi * p[P_WD] * lr;
  if (K == int(OptKind::sgd)) {
    if (flags & optf::momentum) {
      const float mom = p[P_A];
      const float m = s1[i] * mom - g * lr;
      s1[i] = m;
      wi = wi + ((flags & optf::nesterov) ? m * mom - g * lr : m);
    } else {
      wi = wi - g * lr;
    }
  } else if (K == int(OptKind::adam)) {
    const float m = s1[i] + (g - s1[i]) * p[P_B];
    float v = s2[i] + (g * g - s2[i]) * p[P_C];
    s1[i] = m;
    s2[i] = v;
    if (flags & optf::amsgrad) {
      v = s3[i] > v ? s3[i] : v;
      s3[i] = v;
    }
    wi = wi - (m * p[P_A]) / (sqrtf(v) + p[P_D]);
  } else if (K == int(OptKind::rmsprop)) {
    const float vel = p[P_A] * s1[i] + p[P_B] * (g * g);
    s1[i] = vel;
    float den;
    if (flags & optf::centered) {
      const float ag = p[P_A] * s3[i] + p[P_B] * g;
      s3[i] = ag;
      den = (vel - ag * ag) + p[P_C];
    } else {
      den = vel + p[P_C];
    }
    const float inc = (lr * g) / sqrtf(den);
    if (flags & optf::momentum) {
      const float mo = p[P_D] * s2[i] + inc;
      s2[i] = mo;
      wi = wi - mo;
    } else {
      wi = wi - inc;
    }
  } else if (K == int(OptKind::adagrad)) {
    const float acc = s1[i] + g * g;
    s1[i] = acc;
    wi = wi - (lr * g) / sqrtf(acc + p[P_A]);
  } else if (K == int(OptKind::adadelta)) {
    const float ag = p[P_A] * s1[i] + p[P_B] * (g * g);
    s1[i] = ag;
    const float delta = -((sqrtf(s2[i] + p[P_C]) * g) / sqrtf(ag + p[P_C]));
    s2[i] = p[P_A] * s2[i] + p[P_B] * (delta * delta);
    wi = wi + lr * delta;
  } else if (K == int(OptKind::adamax)) {
    const float m = s1[i] + (g - s1[i]) * p[P_A];
    const float bu = p[P_B] * s2[i], ag = fabsf(g);
    const float u = bu > ag ? bu : ag;
    s1[i] = m;
    s2[i] = u;
    wi = wi - (lr * m) / (p[P_D] * (u + p[P_C]));
  } else if (K == int(OptKind::nadam)) {
    const float m = s1[i] + (g - s1[i]) * p[P_A];
    const float v = s2[i] + (g * g - s2[i]) * p[P_B];
    s1[i] = m;
    s2[i] = v;
    const float m_hat = (p[P_D] * m) / p[P_E] + (p[P_F] * g) / p[P_G];
    const float v_hat = v / p[P_H];
    wi = wi - (m_hat * lr) / (sqrtf(v_hat) + p[P_C]);
  } else if (K == int(OptKind::lion)) {
    const float m = s1[i];
    wi = wi - lr * sign_of(m * p[P_A] + g * p[P_B]);
    s1[i] = m * p[P_C] + g * p[P_D];
  }
  w[i] = wi;
  if (flags & optf::ema) {
    const float a = p[P_EMA] * ema[i] + p[P_EMA1] * wi;
    ema[i] = a;
    if (p[P_EMA_OW] != 0.f) w[i] = a;
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
