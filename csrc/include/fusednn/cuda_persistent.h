// The two launch-light ways to run the fused trainer on the GPU, beside
// cuda::train_steps (train.cu), which queues ~20 kernels per step:
//  - train_persistent (persistent_mlp.cu): one block, one launch per range of
//    steps, everything in shared memory; for models whose plan fits
//    (fusednn/persistent_plan.h);
//  - StepGraphs (train_graph.cu): the same kernels as train_steps, captured
//    once per step range into a CUDA graph and replayed, so the per-kernel
//    launch cost is paid once per range instead of once per kernel.
// Both are opt-in until a device run has checked them (FUSEDNN_CUDA_PERSISTENT,
// FUSEDNN_CUDA_GRAPH in the Python backend).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "fusednn/graph_cache.h"
#include "fusednn/persistent_plan.h"
#include "fusednn/trainer.h"

namespace fusednn {
namespace cuda {

// The opt-in shared-memory bytes per block of the current device (0 without one).
std::size_t persistent_smem_limit();
// The shared-memory plan of these trainer buffers.
persistent::Plan persistent_plan_for(const std::vector<DenseBuffers>& layers, const OptimizerConfig& opt,
                                     LossKind loss, int batch);
// Steps [step0, step1) in one launch of the persistent kernel on `stream`; the
// contract of train_steps (returns the iteration count after the last step,
// *steps_done = step1 - step0, the per-step losses and metric sums on the
// device). No sample weights (row_scale/penalty_scale) and no weight regularizers:
// the binding runs such fits on train_steps. The model's A/G/x_batch/y_batch buffers are not written; dW/db get
// the last step's gradients. Throws std::invalid_argument when the plan does
// not fit the device, std::runtime_error when the launch fails. `table` (device
// float32, >= (step1 - step0) * kOptParams entries, owned by the caller) gets the
// run's opt.step_params rows, which the kernel reads per step. Only SGD
// (momentum, Nesterov) and plain Adam, no clipping/decay/EMA (the binding checks).
std::int64_t train_persistent(const std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                              const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                              std::int64_t iterations, std::int64_t* steps_done, cudaStream_t stream,
                              float* table);

// Captured step ranges of one trainer, replayed while everything baked into
// them is unchanged (graph_cache.h says what, and when a range is captured). The
// per-step optimizer parameters (the rows of opt.step_params: schedule's learning
// rate, Adam's bias-corrected step size) are not baked: each call copies the
// run's rows into `scalars` (device float32, >= (step1 - step0) * kOptParams
// entries, owned by the caller) and the captured update kernels read their row
// from there, so one graph serves every epoch. Only SGD (momentum, Nesterov) and
// plain Adam without clipping/decay/EMA (the binding checks), no step hook.
class StepGraphs {
 public:
  StepGraphs() = default;
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;
  ~StepGraphs();
  std::int64_t run(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                   const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                   std::int64_t iterations, std::int64_t* steps_done, cudaStream_t stream, bool tf32,
                   double* workspace, float* scalars);
  long captures() const { return captures_; }
  long replays() const { return replays_; }
  long direct() const { return direct_; }
  std::size_t cached() const { return book_.size(); }

 private:
  graphs::Book<cudaGraphExec_t> book_;
  cudaStream_t capture_stream_ = nullptr;
  long captures_ = 0, replays_ = 0, direct_ = 0;
};

}  // namespace cuda
}  // namespace fusednn
