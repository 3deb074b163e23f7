// The CUDA policy that fusednn/trainer.h runs the fused training loop over: every
// kernel queued on one stream, a failed launch thrown as an error naming it.
// train.cu runs it directly; train_graph.cu derives from it for captured steps.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fusednn/cuda.h"
#include "fusednn/cuda_layers.h"
#include "fusednn/cuda_steps_more.h"

namespace fusednn {
namespace cuda {

// The policy trainer.h runs over: the stream every kernel is queued on, the
// TF32 choice, the loss's scratch space and the number of samples the batch
// rows are gathered from. A failed launch throws, naming the kernel.
struct Kernels {
  cudaStream_t stream;
  bool tf32;
  double* workspace;
  std::int64_t src_rows;
  double* norm;

  static void check(cudaError_t e, const char* kernel) {
    if (e != cudaSuccess)
      throw std::runtime_error(std::string("fusednn._cuda.MlpTrainer.run: ") + kernel + ": CUDA error " +
                               cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
  }

  void gather_rows(float* dst, const float* src, const std::int64_t* idx, int rows, int cols) const {
    check(cuda::gather_rows(dst, src, idx, std::size_t(rows), std::size_t(cols), src_rows, stream),
          "gather_rows");
  }
  void matmul(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb,
              const float* bias, Act act) const {
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
    check(cuda::confusion_update(counts, p, t, std::size_t(rows), std::size_t(cols), classes, sparse,
                                 threshold, stream),
          "confusion_update");
  }
  void error_sums_update(double* sums, const float* p, const float* t, std::int64_t n) const {
    check(cuda::error_sums_update(sums, p, t, std::size_t(n), stream), "error_sums_update");
  }
  void act_forward(float* y, const float* x, std::int64_t n, Act act) const {
    check(cuda::act_forward(y, x, std::size_t(n), act, stream), "act_forward");
  }
  void loss_grad(float* g, const float* p, const float* t, int rows, int cols, LossFn fn, LossParams param,
                 float* loss_out) const {
    check(cuda::loss_grad(g, p, t, std::size_t(rows), std::size_t(cols), fn, param, loss_out, workspace, stream),
          "loss_grad");
  }
  void act_backward(float* dx, const float* dy, const float* y, std::int64_t n, Act act) const {
    check(cuda::act_backward(dx, dy, y, std::size_t(n), act, stream), "act_backward");
  }
  void sum_rows(float* out, const float* x, int rows, int cols) const {
    check(cuda::sum_rows(out, x, std::size_t(rows), std::size_t(cols), stream), "sum_rows");
  }
  // the clipping norm: a double on the device (the slot after the loss's
  // workspace), reset and summed into on the stream, read by the update kernel
  void norm_reset() const { check(cudaMemsetAsync(norm, 0, sizeof(double), stream), "norm_reset"); }
  void norm_add(const float* g, std::int64_t n) const {
    check(cuda::sum_squares_add(norm, g, std::size_t(n), stream), "sum_squares_add");
  }
  void opt_update(OptKind kind, int flags, const float* p, float* w, const float* g, float* s1, float* s2,
                  float* s3, float* ema, std::int64_t n) const {
    OptStep step;
    for (int k = 0; k < kOptParams; ++k) step.p[k] = p[k];
    const bool clip = (flags & (optf::clip_norm | optf::clip_global)) != 0;
    check(cuda::optimizer_update(kind, flags, step, w, g, s1, s2, s3, ema, std::size_t(n), 0.0,
                                 clip ? norm : nullptr, stream),
          "optimizer_update");
  }
  void weighted_loss(const float* p, const float* t, const float* s, int rows, int cols, int kind,
                     float* out) const {
    check(cuda::weighted_loss(p, t, s, std::size_t(rows), std::size_t(cols), kind, out, stream), "weighted_loss");
  }
  void weighted_loss_fn(const float* p, const float* t, const float* s, int rows, int cols, LossFn fn,
                        LossParams param, float* out) const {
    check(cuda::weighted_loss_fn(p, t, s, std::size_t(rows), std::size_t(cols), fn, param, out, stream),
          "weighted_loss_fn");
  }
  void metric_update(const MetricSpec& m, const float* p, const float* t, const float* w, int rows,
                     int cols) const {
    check(cuda::metric_update(m, p, t, w, std::size_t(rows), std::size_t(cols), stream), "metric_update");
  }
  void scale_rows(float* g, const float* s, int rows, int cols) const {
    check(cuda::scale_rows(g, s, std::size_t(rows), std::size_t(cols), stream), "scale_rows");
  }
  void regularize(float* g, const float* w, std::int64_t n, float l1, float l2, float* loss) const {
    check(cuda::regularize(g, w, std::size_t(n), l1, l2, loss, stream), "regularize");
  }
  // the layer steps (layer_steps.h; opt-in, not yet run on a device; act_forward is above)
  void dropout_mask(float* m, int rows, int cols, float rate, std::uint64_t seed, std::uint64_t t, bool row_b,
                    bool col_b) const {
    check(cuda::dropout_mask(m, rows, cols, rate, seed, t, row_b, col_b, stream), "dropout_mask");
  }
  void mul(float* y, const float* a, const float* b, std::int64_t n) const {
    check(cuda::mul(y, a, b, std::size_t(n), stream), "mul");
  }
  void batchnorm_train(float* y, float* xhat, float* invstd, const float* x, const float* gamma, const float* beta,
                       int rows, int cols, float eps, float* mm, float* mv, float momentum, float* scratch) const {
    check(cuda::batchnorm_train(y, xhat, invstd, x, gamma, beta, rows, cols, eps, mm, mv, momentum, scratch, stream),
          "batchnorm_train");
  }
  void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                          const float* invstd, const float* gamma, int rows, int cols, float* scratch) const {
    check(cuda::batchnorm_backward(dx, dgamma, dbeta, dy, xhat, invstd, gamma, rows, cols, scratch, stream),
          "batchnorm_backward");
  }
  // The newer steps (PReLU, LayerNormalization, act_param, Softmax, Gaussian noise), a frozen
  // batch-norm, graph blocks and weight constraints (cuda_steps_more.h): the CPU policy's
  // members, so layer_steps.h/trainer.h compile them in. Opt-in (FUSEDNN_CUDA_TRAINER_STEPS=1),
  // not yet run on a device; the graph and persistent paths decline them (the binding's
  // fast_path_why_not, backends/cuda_paths.py).
  void prelu_forward(float* y, const float* x, const float* alpha, int rows, int cols, int alpha_n) const {
    check(cuda::prelu_forward(y, x, alpha, rows, cols, alpha_n, stream), "prelu_forward");
  }
  void prelu_backward(float* dx, float* dalpha, const float* dy, const float* x, const float* alpha, int rows,
                      int cols, int alpha_n) const {
    check(cuda::prelu_backward(dx, dalpha, dy, x, alpha, rows, cols, alpha_n, stream), "prelu_backward");
  }
  void layernorm_forward(float* y, float* xhat, float* invstd, const float* x, const float* gamma, const float* beta,
                         int rows, int cols, float eps) const {
    check(cuda::layernorm_forward(y, xhat, invstd, x, gamma, beta, rows, cols, eps, stream), "layernorm_forward");
  }
  void layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                          const float* invstd, const float* gamma, int rows, int cols) const {
    check(cuda::layernorm_backward(dx, dgamma, dbeta, dy, xhat, invstd, gamma, rows, cols, stream),
          "layernorm_backward");
  }
  void act_param_forward(float* y, const float* x, std::int64_t n, const ActParam& a) const {
    check(cuda::act_param_forward(y, x, n, a, stream), "act_param_forward");
  }
  void act_param_backward(float* dx, const float* dy, const float* x, const float* y, std::int64_t n,
                          const ActParam& a) const {
    check(cuda::act_param_backward(dx, dy, x, y, n, a, stream), "act_param_backward");
  }
  void softmax_rows(float* y, const float* x, int rows, int cols) const {
    check(cuda::softmax(y, x, std::size_t(rows), std::size_t(cols), stream), "softmax");
  }
  void softmax_rows_backward(float* dx, const float* dy, const float* y, int rows, int cols) const {
    check(cuda::softmax_backward(dx, dy, y, std::size_t(rows), std::size_t(cols), stream), "softmax_backward");
  }
  void gaussian_factor(float* m, int rows, int cols, std::uint64_t seed, std::uint64_t t, float scale,
                       bool add_one) const {
    check(cuda::gaussian_factor(m, rows, cols, seed, t, scale, add_one, stream), "gaussian_factor");
  }
  void copy(float* y, const float* x, std::int64_t n) const {
    if (n > 0 && y != x)
      check(cudaMemcpyAsync(y, x, std::size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice, stream), "copy");
  }
  void add(float* y, const float* a, const float* b, std::int64_t n) const {
    check(cuda::add(y, a, b, std::size_t(n), stream), "add");
  }
  void copy_cols(float* dst, int dst_cols, int dst_off, const float* src, int src_cols, int src_off, int width,
                 int rows) const {
    check(cuda::copy_cols(dst, dst_cols, dst_off, src, src_cols, src_off, width, rows, stream), "copy_cols");
  }
  void add_cols(float* dst, int dst_cols, int dst_off, const float* src, int src_cols, int src_off, int width,
                int rows) const {
    check(cuda::add_cols(dst, dst_cols, dst_off, src, src_cols, src_off, width, rows, stream), "add_cols");
  }
  void merge_binary(float* y, int ldy, const float* a, int lda, const float* b, int ldb, int rows, int cols,
                    MergeOp op) const {
    check(cuda::merge_binary(y, ldy, a, lda, b, ldb, rows, cols, op, stream), "merge_binary");
  }
  void merge_scale(float* y, int ldy, const float* x, int ldx, float s, int rows, int cols) const {
    check(cuda::merge_scale(y, ldy, x, ldx, s, rows, cols, stream), "merge_scale");
  }
  void batchnorm_infer(float* y, const float* x, const float* gamma, const float* beta, const float* mean,
                       const float* var, int rows, int cols, float eps) const {
    check(cuda::batchnorm_infer(y, x, gamma, beta, mean, var, rows, cols, eps, stream), "batchnorm_infer");
  }
  void constrain(float* w, int rows, int cols, const Constraint& c) const {
    check(cuda::constrain(w, rows, cols, c, stream), "constrain");
  }
  // Reading a loss would wait for the GPU every step; the caller checks the
  // step losses once per epoch instead.
  bool is_finite(const float*) const { return true; }
};

}  // namespace cuda
}  // namespace fusednn
