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

template <Act A>
__device__ __forceinline__ float act_fwd(float v) {
  if (A == Act::relu) return v < 0.f ? 0.f : v;  // NaN propagates, as np.maximum
  if (A == Act::sigmoid) return sigmoid1(v);
  if (A == Act::tanh) return tanhf(v);
  return v;
}

// The GEMM epilogue picks the activation at run time: it runs once per output
// element, so a uniform branch costs nothing next to the K multiply-adds.
__device__ __forceinline__ float act_fwd_rt(float v, Act a) {
  switch (a) {
    case Act::relu: return act_fwd<Act::relu>(v);
    case Act::sigmoid: return act_fwd<Act::sigmoid>(v);
    case Act::tanh: return act_fwd<Act::tanh>(v);
    default: return v;
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
  return dy;
}

}  // namespace detail
}  // namespace cuda
}  // namespace fusednn
