// Every Keras optimizer's update (fusednn/optim_update.h, shared with the CPU
// kernels) and the sum of squares that gradient clipping needs, on the GPU.
// The step's parameters travel by value in the launch; the clipping sum of
// squares is read from device memory (where the fused trainer's norm_add left
// it, so nothing waits for the GPU) or passed by value (the per-op path).
#include <cmath>

#include "elementwise.cuh"
#include "fusednn/cuda.h"

namespace fusednn {
namespace cuda {

namespace {

using detail::kMapThreads;

template <int K, int KF>
__global__ void __launch_bounds__(kMapThreads)
    optimizer_kernel(OptStep p, int flags, double sumsq, const double* sumsq_dev, float* w, const float* g,
                     float* s1, float* s2, float* s3, float* ema, std::size_t n) {
  const float factor = clip_factor(flags, p.p[P_CLIP], sumsq_dev ? *sumsq_dev : sumsq);
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    opt_elem<K, KF>(p.p, flags, factor, i, w, g, s1, s2, s3, ema);
}

struct Launch {
  unsigned grid;
  cudaStream_t stream;
  const OptStep& p;
  int flags;
  double sumsq;
  const double* sumsq_dev;
  float* w;
  const float* g;
  float *s1, *s2, *s3, *ema;
  std::size_t n;
  template <int K, int KF>
  void run() const {
    optimizer_kernel<K, KF><<<grid, kMapThreads, 0, stream>>>(p, flags, sumsq, sumsq_dev, w, g, s1, s2, s3, ema, n);
  }
};

constexpr int kSumThreads = 512;

// One block, a fixed split of the elements over its threads and a fixed
// reduction tree: the same sum every run. *acc += sum(x^2).
__global__ void __launch_bounds__(kSumThreads) sum_squares_kernel(double* acc, const float* x, std::size_t n) {
  __shared__ double part[kSumThreads];
  double s = 0.0;
  for (std::size_t i = threadIdx.x; i < n; i += kSumThreads) s += double(x[i]) * double(x[i]);
  part[threadIdx.x] = s;
  __syncthreads();
  for (int h = kSumThreads / 2; h > 0; h /= 2) {
    if (int(threadIdx.x) < h) part[threadIdx.x] += part[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) *acc += part[0];
}

}  // namespace

cudaError_t optimizer_update(OptKind kind, int flags, const OptStep& p, float* w, const float* g, float* s1,
                             float* s2, float* s3, float* ema, std::size_t n, double sumsq,
                             const double* sumsq_dev, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (int(kind) < 0 || int(kind) >= kOptKinds) return cudaErrorInvalidValue;
  opt_dispatch(int(kind), flags, Launch{detail::grid_for(n), stream, p, flags, sumsq, sumsq_dev, w, g, s1, s2, s3,
                                        ema, n});
  return cudaGetLastError();
}

cudaError_t sum_squares_add(double* acc, const float* x, std::size_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  sum_squares_kernel<<<1, kSumThreads, 0, stream>>>(acc, x, n);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fusednn
