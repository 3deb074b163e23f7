// CPU kernels of the non-Dense layer steps (Dropout, BatchNormalization): plain
// functions on raw row-major float32 pointers, used by the per-op bindings and by
// the fused trainer's layer steps (fusednn/layer_steps.h). The float64 NumPy
// references are fusednn/backends/numpy.py's; the random draws follow
// fusednn/philox.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fusednn {
namespace cpu {

// Inverted dropout's mask: m[r, c] = 1/(1-rate) where the uniform draw of its
// noise element (philox.h, step t) is >= rate, else 0.
void dropout_mask(float* m, std::int64_t rows, std::int64_t cols, float rate, std::uint64_t seed,
                  std::uint64_t t, bool row_b, bool col_b);
// y = a * b elementwise (dropout forward with the mask, and its backward).
void mul(float* y, const float* a, const float* b, std::size_t n);

// Batch normalisation in training over rows×cols (statistics per column, biased
// variance, accumulated in double): xhat = (x - mean) * invstd,
// y = gamma * xhat + beta (gamma/beta null: 1/0); invstd = 1/sqrt(var + eps) is
// kept for the backward pass, and the moving statistics (when not null) become
// moving * momentum + batch * (1 - momentum), as Keras updates them.
void batchnorm_train(float* y, float* xhat, float* invstd, const float* x, const float* gamma,
                     const float* beta, std::int64_t rows, std::int64_t cols, float eps, float* moving_mean,
                     float* moving_var, float momentum);
// Its gradient: dgamma = sum dy*xhat, dbeta = sum dy (when not null), and
// dx = gamma*invstd/N * (N dy - sum dy - xhat sum dy*xhat).
void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                        const float* invstd, const float* gamma, std::int64_t rows, std::int64_t cols);
// Inference with given statistics: y = (x - mean) / sqrt(var + eps) * gamma + beta.
void batchnorm_infer(float* y, const float* x, const float* gamma, const float* beta, const float* mean,
                     const float* var, std::int64_t rows, std::int64_t cols, float eps);

// Layer normalisation (layernorm.cpp) over rows×cols, each row over its columns
// (mean and biased variance in double): invstd[r] = 1/sqrt(var_r + eps) (rows
// values), xhat = (x - mean_r) * invstd[r], y = xhat * gamma + beta (gamma/beta null:
// 1/0). xhat and invstd are kept for the backward pass.
void layernorm_forward(float* y, float* xhat, float* invstd, const float* x, const float* gamma,
                       const float* beta, std::int64_t rows, std::int64_t cols, float eps);
// Its gradient: dgamma = sum over rows of dy*xhat, dbeta = sum dy (double, when not
// null), and with g = dy*gamma, dx = invstd * (g - mean_c(g) - xhat * mean_c(g*xhat))
// (dx null: only the parameter gradients; dx must not alias dy or xhat).
void layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                        const float* invstd, const float* gamma, std::int64_t rows, std::int64_t cols);

// PReLU (prelu.cpp): y = x > 0 ? x : alpha * x, with alpha per column (alpha_n ==
// cols) or one shared (alpha_n == 1).
void prelu_forward(float* y, const float* x, const float* alpha, std::int64_t rows, std::int64_t cols,
                   std::int64_t alpha_n);
// Its gradient: dx = dy * (x > 0 ? 1 : x < 0 ? alpha : 0) (no buffer may alias another) and
// dalpha = sum over rows of dy * min(x, 0), in double per column (one shared
// alpha: the column sums added in column order).
void prelu_backward(float* dx, float* dalpha, const float* dy, const float* x, const float* alpha,
                    std::int64_t rows, std::int64_t cols, std::int64_t alpha_n);

}  // namespace cpu
}  // namespace fusednn
