// Scalar forms of the activations beyond linear/relu/sigmoid/tanh: the
// portable kernels, and the AVX2 kernels' fallback for the few they do not
// vectorise. The transcendental ones are evaluated in double and rounded
// once, so this path is within one float32 rounding of the exact value.
// Everything is `static inline`: no copy compiled for AVX2 can be linked in.
#pragma once
#include <cmath>

#include "fusednn/activation.h"

namespace fusednn {
namespace cpu {
namespace scalar {

static inline double sigmoid_d(double x) {
  if (x < 0) {
    const double e = std::exp(x);
    return e / (1 + e);
  }
  return 1 / (1 + std::exp(-x));
}

static inline double softplus_d(double x) { return (x > 0 ? x : 0.0) + std::log1p(std::exp(-std::fabs(x))); }

// y = act(x) for the activations with codes >= 4.
static inline float act_fwd(float xf, Act a) {
  using namespace act_const;
  const double x = xf;
  switch (a) {
    case Act::elu: return xf > 0.f ? xf : float(std::expm1(x));
    case Act::selu: return float(double(kSeluScale) * (xf > 0.f ? x : double(kSeluAlpha) * std::expm1(x)));
    case Act::leaky_relu: return xf < 0.f ? xf * kLeakySlope : xf;
    case Act::gelu: return float(0.5 * x * std::erfc(-x * 0.70710678118654752440));
    case Act::gelu_tanh: {
      const double u = double(kGeluTanhC) * (x + double(kGeluTanhK) * x * x * x);
      return float(x * sigmoid_d(2 * u));  // 0.5 x (1 + tanh u) without cancellation
    }
    case Act::swish: return float(x * sigmoid_d(x));
    case Act::softplus: return float(softplus_d(x));
    case Act::softsign: return float(x / (1 + std::fabs(x)));
    case Act::hard_sigmoid: return xf <= -3.f ? 0.f : (xf >= 3.f ? 1.f : float(x / 6 + 0.5));
    case Act::hard_swish: return xf <= -3.f ? 0.f : (xf >= 3.f ? xf : float(x * (x + 3) / 6));
    case Act::relu6: return xf < 0.f ? 0.f : (xf > 6.f ? 6.f : xf);
    case Act::mish: {
      if (x > 20) return xf;  // tanh(softplus(x)) == 1 in double
      const double e = std::exp(x), n = e * (e + 2);
      return float(x * n / (n + 2));  // tanh(log(1 + e)) = n / (n + 2)
    }
    case Act::exponential: return float(std::exp(x));
    default: return xf;
  }
}

// dx = dy * act'(x) where s is the saved forward input x when
// act_backward_needs_input(a), else the forward output y.
static inline float act_bwd(float dy, float sf, Act a) {
  using namespace act_const;
  const double s = sf;
  double d;
  switch (a) {
    case Act::elu: d = sf > 0.f ? 1.0 : s + 1; break;
    case Act::selu: d = sf > 0.f ? double(kSeluScale) : s + double(kSeluScale) * double(kSeluAlpha); break;
    case Act::leaky_relu: return sf > 0.f ? dy : dy * kLeakySlope;
    case Act::gelu: {  // Phi(x) + x phi(x)
      const double pdf = 0.39894228040143267794 * std::exp(-0.5 * s * s);
      d = 0.5 * std::erfc(-s * 0.70710678118654752440) + s * pdf;
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
    case Act::softplus: d = -std::expm1(-s); break;  // sigmoid(x) = 1 - e^-y
    case Act::softsign: {
      const double q = 1 + std::fabs(s);
      d = 1 / (q * q);
      break;
    }
    case Act::hard_sigmoid: return sf > 0.f && sf < 1.f ? dy * float(1.0 / 6.0) : 0.f;
    case Act::hard_swish: {
      if (sf < -3.f) return 0.f;
      if (sf > 3.f) return dy;
      d = (2 * s + 3) / 6;
      break;
    }
    case Act::relu6: return sf > 0.f && sf < 6.f ? dy : 0.f;
    case Act::mish: {
      if (s > 20) return dy;
      const double e = std::exp(s), n = e * (e + 2), t = n / (n + 2);
      // tanh(sp) + x sech^2(sp) sigmoid(x), sech^2 = 1 - t^2 = 4 (n + 1) / (n + 2)^2
      d = t + s * (4 * (n + 1) / ((n + 2) * (n + 2))) * (e / (1 + e));
      break;
    }
    case Act::exponential: d = s; break;
    default: return dy;
  }
  return float(double(dy) * d);
}

}  // namespace scalar
}  // namespace cpu
}  // namespace fusednn
