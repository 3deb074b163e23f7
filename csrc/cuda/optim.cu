// Optimizer updates in the exact operation order of cpu/optim.cpp (Keras 3).
// Every product and sum uses an explicit-rounding intrinsic so nvcc cannot
// contract it into an FMA: the result then matches the CPU and NumPy bit for bit.
#include <cmath>

#include "elementwise.cuh"
#include "fusednn/cuda.h"

namespace fusednn {
namespace cuda {

namespace {

using detail::kMapThreads;

enum class Sgd { plain, momentum, nesterov };

template <Sgd MODE>
__device__ __forceinline__ void sgd1(float& w, float g, float& v, float lr, float mu) {
  if (MODE == Sgd::plain) {
    w = __fsub_rn(w, __fmul_rn(lr, g));
    return;
  }
  const float vi = __fsub_rn(__fmul_rn(mu, v), __fmul_rn(lr, g));
  v = vi;
  if (MODE == Sgd::nesterov)
    w = __fadd_rn(w, __fsub_rn(__fmul_rn(mu, vi), __fmul_rn(lr, g)));
  else
    w = __fadd_rn(w, vi);
}

// VEC: w, g and v (when used) are 16-byte aligned; float4 groups, then the
// last n % 4 elements one by one.
template <Sgd MODE, bool VEC>
__global__ void __launch_bounds__(kMapThreads)
    sgd_kernel(float* w, const float* g, float* v, std::size_t n, float lr, float mu) {
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  const std::size_t t = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  std::size_t start = 0;
  if (VEC) {
    const std::size_t n4 = n / 4;
    for (std::size_t i = t; i < n4; i += stride) {
      float4 w4 = reinterpret_cast<float4*>(w)[i];
      const float4 g4 = reinterpret_cast<const float4*>(g)[i];
      float4 v4 = MODE == Sgd::plain ? g4 : reinterpret_cast<float4*>(v)[i];
      sgd1<MODE>(w4.x, g4.x, v4.x, lr, mu);
      sgd1<MODE>(w4.y, g4.y, v4.y, lr, mu);
      sgd1<MODE>(w4.z, g4.z, v4.z, lr, mu);
      sgd1<MODE>(w4.w, g4.w, v4.w, lr, mu);
      reinterpret_cast<float4*>(w)[i] = w4;
      if (MODE != Sgd::plain) reinterpret_cast<float4*>(v)[i] = v4;
    }
    start = 4 * n4;
  }
  for (std::size_t i = start + t; i < n; i += stride) {
    float wi = w[i], vi = MODE == Sgd::plain ? 0.f : v[i];
    sgd1<MODE>(wi, g[i], vi, lr, mu);
    w[i] = wi;
    if (MODE != Sgd::plain) v[i] = vi;
  }
}

template <Sgd MODE>
cudaError_t launch_sgd(float* w, const float* g, float* v, std::size_t n, float lr, float mu,
                       cudaStream_t stream) {
  const bool vec = detail::aligned16(w) && detail::aligned16(g) &&
                   (MODE == Sgd::plain || detail::aligned16(v));
  if (vec)
    sgd_kernel<MODE, true><<<detail::grid_for(n / 4 > 0 ? n / 4 : 1), kMapThreads, 0, stream>>>(
        w, g, v, n, lr, mu);
  else
    sgd_kernel<MODE, false><<<detail::grid_for(n), kMapThreads, 0, stream>>>(w, g, v, n, lr, mu);
  return cudaGetLastError();
}

__device__ __forceinline__ void adam1(float& w, float g, float& m, float& v, float alpha, float c1,
                                      float c2, float eps) {
  const float mi = __fadd_rn(m, __fmul_rn(__fsub_rn(g, m), c1));
  const float vi = __fadd_rn(v, __fmul_rn(__fsub_rn(__fmul_rn(g, g), v), c2));
  m = mi;
  v = vi;
  w = __fsub_rn(w, __fdiv_rn(__fmul_rn(mi, alpha), __fadd_rn(__fsqrt_rn(vi), eps)));
}

template <bool VEC>
__global__ void __launch_bounds__(kMapThreads)
    adam_kernel(float* w, const float* g, float* m, float* v, std::size_t n, float alpha, float c1,
                float c2, float eps) {
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  const std::size_t t = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  std::size_t start = 0;
  if (VEC) {
    const std::size_t n4 = n / 4;
    for (std::size_t i = t; i < n4; i += stride) {
      float4 w4 = reinterpret_cast<float4*>(w)[i], m4 = reinterpret_cast<float4*>(m)[i];
      float4 v4 = reinterpret_cast<float4*>(v)[i];
      const float4 g4 = reinterpret_cast<const float4*>(g)[i];
      adam1(w4.x, g4.x, m4.x, v4.x, alpha, c1, c2, eps);
      adam1(w4.y, g4.y, m4.y, v4.y, alpha, c1, c2, eps);
      adam1(w4.z, g4.z, m4.z, v4.z, alpha, c1, c2, eps);
      adam1(w4.w, g4.w, m4.w, v4.w, alpha, c1, c2, eps);
      reinterpret_cast<float4*>(w)[i] = w4;
      reinterpret_cast<float4*>(m)[i] = m4;
      reinterpret_cast<float4*>(v)[i] = v4;
    }
    start = 4 * n4;
  }
  for (std::size_t i = start + t; i < n; i += stride) {
    float wi = w[i], mi = m[i], vi = v[i];
    adam1(wi, g[i], mi, vi, alpha, c1, c2, eps);
    w[i] = wi;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

cudaError_t sgd_update(float* w, const float* g, float* v, std::size_t n, float lr, float momentum,
                       bool nesterov, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (momentum == 0.f || v == nullptr) return launch_sgd<Sgd::plain>(w, g, v, n, lr, momentum, stream);
  if (nesterov) return launch_sgd<Sgd::nesterov>(w, g, v, n, lr, momentum, stream);
  return launch_sgd<Sgd::momentum>(w, g, v, n, lr, momentum, stream);
}

cudaError_t adam_update(float* w, const float* g, float* m, float* v, std::size_t n, float lr,
                        float beta1, float beta2, float eps, std::int64_t step,
                        cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  // Computed as cpu::adam_update and numpy.adam_alpha do: in double from the
  // float32 hyperparameters, rounded once to float32.
  const double t = double(step);
  const float alpha = float(double(lr) * std::sqrt(1.0 - std::pow(double(beta2), t)) /
                            (1.0 - std::pow(double(beta1), t)));
  const float c1 = 1.f - beta1, c2 = 1.f - beta2;
  const bool vec = detail::aligned16(w) && detail::aligned16(g) && detail::aligned16(m) &&
                   detail::aligned16(v);
  if (vec)
    adam_kernel<true><<<detail::grid_for(n / 4 > 0 ? n / 4 : 1), kMapThreads, 0, stream>>>(
        w, g, m, v, n, alpha, c1, c2, eps);
  else
    adam_kernel<false><<<detail::grid_for(n), kMapThreads, 0, stream>>>(w, g, m, v, n, alpha, c1,
                                                                        c2, eps);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fusednn
