// Dropout and BatchNormalization on the GPU (fusednn/cuda_layers.h), the twins of
// cpu/layers.cpp: the same Philox draws (fusednn/philox.h) and the same float32
// formulas, with the per-column statistics summed in double in a fixed order
// (one thread per column walks the rows), so the results do not depend on timing.
// The layers of a small MLP are narrow (tens to hundreds of columns), where one
// thread per column is enough.
#include "fusednn/cuda_layers.h"
#include "fusednn/philox.h"

namespace fusednn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

__global__ void dropout_mask_kernel(float* m, std::int64_t rows, std::int64_t cols, float rate, std::uint64_t seed,
                                    std::uint64_t t, bool row_b, bool col_b) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const float scale = 1.0f / (1.0f - rate);
  const float u = philox_uniform(seed, t, noise_index(i / cols, i % cols, cols, row_b, col_b));
  m[i] = u >= rate ? scale : 0.0f;
}

__global__ void mul_kernel(float* y, const float* a, const float* b, std::size_t n) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a[i] * b[i];
}

__global__ void bn_stats_kernel(float* mean32, float* invstd, const float* x, std::int64_t rows, std::int64_t cols,
                                float eps, float* mm, float* mv, float momentum) {
  const std::int64_t c = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  double s = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) s += x[r * cols + c];
  const double mean = s / double(rows);
  double v = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const double d = x[r * cols + c] - mean;
    v += d * d;
  }
  v /= double(rows);
  invstd[c] = float(1.0 / sqrt(v + double(eps)));
  mean32[c] = float(mean);
  if (mm) mm[c] = mm[c] * momentum + float(mean) * (1.0f - momentum);
  if (mv) mv[c] = mv[c] * momentum + float(v) * (1.0f - momentum);
}

__global__ void bn_apply_kernel(float* y, float* xhat, const float* x, const float* mean32, const float* invstd,
                                const float* gamma, const float* beta, std::int64_t rows, std::int64_t cols) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const std::int64_t c = i % cols;
  const float h = (x[i] - mean32[c]) * invstd[c];
  xhat[i] = h;
  y[i] = (gamma ? gamma[c] * h : h) + (beta ? beta[c] : 0.0f);
}

__global__ void bn_grad_sums_kernel(float* k, float* a, float* b, float* dgamma, float* dbeta, const float* dy,
                                    const float* xhat, const float* invstd, const float* gamma, std::int64_t rows,
                                    std::int64_t cols) {
  const std::int64_t c = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  double sdy = 0.0, sdyx = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t i = r * cols + c;
    sdy += dy[i];
    sdyx += double(dy[i]) * xhat[i];
  }
  if (dgamma) dgamma[c] = float(sdyx);
  if (dbeta) dbeta[c] = float(sdy);
  k[c] = (gamma ? gamma[c] : 1.0f) * invstd[c];
  a[c] = float(sdy / double(rows));
  b[c] = float(sdyx / double(rows));
}

__global__ void bn_grad_apply_kernel(float* dx, const float* dy, const float* xhat, const float* k, const float* a,
                                     const float* b, std::int64_t rows, std::int64_t cols) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const std::int64_t c = i % cols;
  dx[i] = k[c] * (dy[i] - a[c] - xhat[i] * b[c]);
}

}  // namespace

cudaError_t dropout_mask(float* m, std::int64_t rows, std::int64_t cols, float rate, std::uint64_t seed,
                         std::uint64_t t, bool row_b, bool col_b, cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  dropout_mask_kernel<<<blocks_for(rows * cols), kThreads, 0, stream>>>(m, rows, cols, rate, seed, t, row_b, col_b);
  return cudaGetLastError();
}

cudaError_t mul(float* y, const float* a, const float* b, std::size_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  mul_kernel<<<blocks_for(std::int64_t(n)), kThreads, 0, stream>>>(y, a, b, n);
  return cudaGetLastError();
}

cudaError_t batchnorm_train(float* y, float* xhat, float* invstd, const float* x, const float* gamma,
                            const float* beta, std::int64_t rows, std::int64_t cols, float eps, float* mm,
                            float* mv, float momentum, float* mean32, cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  bn_stats_kernel<<<blocks_for(cols), kThreads, 0, stream>>>(mean32, invstd, x, rows, cols, eps, mm, mv, momentum);
  bn_apply_kernel<<<blocks_for(rows * cols), kThreads, 0, stream>>>(y, xhat, x, mean32, invstd, gamma, beta, rows,
                                                                   cols);
  return cudaGetLastError();
}

cudaError_t batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                               const float* invstd, const float* gamma, std::int64_t rows, std::int64_t cols,
                               float* k, cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  bn_grad_sums_kernel<<<blocks_for(cols), kThreads, 0, stream>>>(k, k + cols, k + 2 * cols, dgamma, dbeta, dy, xhat,
                                                                 invstd, gamma, rows, cols);
  bn_grad_apply_kernel<<<blocks_for(rows * cols), kThreads, 0, stream>>>(dx, dy, xhat, k, k + cols, k + 2 * cols,
                                                                        rows, cols);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fusednn
