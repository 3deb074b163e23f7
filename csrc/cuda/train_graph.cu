// Graph-launched steps: fusednn::train_steps (trainer.h) captured into a CUDA
// graph once per step range and replayed (cuda::StepGraphs, declared in
// fusednn/cuda_persistent.h). The kernels are those of train.cu except the
// optimizer updates, which read their per-step scalar (Adam's bias-corrected
// step size, SGD's learning rate) from a device table that a small kernel
// fills before each replay; that is what lets one captured epoch serve every
// epoch. The table is filled with the formula adam_update uses on the host (in
// double, rounded once to float), so the updates are the per-op path's up to
// the last bit of pow() on the device.
#include <cmath>
#include <stdexcept>
#include <string>

#include "elementwise.cuh"
#include "fusednn/cuda.h"
#include "fusednn/cuda_persistent.h"

namespace fusednn {
namespace cuda {

namespace {

using detail::kMapThreads;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("fusednn._cuda.MlpTrainer.run (graph): ") + what + ": CUDA error " +
                             cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

// table[i] = the scalar of update t_first + i: Adam's lr * sqrt(1 - b2^t) / (1 - b1^t), or SGD's lr.
__global__ void fill_scalars(float* table, int count, std::int64_t t_first, float lr, float beta1, float beta2,
                             bool adam) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
    const double t = double(t_first + i);
    table[i] = adam ? float(double(lr) * sqrt(1.0 - pow(double(beta2), t)) / (1.0 - pow(double(beta1), t))) : lr;
  }
}

// optim.cu's update formulas, with the step scalar read from device memory.
__global__ void __launch_bounds__(kMapThreads)
    adam_table_kernel(float* w, const float* g, float* m, float* v, std::size_t n, const float* alpha_p, float c1,
                      float c2, float eps) {
  const float alpha = *alpha_p;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float mi = __fadd_rn(m[i], __fmul_rn(__fsub_rn(gi, m[i]), c1));
    const float vi = __fadd_rn(v[i], __fmul_rn(__fsub_rn(__fmul_rn(gi, gi), v[i]), c2));
    m[i] = mi;
    v[i] = vi;
    w[i] = __fsub_rn(w[i], __fdiv_rn(__fmul_rn(mi, alpha), __fadd_rn(__fsqrt_rn(vi), eps)));
  }
}

__global__ void __launch_bounds__(kMapThreads)
    sgd_table_kernel(float* w, const float* g, float* v, std::size_t n, const float* lr_p, float mu, bool nesterov) {
  const float lr = *lr_p;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    if (v == nullptr) {
      w[i] = __fsub_rn(w[i], __fmul_rn(lr, g[i]));
      continue;
    }
    const float vi = __fsub_rn(__fmul_rn(mu, v[i]), __fmul_rn(lr, g[i]));
    v[i] = vi;
    w[i] = nesterov ? __fadd_rn(w[i], __fsub_rn(__fmul_rn(mu, vi), __fmul_rn(lr, g[i]))) : __fadd_rn(w[i], vi);
  }
}

// train.cu's policy, launching on the capture stream, with table-driven updates.
struct GraphKernels {
  cudaStream_t stream;
  bool tf32;
  double* workspace;
  std::int64_t src_rows;
  const float* table;
  std::int64_t t_first;

