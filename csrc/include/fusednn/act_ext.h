// Scalar forms of the activations with codes >= 4 (elu ... exponential), written once
// for the CPU (the portable kernels and the AVX2 kernels' fallback) and the GPU (the
// elementwise kernels and the GEMM epilogue). The transcendental ones are evaluated in
// double and rounded once, so every backend is within one float32 rounding of the exact
// value and the CPU and GPU agree wherever their math libraries do.
#pragma once
#include <cmath>

#include "fusednn/activation.h"

// Host copies have internal linkage: a copy compiled with AVX2 flags must never be the
// one another translation unit links to.
#if defined(__CUDACC__)
#define FUSEDNN_ACT_HD static inline __host__ __device__
#else
#define FUSEDNN_ACT_HD static inline
#endif

namespace fusednn {
namespace act_ext {

// a * b rounded once: on the device nvcc may not contract it into a neighbouring FMA,
// which the CPU and NumPy backends do not do either.
FUSEDNN_ACT_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

FUSEDNN_ACT_HD double sigmoid_d(double x) {
  const double e = exp(-fabs(x));  // never overflows; e / (1 + e) keeps precision for x < 0
  return (x >= 0 ? 1.0 : e) / (1.0 + e);
}

FUSEDNN_ACT_HD double softplus_d(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }

// y = act(x) for the activations with codes >= 4; other codes return x.
FUSEDNN_ACT_HD float act_fwd(float xf, Act a) {
  using namespace act_const;
  const double x = xf;
  switch (a) {
    case Act::elu: return xf > 0.f ? xf : float(expm1(x));
    case Act::selu: return float(double(kSeluScale) * (xf > 0.f ? x : double(kSeluAlpha) * expm1(x)));
    case Act::leaky_relu: return xf < 0.f ? mul_rn(xf, kLeakySlope) : xf;
    case Act::gelu: return float(0.5 * x * erfc(-x * 0.70710678118654752440));
    case Act::gelu_tanh: {
      const double u = double(kGeluTanhC) * (x + double(kGeluTanhK) * x * x * x);
      return float(x * sigmoid_d(2 * u));  // 0.5 x (1 + tanh u) without cancellation
    }
    case Act::swish: return float(x * sigmoid_d(x));
    case Act::softplus: return float(softplus_d(x));
    case Act::softsign: return float(x / (1 + fabs(x)));
    case Act::hard_sigmoid: return xf <= -3.f ? 0.f : (xf >= 3.f ? 1.f : float(x / 6 + 0.5));
    case Act::hard_swish: return xf <= -3.f ? 0.f : (xf >= 3.f ? xf : float(x * (x + 3) / 6));
    case Act::relu6: return xf < 0.f ? 0.f : (xf > 6.f ? 6.f : xf);
    case Act::mish: {
      if (x > 20) return xf;  // tanh(softplus(x)) == 1 in double
      const double e = exp(x), n = e * (e + 2);
      return float(x * n / (n + 2));  // tanh(log(1 + e)) = n / (n + 2)
    }
    case Act::exponential: return float(exp(x));
    default: return xf;
  }
}

// dx = dy * act'(x) where s is the saved forward input x when
// act_backward_needs_input(a), else the forward output y.
FUSEDNN_ACT_HD float act_bwd(float dy, float sf, Act a) {
  using namespace act_const;
  const double s = sf;
  double d;
  switch (a) {
    case Act::elu: d = sf > 0.f ? 1.0 : s + 1; break;
    case Act::selu: d = sf > 0.f ? double(kSeluScale) : s + double(kSeluScale) * double(kSeluAlpha); break;
    case Act::leaky_relu: return sf > 0.f ? dy : mul_rn(dy, kLeakySlope);
    case Act::gelu: {  // Phi(x) + x phi(x)
      const double pdf = 0.39894228040143267794 * exp(-0.5 * s * s);
      d = 0.5 * erfc(-s * 0.70710678118654752440) + s * pdf;
      break;
    }
    case Act::gelu_tanh: {
      const double c = kGeluTanhC, k = kGeluTanhK;
      const double u = c * (s + k * s * s * s), sg = sigmoid_d(2 * u);  // (1 + tanh u) / 2
      // d/dx [x (1 + tanh u) / 2] = (1 + tanh u)/2 + x (1 - tanh^2 u) u' / 2, 1 - tanh^2 = 4 sg (1 - sg)
      d = sg + 2 * s * sg * (1 - sg) * c * (1 + 3 * k * s * s);
      break;
    }
    case Act::swish: {
      const double sg = sigmoid_d(s);
      d = sg * (1 + s * (1 - sg));
      break;
    }
    case Act::softplus: d = -expm1(-s); break;  // sigmoid(x) = 1 - e^-y
    case Act::softsign: {
      const double q = 1 + fabs(s);
      d = 1 / (q * q);
      break;
    }
    case Act::hard_sigmoid: return sf > 0.f && sf < 1.f ? mul_rn(dy, float(1.0 / 6.0)) : 0.f;
    case Act::hard_swish: {
      if (sf < -3.f) return 0.f;
      if (sf > 3.f) return dy;
      d = (2 * s + 3) / 6;
      break;
    }
    case Act::relu6: return sf > 0.f && sf < 6.f ? dy : 0.f;
    case Act::mish: {
      if (s > 20) return dy;
      const double e = exp(s), n = e * (e + 2), t = n / (n + 2);
      // tanh(sp) + x sech^2(sp) sigmoid(x), sech^2 = 1 - t^2 = 4 (n + 1) / (n + 2)^2
      d = t + s * (4 * (n + 1) / ((n + 2) * (n + 2))) * (e / (1 + e));
      break;
    }
    case Act::exponential: d = s; break;
    default: return dy;
  }
  return float(double(dy) * d);
}

}  // namespace act_ext
}  // namespace fusednn

#undef FUSEDNN_ACT_HD
