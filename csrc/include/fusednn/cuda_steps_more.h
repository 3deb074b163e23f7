// CUDA kernels of the fused trainer's newer layer steps (fusednn/layer_steps.h) and
// graph blocks (fusednn/trainer.h), the twins of the CPU policy's (csrc/cpu/train.cpp):
// PReLU, LayerNormalization, the parameterised activations (cpu_steps_more.h), the
// Gaussian noise factor (Philox normals, bit for bit the CPU's draw), a frozen
// BatchNormalization's inference map, the column-block copies/sums of graph merges and
// the Dense weight constraints (constraint.h). All queued on `stream`; none allocates
// (column and row statistics are reduced inside one block, in double, in a fixed order,
// so results do not depend on timing). Used by the CUDA fused trainer only when
// FUSEDNN_CUDA_TRAINER_STEPS=1 (see python/fusednn/backends/cuda.py): not yet run on a
// device.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "fusednn/constraint.h"
#include "fusednn/cpu_steps_more.h"
#include "fusednn/merge_op.h"

namespace fusednn {
namespace cuda {

// y = x > 0 ? x : alpha * x (alpha per column, or alpha_n == 1 shared)
cudaError_t prelu_forward(float* y, const float* x, const float* alpha, std::int64_t rows, std::int64_t cols,
                          std::int64_t alpha_n, cudaStream_t stream);
// dx = dy * (1, alpha or 0 where x >, < or == 0); dalpha = sum over rows of dy * min(x, 0) in
// double (one shared alpha also sums the columns)
cudaError_t prelu_backward(float* dx, float* dalpha, const float* dy, const float* x, const float* alpha,
                           std::int64_t rows, std::int64_t cols, std::int64_t alpha_n, cudaStream_t stream);
// cpu::layernorm_forward/backward (csrc/cpu/layernorm.cpp), step for step
cudaError_t layernorm_forward(float* y, float* xhat, float* invstd, const float* x, const float* gamma,
                              const float* beta, std::int64_t rows, std::int64_t cols, float eps,
                              cudaStream_t stream);
cudaError_t layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                               const float* invstd, const float* gamma, std::int64_t rows, std::int64_t cols,
                               cudaStream_t stream);
// cpu::act_param_forward/backward (csrc/cpu/steps_more.cpp)
cudaError_t act_param_forward(float* y, const float* x, std::int64_t n, const ActParam& a, cudaStream_t stream);
cudaError_t act_param_backward(float* dx, const float* dy, const float* x, const float* y, std::int64_t n,
                               const ActParam& a, cudaStream_t stream);
// cpu::gaussian_factor: m = scale * z (+ 1 when add_one), z the Box-Muller normals of Philox
// block e/2 at step t (the transcendental part in double)
cudaError_t gaussian_factor(float* m, std::int64_t rows, std::int64_t cols, std::uint64_t seed, std::uint64_t t,
                            float scale, bool add_one, cudaStream_t stream);
// y = a + b elementwise (y may alias a or b)
cudaError_t add(float* y, const float* a, const float* b, std::size_t n, cudaStream_t stream);
// dst[r, dst_off + c] (+)= src[r, src_off + c] for c < width, r < rows (row-major, dst_cols / src_cols wide)
cudaError_t copy_cols(float* dst, std::int64_t dst_cols, std::int64_t dst_off, const float* src, std::int64_t src_cols,
                      std::int64_t src_off, std::int64_t width, std::int64_t rows, cudaStream_t stream);
cudaError_t add_cols(float* dst, std::int64_t dst_cols, std::int64_t dst_off, const float* src, std::int64_t src_cols,
                     std::int64_t src_off, std::int64_t width, std::int64_t rows, cudaStream_t stream);
// cpu::merge_binary / cpu::merge_scale (fusednn/cpu_merge.h): y = a op b, y = x * s over row-major
// blocks with their own row strides (y may alias an operand), one rounding per operation
cudaError_t merge_binary(float* y, std::int64_t ldy, const float* a, std::int64_t lda, const float* b,
                         std::int64_t ldb, std::int64_t rows, std::int64_t cols, MergeOp op, cudaStream_t stream);
cudaError_t merge_scale(float* y, std::int64_t ldy, const float* x, std::int64_t ldx, float s, std::int64_t rows,
                        std::int64_t cols, cudaStream_t stream);
// cpu::batchnorm_infer: y = x * scale + shift, scale = gamma / sqrt(var + eps) (in double, rounded),
// shift = beta - mean * scale (gamma/beta null: 1/0)
cudaError_t batchnorm_infer(float* y, const float* x, const float* gamma, const float* beta, const float* mean,
                            const float* var, std::int64_t rows, std::int64_t cols, float eps, cudaStream_t stream);
// cpu::constrain: project the rows×cols weight w in place (constraint.h)
cudaError_t constrain(float* w, std::int64_t rows, std::int64_t cols, const Constraint& c, cudaStream_t stream);

}  // namespace cuda
}  // namespace fusednn
