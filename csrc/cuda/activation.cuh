// Device-side activation functions shared by the elementwise kernels and the
// GEMM epilogue. Products that the CPU and NumPy round separately use the
// explicit-rounding intrinsics so nvcc cannot fuse them into an FMA: the
// backends then agree to the last bit wherever the math library does.
#pragma once
#include "fusednn/activation.h"

namespace fusednn {
namespace cuda {
namespace detail {

__device__ __forceinline__ float sigmoid1(float v) {
  // 1/(1+e) or e/(1+e) with e = e^-|v|: never overflows, keeps precision for
  // v < 0, and is one exp and one division without a divergent branch; the
  // same formula as the NumPy backend.
  const float e = expf(-fabsf(v));
  return (v >= 0.f ? 1.f : e) / (1.f + e);
}

__device__ __forceinline__ double sigmoid_d(double x) {
  const double e = exp(-fabs(x));
  return (x >= 0 ? 1.0 : e) / (1.0 + e);
}

// The activations with codes >= 4, in double and rounded once: the formulas of
// cpu/act_scalar.h (the CPU's portable path and the NumPy reference).
__device__ __forceinline__ float act_fwd_ext(float xf, Act a) {
  using namespace act_const;
  const double x = xf;
  switch (a) {
    case Act::elu: return xf > 0.f ? xf : float(expm1(x));
    case Act::selu: return float(double(kSeluScale) * (xf > 0.f ? x : double(kSeluAlpha) * expm1(x)));
    case Act::leaky_relu: return xf < 0.f ? __fmul_rn(xf, kLeakySlope) : xf;
    case Act::gelu: return float(0.5 * x * erfc(-x * 0.70710678118654752440));
    case Act::gelu_tanh: return float(x * sigmoid_d(2.0 * double(kGeluTanhC) * (x + double(kGeluTanhK) * x * x * x)));
    case Act::swish: return float(x * sigmoid_d(x));
    case Act::softplus: return float((x > 0 ? x : 0.0) + log1p(exp(-fabs(x))));
    case Act::softsign: return float(x / (1.0 + fabs(x)));
    case Act::hard_sigmoid: return xf <= -3.f ? 0.f : (xf >= 3.f ? 1.f : float(x / 6 + 0.5));
    case Act::hard_swish: return xf <= -3.f ? 0.f : (xf >= 3.f ? xf : float(x * (x + 3) / 6));
    case Act::relu6: return xf < 0.f ? 0.f : (xf > 6.f ? 6.f : xf);
    case Act::mish: {
      if (x > 20) return xf;
      const double e = exp(x), n = e * (e + 2);
      return float(x * n / (n + 2));
    }
    case Act::exponential: return float(exp(x));
    default: return xf;
  }
}

// dx from dy and s: the forward input where act_backward_needs_input(a), else the output.
__device__ __forceinline__ float act_bwd_ext(float dy, float sf, Act a) {
  using namespace act_const;
  const double s = sf;
  double d;
  switch (a) {
    case Act::elu: d = sf > 0.f ? 1.0 : s + 1; break;
    case Act::selu: d = sf > 0.f ? double(kSeluScale) : s + double(kSeluScale) * double(kSeluAlpha); break;
    case Act::leaky_relu: return sf > 0.f ? dy : __fmul_rn(dy, kLeakySlope);
    case Act::gelu: d = 0.5 * erfc(-s * 0.70710678118654752440) + s * 0.39894228040143267794 * exp(-0.5 * s * s); break;
    case Act::gelu_tanh: {
      const double c = kGeluTanhC, k = kGeluTanhK, sg = sigmoid_d(2 * c * (s + k * s * s * s));
      d = sg + 2 * s * sg * (1 - sg) * c * (1 + 3 * k * s * s);
      break;
    }
    case Act::swish: {
      const double sg = sigmoid_d(s);
      d = sg * (1 + s * (1 - sg));
      break;
    }
    case Act::softplus: d = -expm1(-s); break;
    case Act::softsign: {
      const double q = 1 + fabs(s);
      d = 1 / (q * q);
      break;
    }
    case Act::hard_sigmoid: return sf > 0.f && sf < 1.f ? __fmul_rn(dy, float(1.0 / 6.0)) : 0.f;
    case Act::hard_swish:
      if (sf < -3.f) return 0.f;
      if (sf > 3.f) return dy;
      d = (2 * s + 3) / 6;
      break;
    case Act::relu6: return sf > 0.f && sf < 6.f ? dy : 0.f;
    case Act::mish: {
      if (s > 20) return dy;
      const double e = exp(s), n = e * (e + 2), t = n / (n + 2);
      d = t + s * (4 * (n + 1) / ((n + 2) * (n + 2))) * (e / (1 + e));
      break;
    }
    case Act::exponential: d = s; break;
    default: return dy;
  }
  return float(double(dy) * d);
}

template <Act A>
__device__ __forceinline__ float act_fwd(float v) {
  if (A == Act::relu) return v < 0.f ? 0.f : v;  // NaN propagates, as np.maximum
  if (A == Act::sigmoid) return sigmoid1(v);
  if (A == Act::tanh) return tanhf(v);
  if (int(A) >= 4) return act_fwd_ext(v, A);
  return v;
}

// The GEMM epilogue picks the activation at run time: it runs once per output
// element, so a uniform branch costs nothing next to the K multiply-adds.
__device__ __forceinline__ float act_fwd_rt(float v, Act a) {
  switch (a) {
    case Act::relu: return act_fwd<Act::relu>(v);
    case Act::sigmoid: return act_fwd<Act::sigmoid>(v);
    case Act::tanh: return act_fwd<Act::tanh>(v);
    case Act::linear: return v;
    default: return act_fwd_ext(v, a);
  }
}

// dx from the upstream gradient dy and the forward output y.
template <Act A>
__device__ __forceinline__ float act_bwd(float dy, float y) {
  if (A == Act::relu) return y > 0.f ? dy : 0.f;
  if (A == Act::sigmoid) return __fmul_rn(dy, __fmul_rn(y, __fsub_rn(1.f, y)));
  // (1-y)(1+y) rather than 1-y*y: no cancellation when |y| is close to 1, and
  // the CPU and NumPy backends' formula
  if (A == Act::tanh) return __fmul_rn(dy, __fmul_rn(__fsub_rn(1.f, y), __fadd_rn(1.f, y)));
  if (int(A) >= 4) return act_bwd_ext(dy, y, A);
  return dy;
}

}  // namespace detail
}  // namespace cuda
}  // namespace fusednn
