// CPU kernels: plain functions on raw float32 pointers with explicit sizes.
// All matrices are row-major and contiguous. They know nothing about Python;
// csrc/bind/cpu_module.cpp validates arguments before calling them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "fusednn/activation.h"
#include "fusednn/constraint.h"
#include "fusednn/trainer.h"

namespace fusednn {
namespace cpu {

// ---- gemm.cpp
// C[M,N] = act(op(A)·op(B) + bias), op(A) is M×K (A stored K×M when ta),
// op(B) is K×N (B stored N×K when tb); bias is a length-N row or null.
// Packed panels + register-tiled micro-kernel, threaded for large products.
void matmul(float* C, const float* A, const float* B, int M, int N, int K,
            bool ta, bool tb, const float* bias, Act act);
// The same contract, triple loop in double precision: the oracle for tests.
void matmul_reference(float* C, const float* A, const float* B, int M, int N, int K,
                      bool ta, bool tb, const float* bias, Act act);

// ---- activations.cpp
void act_forward(float* y, const float* x, std::size_t n, Act act);
// dx = dy * act'(x), written in terms of the forward output y, or, where
// act_backward_needs_input(act) (gelu, swish, mish, ...), of the forward input x
// passed in its place.
void act_backward(float* dx, const float* dy, const float* y, std::size_t n, Act act);
// The gradient into a hidden layer whose outputs y (rows×cols) feed k units (weights w,
// cols×k): dx = act_backward(dz wᵀ, y) (dz: rows×k) and, where db is not null, db =
// sum_rows(dx): the bits of matmul, act_backward and sum_rows, in one pass over dx for
// relu, sigmoid, tanh and linear where k is 1, or under 16 with cols a multiple of 8 (a
// binary classifier's or regressor's hidden layer, or one under a few classes).
void hidden_grad(float* dx, float* db, const float* dz, const float* w, const float* y, std::size_t rows,
                 std::size_t cols, std::size_t k, Act act);
// y[r, c] = act(x[r, c] + b[c]); x may alias y.
void bias_act(float* y, const float* x, const float* b, std::size_t rows, std::size_t cols, Act act);
// Row-wise softmax of x (rows×cols), shifted by each row's max so it cannot
// overflow; x may alias y.
void softmax(float* y, const float* x, std::size_t rows, std::size_t cols);
// dx = y * (dy - sum_j dy_j y_j) per row, from the softmax output y.
void softmax_backward(float* dx, const float* dy, const float* y, std::size_t rows, std::size_t cols);
// Row-wise log-softmax x - max - log(sum e^(x - max)) (sum in double); and its
// gradient dx = dy - e^y * sum_j dy_j from the output y.
void log_softmax(float* y, const float* x, std::size_t rows, std::size_t cols);
void log_softmax_backward(float* dx, const float* dy, const float* y, std::size_t rows, std::size_t cols);

// ---- loss.cpp
// mean((p - t)^2) over n elements, accumulated in double.
double mse(const float* p, const float* t, std::size_t n);
// g = scale * (p - t); the MSE gradient uses scale = 2 / n.
void mse_grad(float* g, const float* p, const float* t, std::size_t n, float scale);

// Cross-entropy on logits z (rows×cols), the stable form Keras uses when the
// output layer's sigmoid/softmax is folded into the loss:
//   sigmoid_binary:      mean over all elements of max(z,0) - z t + log(1 + e^-|z|)
//   softmax_categorical: mean over rows of sum_j t_j (logsumexp(z) - z_j)
//   softmax_sparse:      t holds one class index per row (as float); mean over rows
//                        of logsumexp(z) - z_t. An index outside [0, cols) makes the
//                        loss NaN and that row's gradient zero (never read out of range).
// Returns the loss (accumulated in double); g (may be null) receives
// scale * (act(z) - t), the gradient w.r.t. z when scale = 1/elements or 1/rows.
double xent(float* g, const float* z, const float* t, std::size_t rows, std::size_t cols, XentKind kind,
            float scale);

// ---- loss_extra.cpp
// The mean Keras loss `fn` (LossFn) of predictions p against targets t
// (rows×cols), accumulated in double with a fixed reduction order (the same
// bits for any thread count); g (may be null) receives its gradient w.r.t. p.
// `param` holds Huber's delta, or the focal losses' constants (LossParams; a
// float converts to it). Hinge losses take labels in
// {-1, 1}, or in {0, 1} when every target of the call is 0 or 1 (Keras'
// conversion, decided per call).
double loss_grad(float* g, const float* p, const float* t, std::size_t rows, std::size_t cols, LossFn fn,
                 LossParams param);

// ---- metrics.cpp: accumulators that fit/evaluate read once per epoch
// counts[true * classes + predicted] += 1 per row. With classes == 2 and
// cols == 1 the prediction is p > threshold (a sigmoid output or probability);
// otherwise it is the argmax over the row. Targets are class indices when
// sparse, else one-hot rows (argmax) or, for one column, t > 0.5.
void confusion_update(double* counts, const float* p, const float* t, std::size_t rows, std::size_t cols,
                      int classes, bool sparse, float threshold);
// sums[0] += sum |p - t|, sums[1] += sum (p - t)^2 over n elements.
void error_sums_update(double* sums, const float* p, const float* t, std::size_t n);

// ---- metric_objects.cpp: Keras metric objects (fusednn/metric_math.h) over rows x cols
// outputs p and their targets t (one class index per row when s.sparse); w: one sample
// weight per row, or null for 1.
void metric_update(const MetricSpec& s, const float* p, const float* t, const float* w, std::size_t rows,
                   std::size_t cols);

// ---- augment.cpp
// out[k, i, j, :] = in[k] sampled at (sy, sx) = M_k (i, j, 1) for each of n images
// (h×w×c, channels last); mats holds the n row-major 2×3 maps M_k. Bilinear or
// nearest; source points outside the image read `fill`, or with `clamp` are
// first moved to the nearest edge pixel.
void affine_warp(float* out, const float* in, const double* mats, std::size_t n, int h, int w, int c,
                 float fill, bool bilinear, bool clamp);

// ---- reduce.cpp
// out[c] = sum over rows of x[r, c] (the bias gradient).
void sum_rows(float* out, const float* x, std::size_t rows, std::size_t cols);

// ---- regularize.cpp
// Keras' L1/L2 weight penalty: g += l1*sign(w) + 2*l2*w, and (when loss is not
// null) *loss += sum(l1*|w| + l2*w^2), accumulated in double.
void regularize(float* g, const float* w, std::size_t n, float l1, float l2, float* loss);
// The same after summing two replicas' gradients, g = c0*g0 + c1*g1 (each product
// rounded; g may be g0 or g1), in one pass where AVX2 runs: the bits of that sum
// followed by regularize.
void weighted_sum_regularize(float* g, const float* g0, const float* g1, float c0, float c1, const float* w,
                             std::size_t n, float l1, float l2, float* loss);

// ---- constrain.cpp
// Project a rows x cols weight in place onto a Keras weight constraint
// (fusednn/constraint.h) after its optimizer update.
void constrain(float* w, std::size_t rows, std::size_t cols, const Constraint& c);

// ---- weighting.cpp (sample weights in the fused trainer)
// The loss of one row as the fused losses define it (kind -1: mse, else an
// XentKind on logits p; sparse targets hold one class index).
double row_loss(const float* p, const float* t, std::size_t cols, int kind);
// sum_r s[r] * row_loss(row r) / rows, accumulated in double.
double weighted_loss(const float* p, const float* t, const float* s, std::size_t rows, std::size_t cols,
                     int kind);
// sum_r s[r] * l_r / rows for a LossFn loss, l_r row r's loss (its elements' mean, or the row
// kinds' row value); the hinge losses' {0, 1} -> {-1, 1} conversion is decided over the call.
double weighted_loss_fn(const float* p, const float* t, const float* s, std::size_t rows, std::size_t cols,
                        LossFn fn, LossParams param);
// g[r, :] *= s[r]
void scale_rows(float* g, const float* s, std::size_t rows, std::size_t cols);

// ---- optim.cpp (in place, Keras semantics)
// momentum == 0: w -= lr*g. Otherwise v = momentum*v - lr*g and
// w += v (or, with nesterov, w += momentum*v - lr*g).
void sgd_update(float* w, const float* g, float* v, std::size_t n, float lr,
                float momentum, bool nesterov);
// step is the 1-based count of updates including this one.
void adam_update(float* w, const float* g, float* m, float* v, std::size_t n, float lr,
                 float beta1, float beta2, float eps, std::int64_t step);

// ---- optim_keras.cpp: every Keras optimizer (fusednn/optim_update.h), in place.
// p is the step's row of kOptParams parameters; s1..s3 and ema are the state
// arrays the kind and flags use (others may be null); sumsq is the sum of squares
// the clipping factor derives from (this gradient's for clip_norm, all of the
// step's gradients' for clip_global; ignored otherwise).
void optimizer_update(OptKind kind, int flags, const float* p, float* w, const float* g, float* s1, float* s2,
                      float* s3, float* ema, std::size_t n, double sumsq);
// sum of x[i]^2 in double, in one fixed order of additions (the same on every SIMD path).
double sum_squares(const float* x, std::size_t n);

// ---- train.cpp: fusednn::train_steps (trainer.h) on the CPU kernels above.
std::int64_t train_steps(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                         const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                         std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done);

// ---- cpu_features.cpp
struct Features {
  bool avx2 = false;
  bool fma = false;
};
const Features& features();
// The SIMD path the kernels use now ("avx2+fma" or "portable"); tests can
// force the portable path to check both on one machine.
const char* simd_path();
void force_portable(bool on);
bool use_avx2();

// ---- threads.cpp
int num_threads();
void set_num_threads(int n);

}  // namespace cpu
}  // namespace fusednn
