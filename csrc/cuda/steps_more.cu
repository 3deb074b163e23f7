// The CUDA fused trainer's newer layer steps, graph-block copies and weight
// constraints (fusednn/cuda_steps_more.h), the twins of the CPU kernels the CPU
// policy calls. The float32 arithmetic follows the CPU's (and the NumPy
// reference's) operation for operation: products and sums that nvcc would
// contract into one FMA are written with the _rn intrinsics, which it never
// contracts. Row and column statistics are summed in double inside one block in a
// fixed order (no atomics, no scratch), so results do not depend on timing. The
// layers of an MLP are narrow, so one block per row (LayerNormalization) or per
// 32 columns (column sums, per-column norms) is plenty.
#include <cmath>

#include "elementwise.cuh"
#include "fusednn/cuda_steps_more.h"
#include "fusednn/philox.h"

namespace fusednn {
namespace cuda {

namespace {

constexpr int kThreads = 256;
// column kernels: 32 columns (one warp wide, coalesced) by kColRows row lanes
constexpr int kColRows = 8;

unsigned blocks_for(std::int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

// The sum of every thread's v over a block of kThreads threads, in a fixed order;
// every thread gets it. sh: kThreads doubles of shared memory.
__device__ double block_sum(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

// The sum over the kColRows row lanes of a (32, kColRows) column block, in a fixed
// order: valid in row lane 0. sh: [kColRows][32] doubles.
__device__ double lane_sum(double v, double (*sh)[32]) {
  sh[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  for (int s = kColRows / 2; s > 0; s >>= 1) {
    if (int(threadIdx.y) < s) sh[threadIdx.y][threadIdx.x] += sh[threadIdx.y + s][threadIdx.x];
    __syncthreads();
  }
  const double r = sh[0][threadIdx.x];
  __syncthreads();
  return r;
}

// ---- PReLU ------------------------------------------------------------------
__global__ void prelu_forward_kernel(float* y, const float* x, const float* alpha, std::int64_t n,
                                     std::int64_t cols, bool shared) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = x[i], a = shared ? alpha[0] : alpha[i % cols];
  const float pos = v > 0.f ? v : 0.f, neg = v < 0.f ? v : 0.f;
  y[i] = __fadd_rn(pos, __fmul_rn(a, neg));  // one of the terms is 0: exactly the select form
}

__global__ void prelu_dx_kernel(float* dx, const float* dy, const float* x, const float* alpha, std::int64_t n,
                                std::int64_t cols, bool shared) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = x[i], a = shared ? alpha[0] : alpha[i % cols];
  const float d = v > 0.f ? 1.f : (v < 0.f ? a : 0.f);  // relu's derivative is 0 at 0
  dx[i] = __fmul_rn(dy[i], d);
}

// dalpha[c] = sum_r dy * min(x, 0) (a float product is exact in double)
__global__ void prelu_dalpha_cols_kernel(float* dalpha, const float* dy, const float* x, std::int64_t rows,
                                         std::int64_t cols) {
  __shared__ double sh[kColRows][32];
  const std::int64_t c = std::int64_t(blockIdx.x) * 32 + threadIdx.x;
  double acc = 0.0;
  if (c < cols)
    for (std::int64_t r = threadIdx.y; r < rows; r += kColRows) {
      const float v = x[r * cols + c];
      acc += double(dy[r * cols + c]) * double(v < 0.f ? v : 0.f);
    }
  const double s = lane_sum(acc, sh);
  if (threadIdx.y == 0 && c < cols) dalpha[c] = float(s);
}

// one shared alpha: the sum over every element, in one block
__global__ void prelu_dalpha_all_kernel(float* dalpha, const float* dy, const float* x, std::int64_t n) {
  __shared__ double sh[kThreads];
  double acc = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += kThreads) {
    const float v = x[i];
    acc += double(dy[i]) * double(v < 0.f ? v : 0.f);
  }
  const double s = block_sum(acc, sh);
  if (threadIdx.x == 0) dalpha[0] = float(s);
}

// ---- LayerNormalization: one block per row ----------------------------------
__global__ void layernorm_forward_kernel(float* y, float* xhat, float* invstd, const float* x, const float* gamma,
                                         const float* beta, std::int64_t cols, float eps) {
  __shared__ double sh[kThreads];
  const std::int64_t r = blockIdx.x;
  const float* xr = x + r * cols;
  double s = 0.0;
  for (std::int64_t c = threadIdx.x; c < cols; c += kThreads) s += xr[c];
  const double mean = block_sum(s, sh) / double(cols);
  double v = 0.0;  // two passes: no cancellation for large means
  for (std::int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const double d = double(xr[c]) - mean;
    v += d * d;
  }
  const double var = block_sum(v, sh) / double(cols);
  const float inv = float(1.0 / sqrt(var + double(eps)));
  const float m32 = float(mean);
  if (threadIdx.x == 0) invstd[r] = inv;
  for (std::int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float h = __fmul_rn(__fsub_rn(xr[c], m32), inv);
    xhat[r * cols + c] = h;
    const float sc = gamma ? __fmul_rn(h, gamma[c]) : h;
    y[r * cols + c] = beta ? __fadd_rn(sc, beta[c]) : sc;
  }
}

// dgamma[c] = sum_r dy * xhat, dbeta[c] = sum_r dy (either may be null)
__global__ void layernorm_param_grads_kernel(float* dgamma, float* dbeta, const float* dy, const float* xhat,
                                             std::int64_t rows, std::int64_t cols) {
  __shared__ double sh[kColRows][32];
  const std::int64_t c = std::int64_t(blockIdx.x) * 32 + threadIdx.x;
  double sg = 0.0, sb = 0.0;
  if (c < cols)
    for (std::int64_t r = threadIdx.y; r < rows; r += kColRows) {
      const std::int64_t i = r * cols + c;
      sg += double(dy[i]) * double(xhat[i]);
      sb += double(dy[i]);
    }
  const double tg = lane_sum(sg, sh), tb = lane_sum(sb, sh);
  if (threadIdx.y == 0 && c < cols) {
    if (dgamma) dgamma[c] = float(tg);
    if (dbeta) dbeta[c] = float(tb);
  }
}

// per row, with g = dy * gamma: dx = invstd * ((g - mean(g)) - xhat * mean(g * xhat))
__global__ void layernorm_dx_kernel(float* dx, const float* dy, const float* xhat, const float* invstd,
                                    const float* gamma, std::int64_t cols) {
  __shared__ double sh[kThreads];
  const std::int64_t r = blockIdx.x;
  const float *dyr = dy + r * cols, *hr = xhat + r * cols;
  double sa = 0.0, sb = 0.0;
  for (std::int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float g = gamma ? __fmul_rn(dyr[c], gamma[c]) : dyr[c];
    sa += g;
    sb += double(g) * double(hr[c]);
  }
  const float a = float(block_sum(sa, sh) / double(cols)), b = float(block_sum(sb, sh) / double(cols));
  const float inv = invstd[r];
  for (std::int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float g = gamma ? __fmul_rn(dyr[c], gamma[c]) : dyr[c];
    dx[r * cols + c] = __fmul_rn(inv, __fsub_rn(__fsub_rn(g, a), __fmul_rn(hr[c], b)));
  }
}

// ---- parameterised activations (LeakyReLU, ELU, ReLU with arguments) ----------
__global__ void act_param_forward_kernel(float* y, const float* x, std::int64_t n, ActParam a) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = x[i];
  if (a.kind == ActParamKind::elu) {
    y[i] = v > 0.f ? v : __fmul_rn(a.alpha, expm1f(fminf(v, 0.f)));
    return;
  }
  const float o = v >= a.threshold ? v : __fmul_rn(a.slope, __fsub_rn(v, a.threshold));
  y[i] = a.has_max ? fminf(o, a.max_value) : o;
}

__global__ void act_param_backward_kernel(float* dx, const float* dy, const float* x, const float* y,
                                          std::int64_t n, ActParam a) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = x[i];
  float d;
  if (a.kind == ActParamKind::elu) {
    d = v > 0.f ? 1.f : __fadd_rn(y[i], a.alpha);
  } else {
    d = v >= a.threshold ? 1.f : a.slope;
    if (a.has_max && v >= a.max_value) d = 0.f;
  }
  dx[i] = __fmul_rn(dy[i], d);
}

// ---- Gaussian noise factor: the CPU's draw (csrc/cpu/steps_more.cpp) -----------
// Thread j makes elements 2j and 2j+1 from the four words of Philox block j.
__global__ void gaussian_factor_kernel(float* m, std::int64_t n, std::uint64_t seed, std::uint64_t t, float scale,
                                       bool add_one) {
  const std::int64_t j = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (2 * j >= n) return;
  const double two_pi = 2.0 * 3.141592653589793;  // np.pi
  const std::uint64_t blk = std::uint64_t(j);
  const Philox4 r = philox4x32_10(std::uint32_t(blk), std::uint32_t(blk >> 32), std::uint32_t(t),
                                  std::uint32_t(t >> 32), std::uint32_t(seed), std::uint32_t(seed >> 32));
  for (int h = 0; h < 2 && 2 * j + h < n; ++h) {
    // (a + 1) * k and -2 * log(u1) have no add after a multiply: nothing to contract
    const double u1 = (double(r.v[2 * h] >> 8) + 1.0) * (1.0 / 16777216.0);
    const double u2 = double(r.v[2 * h + 1] >> 8) * (1.0 / 16777216.0);
    const float z = float(sqrt(-2.0 * log(u1)) * cos(two_pi * u2));
    const float v = __fmul_rn(scale, z);
    m[2 * j + h] = add_one ? __fadd_rn(1.f, v) : v;
  }
}

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// ---- graph blocks: column-block sums ----------------------------------------
__global__ void add_cols_kernel(float* dst, std::int64_t dst_cols, std::int64_t dst_off, const float* src,
                                std::int64_t src_cols, std::int64_t src_off, std::int64_t width, std::int64_t n) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const std::int64_t r = i / width, c = i % width;
  float* d = dst + r * dst_cols + dst_off + c;
  *d = *d + src[r * src_cols + src_off + c];
}

