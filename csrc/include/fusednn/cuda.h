// CUDA kernels: the twins of fusednn/cpu.h, on device pointers, launched on
// the caller's stream. Each launcher returns the cudaError_t of its launch
// (checked by the bindings, which raise RuntimeError naming the kernel).
// Launchers never allocate: scratch space comes from the caller.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "fusednn/activation.h"
#include "fusednn/trainer.h"

namespace fusednn {
namespace cuda {

// ---- loss.cu: the LossFn losses, with the contract of cpu::loss_grad: the
// mean loss reduced in double with a fixed tree (workspace of
// loss_grad_workspace_len() doubles; result left as a double in its last
// element and as a float in loss_out[0] when not null), g (may be null) the
// gradient. Nothing waits.
std::size_t loss_grad_workspace_len();
cudaError_t loss_grad(float* g, const float* p, const float* t, std::size_t rows, std::size_t cols, LossFn fn,
                      LossParams param, float* loss_out, double* workspace, cudaStream_t stream);

// ---- gemm.cu
// C[M,N] = act(op(A)·op(B) + bias), op(A) is M×K (A stored K×M when ta),
// op(B) is K×N (B stored N×K when tb); bias is a length-N row or null.
// K == 0 writes act(bias) (or act(0)). `variant` picks a tile configuration
// (see gemm_variant_name); -1 lets gemm_pick_variant choose by shape. With
// tf32, devices of compute capability >= 8.0 use the tensor cores with
// operands rounded to TF32 (like torch.backends.cuda.matmul.allow_tf32);
// older devices ignore the flag.
cudaError_t matmul(float* C, const float* A, const float* B, int M, int N, int K, bool ta,
                   bool tb, const float* bias, Act act, cudaStream_t stream, int variant = -1,
                   bool tf32 = false);
// The same contract, one thread per output accumulating in double: the
// oracle for tests.
cudaError_t matmul_reference(float* C, const float* A, const float* B, int M, int N, int K,
                             bool ta, bool tb, const float* bias, Act act, cudaStream_t stream);
// Number of FP32 tile configurations and their names ("128x128x8/8x8", ...).
int gemm_variant_count();
const char* gemm_variant_name(int variant);
// The variant matmul uses for this shape when variant == -1 (on the current device).
int gemm_pick_variant(int M, int N, int K);
// Whether the current device runs the TF32 tensor-core path (sm_80 or newer).
bool tf32_supported();

// ---- activations.cu
cudaError_t act_forward(float* y, const float* x, std::size_t n, Act act, cudaStream_t stream);
// dx = dy * act'(x), written in terms of the forward output y, or of the
// forward input passed in its place where act_backward_needs_input(act).
cudaError_t act_backward(float* dx, const float* dy, const float* y, std::size_t n, Act act,
                         cudaStream_t stream);
// y[r, c] = act(x[r, c] + b[c]); x may alias y.
cudaError_t bias_act(float* y, const float* x, const float* b, std::size_t rows, std::size_t cols,
                     Act act, cudaStream_t stream);
// Row-wise softmax of x (rows×cols), shifted by each row's max so it cannot
// overflow, its sum accumulated in double; x may alias y.
cudaError_t softmax(float* y, const float* x, std::size_t rows, std::size_t cols, cudaStream_t stream);
// dx = y * (dy - sum_j dy_j y_j) per row (the sum in double), from the softmax
// output y; dx may alias dy or y.
cudaError_t softmax_backward(float* dx, const float* dy, const float* y, std::size_t rows,
                             std::size_t cols, cudaStream_t stream);

// Row-wise log-softmax and its gradient dx = dy - e^y * sum(dy) (the twins of
// cpu::log_softmax; sums in double); dx may alias dy.
cudaError_t log_softmax(float* y, const float* x, std::size_t rows, std::size_t cols, cudaStream_t stream);
cudaError_t log_softmax_backward(float* dx, const float* dy, const float* y, std::size_t rows,
                                 std::size_t cols, cudaStream_t stream);

// ---- loss.cu
// Number of doubles of device scratch space mse needs (independent of n).
std::size_t mse_workspace_len();
// mean((p - t)^2) over n elements, accumulated in double with a fixed
// reduction tree, so the same inputs give the same bits on every run. The
// result is left as a double in workspace[mse_workspace_len() - 1] and, when
// out is not null, as a float in out[0] (a device pointer); nothing waits for
// it. `workspace` is device memory of mse_workspace_len() doubles.
cudaError_t mse(const float* p, const float* t, std::size_t n, float* out, double* workspace,
                cudaStream_t stream);
// g = scale * (p - t); the MSE gradient uses scale = 2 / n.
cudaError_t mse_grad(float* g, const float* p, const float* t, std::size_t n, float scale,
                     cudaStream_t stream);
// Number of doubles of device scratch space xent needs (independent of the shape).
std::size_t xent_workspace_len();
// Cross-entropy on logits z (rows×cols) with the contract of cpu::xent: kinds
// sigmoid_binary (mean over elements), softmax_categorical and softmax_sparse
// (mean over rows; a sparse index that is not an integer in [0, cols) makes the
// loss NaN and that row's gradient zero, and is never used to read). g (may be
// null) receives scale * (act(z) - t). The loss is reduced in double with a
// fixed tree (the same bits on every run), left as a double in
// workspace[xent_workspace_len() - 1] and, when loss_out is not null, as a
// float in loss_out[0] (device memory); nothing waits for it. `workspace` is
// device memory of xent_workspace_len() doubles.
cudaError_t xent(float* g, const float* z, const float* t, std::size_t rows, std::size_t cols,
                 XentKind kind, float scale, float* loss_out, double* workspace, cudaStream_t stream);

// ---- metrics.cu: accumulators that fit/evaluate read once per epoch
// counts[true * classes + predicted] += 1 per row (device memory, double), with
// the contract of cpu::confusion_update. The adds are atomic: counts are whole
// numbers far below 2^53, so their order cannot change the result.
cudaError_t confusion_update(double* counts, const float* p, const float* t, std::size_t rows,
                             std::size_t cols, int classes, bool sparse, float threshold,
                             cudaStream_t stream);
// sums[0] += sum |p - t|, sums[1] += sum (p - t)^2 over n elements (device
// memory, double): one block reduces in a fixed order and adds once, so the
// sums are the same bits on every run.
cudaError_t error_sums_update(double* sums, const float* p, const float* t, std::size_t n,
                              cudaStream_t stream);

// ---- reduce.cu
// out[c] = sum over rows of x[r, c] (the bias gradient), accumulated in double
// in a fixed order (deterministic).
cudaError_t sum_rows(float* out, const float* x, std::size_t rows, std::size_t cols,
                     cudaStream_t stream);

// ---- regularize.cu
// Keras' L1/L2 weight penalty: g += l1*sign(w) + 2*l2*w, and (when loss is not
// null) *loss += sum(l1*|w| + l2*w^2) (device float), summed in double by one
// block in a fixed order (deterministic).
cudaError_t regularize(float* g, const float* w, std::size_t n, float l1, float l2, float* loss,
                       cudaStream_t stream);

// ---- weighting.cu (sample weights in the fused trainer; the twins of cpu/weighting.cpp)
// *out = sum_r s[r] * loss(row r) / rows (device float), one block, fixed order.
cudaError_t weighted_loss(const float* p, const float* t, const float* s, std::size_t rows, std::size_t cols,
                          int kind, float* out, cudaStream_t stream);
cudaError_t scale_rows(float* g, const float* s, std::size_t rows, std::size_t cols, cudaStream_t stream);

// ---- metric_objects.cu (the twins of cpu/metric_objects.cpp and cpu::weighted_loss_fn;
// not yet run on a device)
// s.acc and s.thresholds are device memory; w (rows floats) may be null.
cudaError_t metric_update(const MetricSpec& s, const float* p, const float* t, const float* w, std::size_t rows,
                          std::size_t cols, cudaStream_t stream);
// *out = sum_r s[r] * loss(row r) / rows (device float), one block, fixed order.
cudaError_t weighted_loss_fn(const float* p, const float* t, const float* s, std::size_t rows, std::size_t cols,
                             LossFn fn, LossParams param, float* out, cudaStream_t stream);

// ---- optim.cu (in place, Keras semantics, the operation order of cpu/optim.cpp)
cudaError_t sgd_update(float* w, const float* g, float* v, std::size_t n, float lr, float momentum,
                       bool nesterov, cudaStream_t stream);
// step is the 1-based count of updates including this one; the bias-corrected
// step size is computed on the host in double, as on the CPU.
cudaError_t adam_update(float* w, const float* g, float* m, float* v, std::size_t n, float lr,
                        float beta1, float beta2, float eps, std::int64_t step,
                        cudaStream_t stream);

// ---- optim_keras.cu: every Keras optimizer (fusednn/optim_update.h), in place.
// The clipping factor derives from *sumsq_dev when it is not null, else from sumsq.
cudaError_t optimizer_update(OptKind kind, int flags, const OptStep& p, float* w, const float* g, float* s1,
                             float* s2, float* s3, float* ema, std::size_t n, double sumsq,
                             const double* sumsq_dev, cudaStream_t stream);
// *acc += sum(x^2), accumulated in double in a fixed order (deterministic).
cudaError_t sum_squares_add(double* acc, const float* x, std::size_t n, cudaStream_t stream);

// ---- train.cu
// dst[r, :] = src[idx[r], :] for r < rows (rows of `cols` floats). A row whose
// index lies outside [0, src_rows) is filled with NaN instead of being read, so
// a bad permutation shows up as a NaN loss, never as an out-of-range read.
cudaError_t gather_rows(float* dst, const float* src, const std::int64_t* idx, std::size_t rows,
                        std::size_t cols, std::int64_t src_rows, cudaStream_t stream);
// fusednn::train_steps (trainer.h) on the kernels above, queued on `stream`
// with nothing waiting for the GPU: matmul picks its tile by shape and uses
// TF32 when `tf32` is set; `workspace` is device memory of
// max(mse_workspace_len(), xent_workspace_len()) doubles, used by the loss of
// each step in stream order. The per-step losses stay on the device, so
// stop_on_nonfinite has no effect here. Throws std::runtime_error naming the
// kernel when a launch fails.
std::int64_t train_steps(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                         const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                         std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done,
                         cudaStream_t stream, bool tf32, double* workspace);

// ---- device.cu
int device_count();
struct DeviceInfo {
  char name[256];
  int major = 0, minor = 0;
  int multiprocessors = 0;
  std::size_t total_memory = 0;
  std::size_t l2_bytes = 0;
};
cudaError_t device_info(int device, DeviceInfo* info);
// Free and total bytes on the current device.
cudaError_t memory_info(std::size_t* free_bytes, std::size_t* total_bytes);
cudaError_t current_device(int* device);
// Multiprocessor count and compute capability of the current device, cached
// per device so launchers can size grids without a driver round trip.
int sm_count();
int compute_major();
// Where a pointer lives: whether the current context can use it as device
// memory (device or managed), and which device owns it.
cudaError_t pointer_device(const void* p, bool* is_device, int* device);

}  // namespace cuda
}  // namespace fusednn
