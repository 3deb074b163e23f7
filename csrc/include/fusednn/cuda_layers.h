// CUDA kernels of the layer steps (Dropout, BatchNormalization), the twins of
// fusednn/cpu_layers.h, queued on `stream`; used by the CUDA fused trainer's
// layer steps (fusednn/layer_steps.h). Not yet run on a device: the CUDA trainer
// takes layer steps. `scratch` holds 3*cols floats of device memory the caller
// owns (nothing is allocated behind CuPy's back); it only when FUSEDNN_CUDA_TRAINER_STEPS=1 (see backends/cuda.py).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace fusednn {
namespace cuda {

cudaError_t dropout_mask(float* m, std::int64_t rows, std::int64_t cols, float rate, std::uint64_t seed,
                         std::uint64_t t, bool row_b, bool col_b, cudaStream_t stream);
cudaError_t mul(float* y, const float* a, const float* b, std::size_t n, cudaStream_t stream);
cudaError_t batchnorm_train(float* y, float* xhat, float* invstd, const float* x, const float* gamma,
                            const float* beta, std::int64_t rows, std::int64_t cols, float eps,
                            float* moving_mean, float* moving_var, float momentum, float* scratch,
                            cudaStream_t stream);
cudaError_t batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                               const float* invstd, const float* gamma, std::int64_t rows, std::int64_t cols,
                               float* scratch, cudaStream_t stream);

}  // namespace cuda
}  // namespace fusednn