// ---- graph blocks: elementwise merges (Subtract, Multiply, Average) --------------
// __f*_rn: one rounding per operation, never contracted into an FMA (as the CPU's)
__global__ void merge_binary_kernel(float* y, std::int64_t ldy, const float* a, std::int64_t lda, const float* b,
                                    std::int64_t ldb, std::int64_t cols, std::int64_t n, MergeOp op) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const std::int64_t r = i / cols, c = i % cols;
  const float u = a[r * lda + c], v = b[r * ldb + c];
  y[r * ldy + c] = op == MergeOp::add ? __fadd_rn(u, v) : op == MergeOp::sub ? __fsub_rn(u, v) : __fmul_rn(u, v);
}

__global__ void merge_scale_kernel(float* y, std::int64_t ldy, const float* x, std::int64_t ldx, float s,
                                   std::int64_t cols, std::int64_t n) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const std::int64_t r = i / cols, c = i % cols;
  y[r * ldy + c] = __fmul_rn(x[r * ldx + c], s);
}

// ---- a frozen BatchNormalization (inference map) ------------------------------
__global__ void batchnorm_infer_kernel(float* y, const float* x, const float* gamma, const float* beta,
                                       const float* mean, const float* var, std::int64_t n, std::int64_t cols,
                                       float eps) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const std::int64_t c = i % cols;
  const float inv = float(1.0 / sqrt(double(var[c]) + double(eps)));
  const float scale = __fmul_rn(gamma ? gamma[c] : 1.0f, inv);
  const float shift = __fsub_rn(beta ? beta[c] : 0.0f, __fmul_rn(mean[c], scale));
  y[i] = __fadd_rn(__fmul_rn(x[i], scale), shift);
}

