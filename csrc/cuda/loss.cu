// MSE value (a deterministic two-pass reduction) and gradient, the twins of
// cpu/loss.cpp.
#include "elementwise.cuh"
#include "fusednn/cuda.h"

namespace fusednn {
namespace cuda {

namespace {

constexpr int kThreads = 256;
// The first pass always uses this many blocks (fewer for small n, as a
// function of n alone), so the reduction tree, and therefore the rounding,
// is the same on every run and every device.
constexpr int kMaxBlocks = 1024;
constexpr int kUnroll = 4;

// Sum of a double over the block, in a fixed order; the result is valid in thread 0.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;
}

// Elements [4g, 4g + 4) of p, zero past n; one 128-bit load when aligned.
// Both paths give the same four values, so alignment does not change the sum.
__device__ __forceinline__ float4 group(const float* p, std::size_t g, std::size_t n, bool vec) {
  const std::size_t i = 4 * g;
  if (vec && i + 4 <= n) return reinterpret_cast<const float4*>(p)[g];
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (i < n) v.x = p[i];
  if (i + 1 < n) v.y = p[i + 1];
  if (i + 2 < n) v.z = p[i + 2];
  if (i + 3 < n) v.w = p[i + 3];
  return v;
}

// (p - t)^2 of four elements, added to acc in a fixed order. The difference is
// rounded to float once (as the float32 kernels everywhere do) and squared in
// double.
__device__ __forceinline__ double add_sq(double acc, float4 p, float4 t) {
  const double d0 = __fsub_rn(p.x, t.x), d1 = __fsub_rn(p.y, t.y);
  const double d2 = __fsub_rn(p.z, t.z), d3 = __fsub_rn(p.w, t.w);
  acc = fma(d0, d0, acc);
  acc = fma(d1, d1, acc);
  acc = fma(d2, d2, acc);
  return fma(d3, d3, acc);
}

__global__ void __launch_bounds__(kThreads)
    mse_partials(const float* p, const float* t, std::size_t n, bool vec, double* partial) {
  const std::size_t groups = (n + 3) / 4;
  const std::size_t stride = std::size_t(gridDim.x) * kThreads;
  std::size_t g = std::size_t(blockIdx.x) * kThreads + threadIdx.x;
  double acc = 0.0;
  for (; g + (kUnroll - 1) * stride < groups; g += kUnroll * stride) {
    float4 vp[kUnroll], vt[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      vp[u] = group(p, g + u * stride, n, vec);
      vt[u] = group(t, g + u * stride, n, vec);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc = add_sq(acc, vp[u], vt[u]);
  }
  for (; g < groups; g += stride) acc = add_sq(acc, group(p, g, n, vec), group(t, g, n, vec));
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void __launch_bounds__(kThreads)
    mse_final(const double* partial, int nblocks, std::size_t n, float* out_f32, double* out_f64) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < nblocks; i += kThreads) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    const double r = n ? acc / double(n) : 0.0;
    *out_f64 = r;
    if (out_f32) *out_f32 = float(r);
  }
}

struct MseGrad {
  float scale;
  __device__ float operator()(float p, float t) const { return __fmul_rn(scale, __fsub_rn(p, t)); }
};

}  // namespace

std::size_t mse_workspace_len() { return kMaxBlocks + 1; }

cudaError_t mse(const float* p, const float* t, std::size_t n, float* out, double* workspace,
                cudaStream_t stream) {
  const std::size_t groups = (n + 3) / 4;
  std::size_t blocks = (groups + kThreads - 1) / kThreads;
  blocks = blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks);
  const bool vec = detail::aligned16(p) && detail::aligned16(t);
  mse_partials<<<unsigned(blocks), kThreads, 0, stream>>>(p, t, n, vec, workspace);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  mse_final<<<1, kThreads, 0, stream>>>(workspace, int(blocks), n, out, workspace + kMaxBlocks);
  return cudaGetLastError();
}

cudaError_t mse_grad(float* g, const float* p, const float* t, std::size_t n, float scale,
                     cudaStream_t stream) {
  return detail::launch_map<2>(g, p, t, n, MseGrad{scale}, stream);
}

}  // namespace cuda
}  // namespace fusednn
