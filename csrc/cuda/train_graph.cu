// Graph-launched steps: fusednn::train_steps (trainer.h) captured into a CUDA
// graph once per step range and replayed (cuda::StepGraphs, declared in
// fusednn/cuda_persistent.h). The kernels are those of train.cu except the
// optimizer updates, which read their step's row of Optimizer.step_params from a
// device copy of the run's rows, written before each replay; that is what lets
// one captured epoch serve every epoch. The update rule is optim_update.h's
// opt_core, the one the per-op kernels use, on the same rows.
#include <cmath>
#include <stdexcept>
#include <string>

#include "elementwise.cuh"
#include "fusednn/cuda.h"
#include "fusednn/cuda_persistent.h"
#include "train_kernels.cuh"

namespace fusednn {
namespace cuda {

namespace {

using detail::kMapThreads;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("fusednn._cuda.MlpTrainer.run (graph): ") + what + ": CUDA error " +
                             cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

// The update of optim_update.h (opt_core, the rule every path shares) with the
// step's row of Optimizer.step_params read from device memory, so a captured
// launch serves every epoch. Only the kinds and flags the graph path takes:
// SGD (momentum, Nesterov) and plain Adam, no clipping, decay or EMA.
template <int K, int KF>
__global__ void __launch_bounds__(kMapThreads)
    opt_table_kernel(float* w, const float* g, float* s1, float* s2, std::size_t n, const float* row) {
  float p[kOptParams];
#pragma unroll
  for (int k = 0; k < kOptParams; ++k) p[k] = row[k];
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    opt_elem<K, KF>(p, KF, 1.f, i, w, g, s1, s2, nullptr, nullptr);  // KF: no clip/decay/EMA bits here
}

// train.cu's policy, launching on the capture stream, with table-driven updates.
struct GraphKernels : Kernels {
  const float* table;      // device copy of the run's step_params rows
  const float* host_rows;  // opt.step_params: the rows opt_update's `p` points into

  // no clipping on this path (the binding sends clipped runs to the per-op kernels)
  void norm_reset() const { throw std::logic_error("graph path: gradient clipping is not supported"); }
  void norm_add(const float*, std::int64_t) const {
    throw std::logic_error("graph path: gradient clipping is not supported");
  }
  // `p` is the step's host row in opt.step_params; the captured kernel reads the
  // same row from its device copy in `table`.
  void opt_update(OptKind kind, int flags, const float* p, float* w, const float* g, float* s1, float* s2,
                  float* s3, float* ema, std::int64_t n) const {
    (void)s3;
    if (ema || (flags & ~(optf::momentum | optf::nesterov)) || (kind != OptKind::sgd && kind != OptKind::adam) ||
        (kind == OptKind::adam && flags))
      throw std::logic_error("graph path: only SGD (momentum, nesterov) and plain Adam");
    const float* row = table + (p - host_rows);
    const unsigned grid = detail::grid_for(std::size_t(n));
    if (kind == OptKind::adam)
      opt_table_kernel<int(OptKind::adam), 0><<<grid, kMapThreads, 0, stream>>>(w, g, s1, s2, std::size_t(n), row);
    else if (!(flags & optf::momentum))
      opt_table_kernel<int(OptKind::sgd), 0><<<grid, kMapThreads, 0, stream>>>(w, g, nullptr, nullptr,
                                                                                std::size_t(n), row);
    else if (flags & optf::nesterov)
      opt_table_kernel<int(OptKind::sgd), optf::momentum | optf::nesterov>
          <<<grid, kMapThreads, 0, stream>>>(w, g, s1, nullptr, std::size_t(n), row);
    else
      opt_table_kernel<int(OptKind::sgd), optf::momentum><<<grid, kMapThreads, 0, stream>>>(w, g, s1, nullptr,
                                                                                            std::size_t(n), row);
    check(cudaGetLastError(), "opt_update");
  }
};

}  // namespace

StepGraphs::~StepGraphs() {
  book_.clear();
  if (capture_stream_) cudaStreamDestroy(capture_stream_);
}

std::int64_t StepGraphs::run(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                             const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                             std::int64_t iterations, std::int64_t* steps_done, cudaStream_t stream, bool tf32,
                             double* workspace, float* scalars) {
  *steps_done = step1 - step0;
  if (step1 <= step0) return iterations;
  book_.set_release([](cudaGraphExec_t e) { cudaGraphExecDestroy(e); });
  const int count = int(step1 - step0);
  // Every value the captured kernels were launched with, except the table's contents.
  graphs::Key key = graphs::make_key(
      {data.x, data.y, data.order, data.x_batch, data.y_batch, data.step_losses, data.counts, data.err_sums,
       workspace, scalars, data.row_scale},
      {step0, step1, batch, data.n, data.y_cols, int(loss), int(opt.kind), opt.flags, int(tf32),
       data.classes, int(data.sparse_labels), data.loss_param.flags},
      {data.threshold, data.loss_param.param, data.loss_param.alpha, data.loss_param.smoothing});
  // The run's step rows go first, in stream order (the host rows are read before
  // cudaMemcpyAsync returns).
  check(cudaMemcpyAsync(scalars, opt.step_params, std::size_t(count) * kOptParams * sizeof(float),
                        cudaMemcpyHostToDevice, stream),
        "cudaMemcpyAsync(step_params)");
  const GraphKernels direct{{stream, tf32, workspace, data.n, nullptr}, scalars, opt.step_params};
  cudaGraphExec_t* hit = nullptr;
  // Per-step penalty scales (sample weights with regularizers) are host values that
  // change every epoch and would be baked into a capture: such runs never use a graph.
  const graphs::Action action = data.penalty_scale ? graphs::Action::direct : book_.decide(key, &hit);
  if (action == graphs::Action::direct) {  // first sighting: the same kernels, launched one by one
    std::int64_t done = 0;
    fusednn::train_steps(direct, layers, opt, loss, data, batch, step0, step1, iterations, false, &done);
    ++direct_;
    return iterations + count;
  }
  cudaGraphExec_t exec = nullptr;
  if (action == graphs::Action::replay) {
    exec = *hit;
    ++replays_;
  } else {
    if (!capture_stream_) check(cudaStreamCreateWithFlags(&capture_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaStreamBeginCapture(capture_stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    std::int64_t done = 0;
    cudaGraph_t graph = nullptr;
    GraphKernels captured = direct;
    captured.stream = capture_stream_;
    try {
      fusednn::train_steps(captured, layers, opt, loss, data, batch, step0, step1, iterations, false, &done);
    } catch (...) {
      cudaStreamEndCapture(capture_stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    check(cudaStreamEndCapture(capture_stream_, &graph), "cudaStreamEndCapture");
    const cudaError_t e = cudaGraphInstantiateWithFlags(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(e, "cudaGraphInstantiate");
    book_.add(std::move(key), exec);
    ++captures_;
  }
  check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
  return iterations + count;
}

}  // namespace cuda
}  // namespace fusednn