// ---- weight constraints (constraint.h) ------------------------------------------
__global__ void non_neg_kernel(float* w, std::int64_t n) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) w[i] = w[i] > 0.f ? w[i] : 0.f;
}

// one norm over all of w (axis all), or per row (axis cols: one block per row)
__global__ void norm_rows_kernel(float* w, std::int64_t len, Constraint con) {
  __shared__ double sh[kThreads];
  float* v = w + std::int64_t(blockIdx.x) * len;
  double ss = 0.0;
  for (std::int64_t k = threadIdx.x; k < len; k += kThreads) ss += double(v[k]) * double(v[k]);
  const float f = constraint_factor(con, sqrt(block_sum(ss, sh)));
  for (std::int64_t k = threadIdx.x; k < len; k += kThreads) v[k] = __fmul_rn(v[k], f);
}

// one norm per column (axis rows): a block per 32 columns
__global__ void norm_cols_kernel(float* w, std::int64_t rows, std::int64_t cols, Constraint con) {
  __shared__ double sh[kColRows][32];
  const std::int64_t c = std::int64_t(blockIdx.x) * 32 + threadIdx.x;
  double ss = 0.0;
  if (c < cols)
    for (std::int64_t r = threadIdx.y; r < rows; r += kColRows) ss += double(w[r * cols + c]) * double(w[r * cols + c]);
  const float f = constraint_factor(con, sqrt(lane_sum(ss, sh)));
  if (c < cols)
    for (std::int64_t r = threadIdx.y; r < rows; r += kColRows) w[r * cols + c] = __fmul_rn(w[r * cols + c], f);
}

