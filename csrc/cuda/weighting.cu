// Sample weights for the fused trainer, the twin of cpu/weighting.cpp.
#include <cmath>

#include "fusednn/cuda.h"

namespace fusednn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

__device__ double row_loss(const float* p, const float* t, std::size_t cols, int kind) {
  double l = 0.0;
  if (kind < 0) {
    for (std::size_t c = 0; c < cols; ++c) {
      const double d = double(p[c]) - double(t[c]);
      l += d * d;
    }
    return cols ? l / double(cols) : 0.0;
  }
  if (kind == int(XentKind::sigmoid_binary)) {
    for (std::size_t c = 0; c < cols; ++c) {
      const double z = p[c];
      l += fmax(z, 0.0) - z * double(t[c]) + log1p(exp(-fabs(z)));
    }
    return cols ? l / double(cols) : 0.0;
  }
  double mx = -INFINITY;
  for (std::size_t c = 0; c < cols; ++c) mx = fmax(mx, double(p[c]));
  double sum = 0.0;
  for (std::size_t c = 0; c < cols; ++c) sum += exp(double(p[c]) - mx);
  const double lse = mx + log(sum);
  if (kind == int(XentKind::softmax_sparse)) {
    const float label = t[0];
    const long idx = long(label);
    if (!(label >= 0.f) || float(idx) != label || idx >= long(cols)) return nan("");
    return lse - double(p[idx]);
  }
  for (std::size_t c = 0; c < cols; ++c) l += double(t[c]) * (lse - double(p[c]));
  return l;
}

// One block, rows split over the threads, partial sums added in a fixed tree: the
// same bits on every run.
__global__ void __launch_bounds__(kThreads) weighted_loss_kernel(const float* p, const float* t, const float* s,
                                                                 std::size_t rows, std::size_t cols, int kind,
                                                                 float* out) {
  __shared__ double part[kThreads];
  const std::size_t t_cols = kind == int(XentKind::softmax_sparse) ? 1 : cols;
  double acc = 0.0;
  for (std::size_t r = threadIdx.x; r < rows; r += kThreads)
    acc += double(s[r]) * row_loss(p + r * cols, t + r * t_cols, cols, kind);
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h /= 2) {
    if (threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = float(rows ? part[0] / double(rows) : 0.0);
}

__global__ void scale_rows_kernel(float* g, const float* s, std::size_t rows, std::size_t cols) {
  const std::size_t n = rows * cols;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    g[i] *= s[i / cols];
}

}  // namespace

cudaError_t weighted_loss(const float* p, const float* t, const float* s, std::size_t rows, std::size_t cols,
                          int kind, float* out, cudaStream_t stream) {
  weighted_loss_kernel<<<1, kThreads, 0, stream>>>(p, t, s, rows, cols, kind, out);
  return cudaGetLastError();
}

cudaError_t scale_rows(float* g, const float* s, std::size_t rows, std::size_t cols, cudaStream_t stream) {
  const std::size_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  const std::size_t blocks = std::min<std::size_t>((n + kThreads - 1) / kThreads, 4096);
  scale_rows_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(g, s, rows, cols);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fusednn
