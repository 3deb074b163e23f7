// The metric-object accumulators (fusednn/metric_math.h) and the weighted LossFn
// loss value on the GPU, the twins of cpu/metric_objects.cpp and
// cpu/weighting.cpp's weighted_loss_fn. Not yet run on a device: the fused
// trainer uses them only with FUSEDNN_CUDA_TRAINER_METRICS=1.
#include <cmath>

#include "fusednn/cuda.h"
#include "fusednn/loss_math.h"
#include "fusednn/metric_math.h"

namespace fusednn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

// One thread per row; the adds are atomic, so sums of non-integer terms may
// differ from the CPU's in the last bits (counts of whole weights do not).
__global__ void __launch_bounds__(kThreads)
    metric_update_kernel(MetricSpec s, const float* p, const float* t, const float* w, std::size_t rows,
                         std::size_t cols) {
  const std::size_t t_cols = s.sparse ? 1 : cols;
  const auto add = [](double* slot, double v) { atomicAdd(slot, v); };
  for (std::size_t r = std::size_t(blockIdx.x) * kThreads + threadIdx.x; r < rows;
       r += std::size_t(gridDim.x) * kThreads)
    metric_math::row_update(s, p + r * cols, t + r * t_cols, w ? double(w[r]) : 1.0, long(cols), add);
}

// One block: the hinge labels' {0, 1} test over the whole batch, then the rows split
// over the threads and the partial sums added in a fixed tree (the same bits every run).
__global__ void __launch_bounds__(kThreads)
    weighted_loss_fn_kernel(const float* p, const float* t, const float* s, std::size_t rows, std::size_t cols,
                            LossFn fn, bool rowwise, LossParams param, float* out) {
  __shared__ double part[kThreads];
  const std::size_t n = rows * cols;
  int zero_one = 1;
  if (fn == LossFn::hinge || fn == LossFn::squared_hinge)
    for (std::size_t i = threadIdx.x; i < n; i += kThreads) zero_one &= (t[i] == 0.f || t[i] == 1.f) ? 1 : 0;
  const bool hinge01 = (fn == LossFn::hinge || fn == LossFn::squared_hinge) && __syncthreads_and(zero_one);
  double acc = 0.0;
  for (std::size_t r = threadIdx.x; r < rows; r += kThreads) {
    const float *pr = p + r * cols, *tr = t + r * cols;
    const double l = loss_math::sample_loss(fn, rowwise, pr, tr, long(cols), param, hinge01);
    acc += double(s[r]) * l;
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h /= 2) {
    if (threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = float(rows ? part[0] / double(rows) : 0.0);
}

}  // namespace

cudaError_t metric_update(const MetricSpec& s, const float* p, const float* t, const float* w, std::size_t rows,
                          std::size_t cols, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const unsigned blocks = unsigned((rows + kThreads - 1) / kThreads < 1024 ? (rows + kThreads - 1) / kThreads : 1024);
  metric_update_kernel<<<blocks, kThreads, 0, stream>>>(s, p, t, w, rows, cols);
  return cudaGetLastError();
}

cudaError_t weighted_loss_fn(const float* p, const float* t, const float* s, std::size_t rows, std::size_t cols,
                             LossFn fn, LossParams param, float* out, cudaStream_t stream) {
  weighted_loss_fn_kernel<<<1, kThreads, 0, stream>>>(p, t, s, rows, cols, fn, loss_fn_is_rowwise(fn), param,
                                                        out);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fusednn
