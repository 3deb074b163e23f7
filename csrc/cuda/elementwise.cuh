// A grid-stride map over one or two float inputs, shared by the activation,
// loss and optimizer launchers. When every pointer is 16-byte aligned the body
// moves float4s (128-bit loads and stores) and a few threads finish the last
// n % 4 elements; otherwise it moves single floats. Each thread keeps kUnroll
// independent groups in flight so a streaming kernel is not latency-bound.
#pragma once
#include <cstddef>
#include <cstdint>

#include "fusednn/cuda.h"

namespace fusednn {
namespace cuda {
namespace detail {

constexpr int kMapThreads = 256;
// Resident blocks per multiprocessor the grid is sized for; __launch_bounds__
// holds the kernels to the registers that allow it.
constexpr int kMapBlocksPerSm = 4;
constexpr int kMapUnroll = 4;

inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// One wave of resident blocks, or fewer when there is not that much work.
inline unsigned grid_for(std::size_t units, int threads = kMapThreads) {
  const std::size_t want = (units + threads - 1) / threads;
  const std::size_t cap = std::size_t(sm_count()) * kMapBlocksPerSm;
  return unsigned(want < 1 ? 1 : (want < cap ? want : cap));
}

template <class F>
__device__ __forceinline__ float apply(const F& f, float a, float b) {
  return f(a, b);
}
template <class F>
__device__ __forceinline__ float4 apply(const F& f, float4 a, float4 b) {
  return make_float4(f(a.x, b.x), f(a.y, b.y), f(a.z, b.z), f(a.w, b.w));
}

// out[i] = f(a[i], b[i]) for i < n, T = float or float4. With NIN == 1, b is
// not read. All loads of a batch are issued before its stores: out may alias
// a or b exactly (in-place), never partially.
template <int NIN, class T, class F>
__device__ __forceinline__ void map_range(T* out, const T* a, const T* b, std::size_t n, const F& f) {
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + (kMapUnroll - 1) * stride < n; i += kMapUnroll * stride) {
    T va[kMapUnroll], vb[kMapUnroll];
#pragma unroll
    for (int u = 0; u < kMapUnroll; ++u) {
      va[u] = a[i + u * stride];
      vb[u] = NIN == 2 ? b[i + u * stride] : va[u];
    }
#pragma unroll
    for (int u = 0; u < kMapUnroll; ++u) out[i + u * stride] = apply(f, va[u], vb[u]);
  }
  for (; i < n; i += stride) out[i] = apply(f, a[i], NIN == 2 ? b[i] : a[i]);
}

template <int NIN, bool VEC, class F>
__global__ void __launch_bounds__(kMapThreads, kMapBlocksPerSm)
    map_kernel(float* out, const float* a, const float* b, std::size_t n, F f) {
  if (VEC) {
    const std::size_t n4 = n / 4;
    map_range<NIN>(reinterpret_cast<float4*>(out), reinterpret_cast<const float4*>(a),
                   reinterpret_cast<const float4*>(b), n4, f);
    const std::size_t t = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x, j = 4 * n4 + t;
    if (j < n) out[j] = f(a[j], NIN == 2 ? b[j] : a[j]);
  } else {
    map_range<NIN>(out, a, b, n, f);
  }
}

template <int NIN, class F>
cudaError_t launch_map(float* out, const float* a, const float* b, std::size_t n, const F& f,
                       cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const bool vec = aligned16(out) && aligned16(a) && (NIN == 1 || aligned16(b));
  if (vec)
    map_kernel<NIN, true><<<grid_for(n / 4 > 0 ? n / 4 : 1), kMapThreads, 0, stream>>>(out, a, b, n, f);
  else
    map_kernel<NIN, false><<<grid_for(n), kMapThreads, 0, stream>>>(out, a, b, n, f);
  return cudaGetLastError();
}

}  // namespace detail
}  // namespace cuda
}  // namespace fusednn