unsigned col_blocks(std::int64_t cols) { return unsigned((cols + 31) / 32); }

}  // namespace

cudaError_t prelu_forward(float* y, const float* x, const float* alpha, std::int64_t rows, std::int64_t cols,
                          std::int64_t alpha_n, cudaStream_t stream) {
  const std::int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  prelu_forward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, x, alpha, n, cols, alpha_n == 1);
  return cudaGetLastError();
}

cudaError_t prelu_backward(float* dx, float* dalpha, const float* dy, const float* x, const float* alpha,
                           std::int64_t rows, std::int64_t cols, std::int64_t alpha_n, cudaStream_t stream) {
  const std::int64_t n = rows * cols;
  if (cols == 0) return cudaSuccess;
  // dalpha first: dx may alias dy (the trainer's in-place gradients)
  if (alpha_n == 1)
    prelu_dalpha_all_kernel<<<1, kThreads, 0, stream>>>(dalpha, dy, x, n);
  else
    prelu_dalpha_cols_kernel<<<col_blocks(cols), dim3(32, kColRows), 0, stream>>>(dalpha, dy, x, rows, cols);
  if (n > 0) prelu_dx_kernel<<<blocks_for(n), kThreads, 0, stream>>>(dx, dy, x, alpha, n, cols, alpha_n == 1);
  return cudaGetLastError();
}

cudaError_t layernorm_forward(float* y, float* xhat, float* invstd, const float* x, const float* gamma,
                              const float* beta, std::int64_t rows, std::int64_t cols, float eps,
                              cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  layernorm_forward_kernel<<<unsigned(rows), kThreads, 0, stream>>>(y, xhat, invstd, x, gamma, beta, cols, eps);
  return cudaGetLastError();
}

cudaError_t layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                               const float* invstd, const float* gamma, std::int64_t rows, std::int64_t cols,
                               cudaStream_t stream) {
  if (cols == 0) return cudaSuccess;
  // the parameter gradients read dy before dx (which may alias it) is written
  if (dgamma || dbeta)
    layernorm_param_grads_kernel<<<col_blocks(cols), dim3(32, kColRows), 0, stream>>>(dgamma, dbeta, dy, xhat, rows,
                                                                                      cols);
  if (dx && rows > 0) layernorm_dx_kernel<<<unsigned(rows), kThreads, 0, stream>>>(dx, dy, xhat, invstd, gamma, cols);
  return cudaGetLastError();
}

