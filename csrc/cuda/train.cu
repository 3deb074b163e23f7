// The CUDA device object for the fused training loop (fusednn/trainer.h), and
// the batch gather it starts every step with.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "fusednn/cuda.h"
#include "train_kernels.cuh"

namespace fusednn {
namespace cuda {

namespace {

constexpr int kGatherThreads = 256;

// Columns on x (a warp copies 128 contiguous bytes of a row), rows on grid.y
// with a stride; a block reads its row's index once.
__global__ void __launch_bounds__(kGatherThreads)
    gather_rows_kernel(float* dst, const float* src, const std::int64_t* idx, std::size_t rows,
                       std::size_t cols, std::int64_t src_rows) {
  const std::size_t cstride = std::size_t(gridDim.x) * kGatherThreads;
  for (std::size_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const std::int64_t k = idx[r];
    const bool ok = k >= 0 && k < src_rows;
    const float* s = src + (ok ? std::size_t(k) * cols : 0);
    float* d = dst + r * cols;
    for (std::size_t c = std::size_t(blockIdx.x) * kGatherThreads + threadIdx.x; c < cols; c += cstride)
      d[c] = ok ? s[c] : __int_as_float(0x7fc00000);  // quiet NaN
  }
}


// Every step and block kind the CPU policy runs (the detectors of layer_steps.h, trainer.h and
// constraint.h): a member with a wrong name would silently compile its step to nothing.
static_assert(has_layer_steps<Kernels>::value && has_prelu<Kernels>::value && has_layernorm<Kernels>::value &&
                  has_steps_more<Kernels>::value && has_batchnorm_infer<Kernels>::value &&
                  has_merges<Kernels>::value && has_constrain<Kernels>::value,
              "the CUDA trainer policy lacks a layer-step kernel");

}  // namespace

cudaError_t gather_rows(float* dst, const float* src, const std::int64_t* idx, std::size_t rows,
                        std::size_t cols, std::int64_t src_rows, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  const std::size_t gx = std::min<std::size_t>((cols + kGatherThreads - 1) / kGatherThreads, 32);
  const std::size_t gy = std::min<std::size_t>(rows, 65535);
  gather_rows_kernel<<<dim3(unsigned(gx), unsigned(gy)), kGatherThreads, 0, stream>>>(dst, src, idx, rows,
                                                                                      cols, src_rows);
  return cudaGetLastError();
}

std::int64_t train_steps(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                         const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                         std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done,
                         cudaStream_t stream, bool tf32, double* workspace) {
  // the clipping norm lives in the last workspace slot (MlpTrainer::workspace_len)
  double* norm = workspace + std::max({mse_workspace_len(), xent_workspace_len(), loss_grad_workspace_len()});
  return fusednn::train_steps(Kernels{stream, tf32, workspace, data.n, norm}, layers, opt, loss, data, batch, step0,
                              step1, iterations, stop_on_nonfinite, steps_done);
}

}  // namespace cuda
}  // namespace fusednn
