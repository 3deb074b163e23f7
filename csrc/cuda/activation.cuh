// Device-side activation functions shared by the elementwise kernels and the
// GEMM epilogue. Products that the CPU and NumPy round separately use the
// explicit-rounding intrinsics so nvcc cannot fuse them into an FMA: the
// backends then agree to the last bit wherever the math library does.
#pragma once
#include "fusednn/act_ext.h"
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

// The activations with codes >= 4: fusednn/act_ext.h, shared with the CPU.
__device__ __forceinline__ float act_fwd_ext(float x, Act a) { return act_ext::act_fwd(x, a); }
__device__ __forceinline__ float act_bwd_ext(float dy, float s, Act a) { return act_ext::act_bwd(dy, s, a); }

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
