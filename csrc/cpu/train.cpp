// The CPU device policy for the fused training loop (fusednn/trainer.h).
#include <cmath>
#include <cstring>

#include "fusednn/cpu.h"
#include "fusednn/cpu_merge.h"
#include "fusednn/cpu_layers.h"
#include "fusednn/trainer.h"

namespace fusednn {
namespace cpu {

namespace {

// The CPU kernels run on the calling thread (and the pool); the only state is
// the gradient norm of the clipping options.
struct Kernels {
  double* norm;
  void gather_rows(float* dst, const float* src, const std::int64_t* idx, int rows, int cols) const {
    for (int r = 0; r < rows; ++r)
      std::memcpy(dst + std::size_t(r) * cols, src + std::size_t(idx[r]) * cols, sizeof(float) * cols);
  }
  void matmul(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb,
              const float* bias, Act act) const {
    cpu::matmul(C, A, B, M, N, K, ta, tb, bias, act);
  }
  void mse(const float* p, const float* t, std::int64_t n, float* out) const {
    *out = float(cpu::mse(p, t, std::size_t(n)));
  }
  void mse_grad(float* g, const float* p, const float* t, std::int64_t n, float scale) const {
    cpu::mse_grad(g, p, t, std::size_t(n), scale);
  }
  void xent(float* g, const float* z, const float* t, int rows, int cols, XentKind kind, float scale,
            float* loss_out) const {
    *loss_out = float(cpu::xent(g, z, t, std::size_t(rows), std::size_t(cols), kind, scale));
  }
  void confusion_update(double* counts, const float* p, const float* t, int rows, int cols, int classes,
                        bool sparse, float threshold) const {
    cpu::confusion_update(counts, p, t, std::size_t(rows), std::size_t(cols), classes, sparse, threshold);
  }
  void error_sums_update(double* sums, const float* p, const float* t, std::int64_t n) const {
    cpu::error_sums_update(sums, p, t, std::size_t(n));
  }
  void act_forward(float* y, const float* x, std::int64_t n, Act act) const {
    cpu::act_forward(y, x, std::size_t(n), act);
  }
  void loss_grad(float* g, const float* p, const float* t, int rows, int cols, LossFn fn, LossParams param,
                 float* loss_out) const {
    *loss_out = float(cpu::loss_grad(g, p, t, std::size_t(rows), std::size_t(cols), fn, param));
  }
  void act_backward(float* dx, const float* dy, const float* y, std::int64_t n, Act act) const {
    cpu::act_backward(dx, dy, y, std::size_t(n), act);
  }
  void sum_rows(float* out, const float* x, int rows, int cols) const {
    cpu::sum_rows(out, x, std::size_t(rows), std::size_t(cols));
  }
  void hidden_grad(float* dx, float* db, const float* dz, const float* w, const float* y, int rows, int cols, int k,
                   Act act) const {
    cpu::hidden_grad(dx, db, dz, w, y, std::size_t(rows), std::size_t(cols), std::size_t(k), act);
  }
  // the clipping norm: a sum of squares in double, reset and added to per
  // gradient (clipnorm) or over all of a step's gradients (global_clipnorm)
  void norm_reset() const { *norm = 0.0; }
  void norm_add(const float* g, std::int64_t n) const { *norm += cpu::sum_squares(g, std::size_t(n)); }
  void opt_update(OptKind kind, int flags, const float* p, float* w, const float* g, float* s1, float* s2,
                  float* s3, float* ema, std::int64_t n) const {
    cpu::optimizer_update(kind, flags, p, w, g, s1, s2, s3, ema, std::size_t(n), *norm);
  }
  void regularize(float* g, const float* w, std::int64_t n, float l1, float l2, float* loss) const {
    cpu::regularize(g, w, std::size_t(n), l1, l2, loss);
  }
  void weighted_loss(const float* p, const float* t, const float* s, int rows, int cols, int kind,
                     float* out) const {
    *out = float(cpu::weighted_loss(p, t, s, std::size_t(rows), std::size_t(cols), kind));
  }
  void weighted_loss_fn(const float* p, const float* t, const float* s, int rows, int cols, LossFn fn,
                        LossParams param, float* out) const {
    *out = float(cpu::weighted_loss_fn(p, t, s, std::size_t(rows), std::size_t(cols), fn, param));
  }
  void metric_update(const MetricSpec& m, const float* p, const float* t, const float* w, int rows,
                     int cols) const {
    cpu::metric_update(m, p, t, w, std::size_t(rows), std::size_t(cols));
  }
  void scale_rows(float* g, const float* s, int rows, int cols) const {
    cpu::scale_rows(g, s, std::size_t(rows), std::size_t(cols));
  }
  // the layer steps (layer_steps.h; act_forward is above)
  void dropout_mask(float* m, int rows, int cols, float rate, std::uint64_t seed, std::uint64_t t, bool row_b,
                    bool col_b) const {
    cpu::dropout_mask(m, rows, cols, rate, seed, t, row_b, col_b);
  }
  void mul(float* y, const float* a, const float* b, std::int64_t n) const { cpu::mul(y, a, b, std::size_t(n)); }
  void batchnorm_train(float* y, float* xhat, float* invstd, const float* x, const float* gamma, const float* beta,
                       int rows, int cols, float eps, float* mm, float* mv, float momentum, float*) const {
    cpu::batchnorm_train(y, xhat, invstd, x, gamma, beta, rows, cols, eps, mm, mv, momentum);
  }
  void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                          const float* invstd, const float* gamma, int rows, int cols, float*) const {
    cpu::batchnorm_backward(dx, dgamma, dbeta, dy, xhat, invstd, gamma, rows, cols);
  }
  void constrain(float* w, int rows, int cols, const Constraint& c) const {
    cpu::constrain(w, std::size_t(rows), std::size_t(cols), c);
  }
  void prelu_forward(float* y, const float* x, const float* alpha, int rows, int cols, int alpha_n) const {
    cpu::prelu_forward(y, x, alpha, rows, cols, alpha_n);
  }
  void prelu_backward(float* dx, float* dalpha, const float* dy, const float* x, const float* alpha, int rows,
                      int cols, int alpha_n) const {
    cpu::prelu_backward(dx, dalpha, dy, x, alpha, rows, cols, alpha_n);
  }
  void layernorm_forward(float* y, float* xhat, float* invstd, const float* x, const float* gamma, const float* beta,
                         int rows, int cols, float eps) const {
    cpu::layernorm_forward(y, xhat, invstd, x, gamma, beta, rows, cols, eps);
  }
  void layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                          const float* invstd, const float* gamma, int rows, int cols) const {
    cpu::layernorm_backward(dx, dgamma, dbeta, dy, xhat, invstd, gamma, rows, cols);
  }
  // the steps of cpu_steps_more.h (parameterised activations, Softmax, Gaussian noise)
  void act_param_forward(float* y, const float* x, std::int64_t n, const ActParam& a) const {
    cpu::act_param_forward(y, x, n, a);
  }
  void act_param_backward(float* dx, const float* dy, const float* x, const float* y, std::int64_t n,
                          const ActParam& a) const {
    cpu::act_param_backward(dx, dy, x, y, n, a);
  }
  void softmax_rows(float* y, const float* x, int rows, int cols) const {
    cpu::softmax(y, x, std::size_t(rows), std::size_t(cols));
  }
  void softmax_rows_backward(float* dx, const float* dy, const float* y, int rows, int cols) const {
    cpu::softmax_backward(dx, dy, y, std::size_t(rows), std::size_t(cols));
  }
  // the log_softmax step (layer_steps.h): the per-op path's kernels (activations.cpp)
  void log_softmax_rows(float* y, const float* x, int rows, int cols) const {
    cpu::log_softmax(y, x, std::size_t(rows), std::size_t(cols));
  }
  void log_softmax_rows_backward(float* dx, const float* dy, const float* y, int rows, int cols) const {
    cpu::log_softmax_backward(dx, dy, y, std::size_t(rows), std::size_t(cols));
  }
  void gaussian_factor(float* m, int rows, int cols, std::uint64_t seed, std::uint64_t t, float scale,
                       bool add_one) const {
    cpu::gaussian_factor(m, rows, cols, seed, t, scale, add_one);
  }
  void copy(float* y, const float* x, std::int64_t n) const { std::copy_n(x, std::size_t(n), y); }
  // graph blocks (fusednn/trainer.h): column-block copies and sums of row-major matrices
  void copy_cols(float* dst, int dst_cols, int dst_off, const float* src, int src_cols, int src_off, int width,
                 int rows) const {
    for (int r = 0; r < rows; ++r)
      std::copy_n(src + std::size_t(r) * src_cols + src_off, width, dst + std::size_t(r) * dst_cols + dst_off);
  }
  void add_cols(float* dst, int dst_cols, int dst_off, const float* src, int src_cols, int src_off, int width,
                int rows) const {
    for (int r = 0; r < rows; ++r) {
      float* d = dst + std::size_t(r) * dst_cols + dst_off;
      const float* a = src + std::size_t(r) * src_cols + src_off;
      for (int c = 0; c < width; ++c) d[c] = d[c] + a[c];
    }
  }
  // the elementwise merges of graph blocks (fusednn/cpu_merge.h): strided blocks, so a merge reads a
  // model input's columns of the batch in place
  void merge_binary(float* y, int ldy, const float* a, int lda, const float* b, int ldb, int rows, int cols,
                    MergeOp op) const {
    cpu::merge_binary(y, ldy, a, lda, b, ldb, rows, cols, op);
  }
  void merge_scale(float* y, int ldy, const float* x, int ldx, float s, int rows, int cols) const {
    cpu::merge_scale(y, ldy, x, ldx, s, rows, cols);
  }
  void add(float* y, const float* a, const float* b, std::int64_t n) const {
    for (std::int64_t k = 0; k < n; ++k) y[k] = a[k] + b[k];
  }
  // a head's loss weight times its loss gradient (fusednn/heads.h)
  void scale(float* y, float s, std::int64_t n) const {
    for (std::int64_t k = 0; k < n; ++k) y[k] = s * y[k];
  }
  void batchnorm_infer(float* y, const float* x, const float* gamma, const float* beta, const float* mean,
                       const float* var, int rows, int cols, float eps) const {
    cpu::batchnorm_infer(y, x, gamma, beta, mean, var, rows, cols, eps);
  }
  bool is_finite(const float* v) const { return std::isfinite(*v); }
};

// the graph blocks' kernels (a member with a wrong name would silently leave the merges to a runtime error)
static_assert(has_merges<Kernels>::value && has_merge_ops<Kernels>::value, "the CPU trainer policy lacks a merge kernel");

}  // namespace

std::int64_t train_steps(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                         const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                         std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done) {
  double norm = 0.0;
  return fusednn::train_steps(Kernels{&norm}, layers, opt, loss, data, batch, step0, step1, iterations,
                              stop_on_nonfinite, steps_done);
}

// A replica of train_replicas.cpp: the loop with an empty update phase (the replicas'
// `between` hook reduces the gradients and updates the shared parameters itself).
namespace {
struct KernelsNoUpdate : Kernels {
  void opt_update(OptKind, int, const float*, float*, const float*, float*, float*, float*, float*,
                  std::int64_t) const {}
};
}  // namespace

std::int64_t train_steps_no_update(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                                   const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                                   std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done) {
  double norm = 0.0;
  return fusednn::train_steps(KernelsNoUpdate{{&norm}}, layers, opt, loss, data, batch, step0, step1, iterations,
                              stop_on_nonfinite, steps_done);
}

}  // namespace cpu
}  // namespace fusednn