cudaError_t act_param_forward(float* y, const float* x, std::int64_t n, const ActParam& a, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  act_param_forward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, x, n, a);
  return cudaGetLastError();
}

cudaError_t act_param_backward(float* dx, const float* dy, const float* x, const float* y, std::int64_t n,
                               const ActParam& a, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  act_param_backward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(dx, dy, x, y, n, a);
  return cudaGetLastError();
}

cudaError_t gaussian_factor(float* m, std::int64_t rows, std::int64_t cols, std::uint64_t seed, std::uint64_t t,
                            float scale, bool add_one, cudaStream_t stream) {
  const std::int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  gaussian_factor_kernel<<<blocks_for((n + 1) / 2), kThreads, 0, stream>>>(m, n, seed, t, scale, add_one);
  return cudaGetLastError();
}

cudaError_t add(float* y, const float* a, const float* b, std::size_t n, cudaStream_t stream) {
  return detail::launch_map<2>(y, a, b, n, AddOp{}, stream);
}

cudaError_t copy_cols(float* dst, std::int64_t dst_cols, std::int64_t dst_off, const float* src, std::int64_t src_cols,
                      std::int64_t src_off, std::int64_t width, std::int64_t rows, cudaStream_t stream) {
  if (width == 0 || rows == 0) return cudaSuccess;
  return cudaMemcpy2DAsync(dst + dst_off, std::size_t(dst_cols) * sizeof(float), src + src_off,
                           std::size_t(src_cols) * sizeof(float), std::size_t(width) * sizeof(float),
                           std::size_t(rows), cudaMemcpyDeviceToDevice, stream);
}

cudaError_t add_cols(float* dst, std::int64_t dst_cols, std::int64_t dst_off, const float* src, std::int64_t src_cols,
                     std::int64_t src_off, std::int64_t width, std::int64_t rows, cudaStream_t stream) {
  const std::int64_t n = width * rows;
  if (n == 0) return cudaSuccess;
  add_cols_kernel<<<blocks_for(n), kThreads, 0, stream>>>(dst, dst_cols, dst_off, src, src_cols, src_off, width, n);
  return cudaGetLastError();
}

cudaError_t merge_binary(float* y, std::int64_t ldy, const float* a, std::int64_t lda, const float* b,
                         std::int64_t ldb, std::int64_t rows, std::int64_t cols, MergeOp op, cudaStream_t stream) {
  const std::int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  merge_binary_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, ldy, a, lda, b, ldb, cols, n, op);
  return cudaGetLastError();
}

cudaError_t merge_scale(float* y, std::int64_t ldy, const float* x, std::int64_t ldx, float s, std::int64_t rows,
                        std::int64_t cols, cudaStream_t stream) {
  const std::int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  merge_scale_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, ldy, x, ldx, s, cols, n);
  return cudaGetLastError();
}

cudaError_t batchnorm_infer(float* y, const float* x, const float* gamma, const float* beta, const float* mean,
                            const float* var, std::int64_t rows, std::int64_t cols, float eps, cudaStream_t stream) {
  const std::int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  batchnorm_infer_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, x, gamma, beta, mean, var, n, cols, eps);
  return cudaGetLastError();
}

cudaError_t constrain(float* w, std::int64_t rows, std::int64_t cols, const Constraint& c, cudaStream_t stream) {
  const std::int64_t n = rows * cols;
  if (n == 0 || c.kind == ConstraintKind::none) return cudaSuccess;
  if (c.kind == ConstraintKind::non_neg)
    non_neg_kernel<<<blocks_for(n), kThreads, 0, stream>>>(w, n);
  else if (c.axis == ConstraintAxis::all)
    norm_rows_kernel<<<1, kThreads, 0, stream>>>(w, n, c);
  else if (c.axis == ConstraintAxis::cols)  // one norm per row
    norm_rows_kernel<<<unsigned(rows), kThreads, 0, stream>>>(w, cols, c);
  else  // one norm per column
    norm_cols_kernel<<<col_blocks(cols), dim3(32, kColRows), 0, stream>>>(w, rows, cols, c);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fusednn