  void gather_rows(float* dst, const float* src, const std::int64_t* idx, int rows, int cols) const {
    check(cuda::gather_rows(dst, src, idx, std::size_t(rows), std::size_t(cols), src_rows, stream), "gather_rows");
  }
  void matmul(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb, const float* bias,
              Act act) const {
    check(cuda::matmul(C, A, B, M, N, K, ta, tb, bias, act, stream, -1, tf32), "matmul");
  }
  void mse(const float* p, const float* t, std::int64_t n, float* out) const {
    check(cuda::mse(p, t, std::size_t(n), out, workspace, stream), "mse");
  }
  void mse_grad(float* g, const float* p, const float* t, std::int64_t n, float scale) const {
    check(cuda::mse_grad(g, p, t, std::size_t(n), scale, stream), "mse_grad");
  }
  void xent(float* g, const float* z, const float* t, int rows, int cols, XentKind kind, float scale,
            float* loss_out) const {
    check(cuda::xent(g, z, t, std::size_t(rows), std::size_t(cols), kind, scale, loss_out, workspace, stream),
          "xent");
  }
  void confusion_update(double* counts, const float* p, const float* t, int rows, int cols, int classes,
                        bool sparse, float threshold) const {
    check(cuda::confusion_update(counts, p, t, std::size_t(rows), std::size_t(cols), classes, sparse, threshold,
                                 stream),
          "confusion_update");
  }
  void error_sums_update(double* sums, const float* p, const float* t, std::int64_t n) const {
    check(cuda::error_sums_update(sums, p, t, std::size_t(n), stream), "error_sums_update");
  }
  void act_backward(float* dx, const float* dy, const float* y, std::int64_t n, Act act) const {
    check(cuda::act_backward(dx, dy, y, std::size_t(n), act, stream), "act_backward");
  }
  void sum_rows(float* out, const float* x, int rows, int cols) const {
    check(cuda::sum_rows(out, x, std::size_t(rows), std::size_t(cols), stream), "sum_rows");
  }
  void weighted_loss(const float* p, const float* t, const float* s, int rows, int cols, int kind,
                     float* out) const {
    check(cuda::weighted_loss(p, t, s, std::size_t(rows), std::size_t(cols), kind, out, stream), "weighted_loss");
  }
  void scale_rows(float* g, const float* s, int rows, int cols) const {
    check(cuda::scale_rows(g, s, std::size_t(rows), std::size_t(cols), stream), "scale_rows");
  }
  void regularize(float* g, const float* w, std::int64_t n, float l1, float l2, float* loss) const {
    check(cuda::regularize(g, w, std::size_t(n), l1, l2, loss, stream), "regularize");
  }
  void adam_update(float* w, const float* g, float* m, float* v, std::int64_t n, const OptimizerConfig& o,
                   std::int64_t t) const {
    adam_table_kernel<<<detail::grid_for(std::size_t(n)), kMapThreads, 0, stream>>>(
        w, g, m, v, std::size_t(n), table + (t - t_first), 1.f - o.beta1, 1.f - o.beta2, o.eps);
    check(cudaGetLastError(), "adam_update");
  }
  void sgd_update(float* w, const float* g, float* v, std::int64_t n, const OptimizerConfig& o) const {
    // The step is not passed here: the trainer updates every parameter of a step
    // before the next, so the step's slot is the one adam would use; SGD's
    // scalar is the same for every step, so slot 0 serves.
    sgd_table_kernel<<<detail::grid_for(std::size_t(n)), kMapThreads, 0, stream>>>(
        w, g, o.momentum != 0.f ? v : nullptr, std::size_t(n), table, o.momentum, o.nesterov);
    check(cudaGetLastError(), "sgd_update");
  }
  bool is_finite(const float*) const { return true; }
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
  const bool adam = opt.kind == OptKind::adam;
  const int count = int(step1 - step0);
  // Every value the captured kernels were launched with, except the table's contents.
  graphs::Key key = graphs::make_key(
      {data.x, data.y, data.order, data.x_batch, data.y_batch, data.step_losses, data.counts, data.err_sums,
       workspace, scalars, data.row_scale},
      {step0, step1, batch, data.n, data.y_cols, int(loss), int(opt.kind), int(opt.nesterov), int(tf32),
       data.classes, int(data.sparse_labels)},
      {opt.momentum, opt.beta1, opt.beta2, opt.eps, data.threshold});
  // The step scalars go first, in stream order, for every kind of run.
  fill_scalars<<<(count + 255) / 256 < 64 ? (count + 255) / 256 : 64, 256, 0, stream>>>(
      scalars, count, iterations + 1, opt.lr, opt.beta1, opt.beta2, adam);
  check(cudaGetLastError(), "fill_scalars");
  const GraphKernels direct{stream, tf32, workspace, data.n, scalars, iterations + 1};
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
