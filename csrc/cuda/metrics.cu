// Metric accumulators, the twins of cpu/metrics.cpp: per-batch counts that
// fit/evaluate sum over an epoch on the device and read back once.
#include <algorithm>
#include <climits>

#include "fusednn/cuda.h"

namespace fusednn {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// error_sums_update is one block: a batch's outputs are small, and one block
// sums them in a fixed order with no scratch space and a single final add.
constexpr int kSumThreads = 512;

struct ArgMax {
  float v;
  long long i;  // LLONG_MAX: this lane saw no element
};

// The larger of two candidates, the lower index among equal values: with each
// lane scanning its elements in ascending order this is the first maximum, the
// argmax of cpu::confusion_update and NumPy.
__device__ __forceinline__ ArgMax better(ArgMax a, ArgMax b) {
  if (a.i == LLONG_MAX) return b;
  if (b.i == LLONG_MAX) return a;
  return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

// argmax of v[0, n) by a whole warp; the result is valid in lane 0.
__device__ long long warp_argmax(const float* v, std::size_t n, int lane) {
  ArgMax best{-INFINITY, LLONG_MAX};
  for (std::size_t c = lane; c < n; c += 32) {
    const float x = v[c];
    if (best.i == LLONG_MAX || x > best.v) best = ArgMax{x, (long long)c};
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const ArgMax other{__shfl_down_sync(0xffffffffu, best.v, o), __shfl_down_sync(0xffffffffu, best.i, o)};
    best = better(best, other);
  }
  return best.i;
}

// One warp per row (an argmax over 10 000 classes is not left to one thread);
// lane 0 adds the row's count.
__global__ void __launch_bounds__(kThreads)
    confusion_kernel(double* counts, const float* p, const float* t, std::size_t rows, std::size_t cols,
                     int classes, bool sparse, float threshold) {
  const int lane = threadIdx.x % 32;
  const std::size_t step = std::size_t(gridDim.x) * kWarps;
  for (std::size_t r = std::size_t(blockIdx.x) * kWarps + threadIdx.x / 32; r < rows; r += step) {
    const long long pred = cols == 1 ? (p[r] > threshold ? 1 : 0) : warp_argmax(p + r * cols, cols, lane);
    long long truth;
    if (sparse) {
      // the truncation cpu::confusion_update applies, on the float first: a
      // label outside (-1, classes) (or NaN) is never converted
      const float label = t[r];
      truth = label > -1.f && label < float(classes) ? (long long)label : -1;
    } else if (cols == 1) {
      truth = t[r] > 0.5f ? 1 : 0;
    } else {
      truth = warp_argmax(t + r * cols, cols, lane);
    }
    if (lane == 0 && truth >= 0 && truth < classes && pred >= 0 && pred < classes)
      atomicAdd(counts + (truth * classes + pred), 1.0);
  }
}

__global__ void __launch_bounds__(kSumThreads)
    error_sums_kernel(double* sums, const float* p, const float* t, std::size_t n) {
  __shared__ double part[2][kSumThreads / 32];
  double a = 0.0, s = 0.0;
  for (std::size_t i = threadIdx.x; i < n; i += kSumThreads) {
    const double d = double(p[i]) - double(t[i]);
    a += fabs(d);
    s = fma(d, d, s);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_down_sync(0xffffffffu, a, o);
    s += __shfl_down_sync(0xffffffffu, s, o);
  }
  if (threadIdx.x % 32 == 0) {
    part[0][threadIdx.x / 32] = a;
    part[1][threadIdx.x / 32] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    a = part[0][0];
    s = part[1][0];
    for (int w = 1; w < kSumThreads / 32; ++w) {
      a += part[0][w];
      s += part[1][w];
    }
    sums[0] += a;
    sums[1] += s;
  }
}

}  // namespace

cudaError_t confusion_update(double* counts, const float* p, const float* t, std::size_t rows,
                             std::size_t cols, int classes, bool sparse, float threshold,
                             cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  const std::size_t want = (rows + kWarps - 1) / kWarps;
  const unsigned blocks = unsigned(std::min<std::size_t>(want, std::size_t(sm_count()) * 8));
  confusion_kernel<<<blocks, kThreads, 0, stream>>>(counts, p, t, rows, cols, classes, sparse, threshold);
  return cudaGetLastError();
}

cudaError_t error_sums_update(double* sums, const float* p, const float* t, std::size_t n,
                              cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  error_sums_kernel<<<1, kSumThreads, 0, stream>>>(sums, p, t, n);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fusednn
