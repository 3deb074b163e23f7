// MSE and cross-entropy values (deterministic two-pass reductions in double)
// and gradients, the twins of cpu/loss.cpp.
#include "activation.cuh"
#include "elementwise.cuh"
#include "fusednn/cuda.h"
#include "fusednn/loss_math.h"
#include "rows.cuh"

namespace fusednn {
namespace cuda {

namespace {

constexpr int kThreads = 256;
// The first pass always uses this many blocks (fewer for small n, as a
// function of n alone), so the reduction tree, and therefore the rounding,
// is the same on every run and every device.
constexpr int kMaxBlocks = 1024;
constexpr int kUnroll = 4;

// Sum of a double over the block, in a fixed order; the result is valid in thread 0.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;
}

// Elements [4g, 4g + 4) of p, zero past n; one 128-bit load when aligned.
// Both paths give the same four values, so alignment does not change the sum.
__device__ __forceinline__ float4 group(const float* p, std::size_t g, std::size_t n, bool vec) {
  const std::size_t i = 4 * g;
  if (vec && i + 4 <= n) return reinterpret_cast<const float4*>(p)[g];
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (i < n) v.x = p[i];
  if (i + 1 < n) v.y = p[i + 1];
  if (i + 2 < n) v.z = p[i + 2];
  if (i + 3 < n) v.w = p[i + 3];
  return v;
}

// (p - t)^2 of four elements, added to acc in a fixed order. The difference is
// rounded to float once (as the float32 kernels everywhere do) and squared in
// double.
__device__ __forceinline__ double add_sq(double acc, float4 p, float4 t) {
  const double d0 = __fsub_rn(p.x, t.x), d1 = __fsub_rn(p.y, t.y);
  const double d2 = __fsub_rn(p.z, t.z), d3 = __fsub_rn(p.w, t.w);
  acc = fma(d0, d0, acc);
  acc = fma(d1, d1, acc);
  acc = fma(d2, d2, acc);
  return fma(d3, d3, acc);
}

__global__ void __launch_bounds__(kThreads)
    mse_partials(const float* p, const float* t, std::size_t n, bool vec, double* partial) {
  const std::size_t groups = (n + 3) / 4;
  const std::size_t stride = std::size_t(gridDim.x) * kThreads;
  std::size_t g = std::size_t(blockIdx.x) * kThreads + threadIdx.x;
  double acc = 0.0;
  for (; g + (kUnroll - 1) * stride < groups; g += kUnroll * stride) {
    float4 vp[kUnroll], vt[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      vp[u] = group(p, g + u * stride, n, vec);
      vt[u] = group(t, g + u * stride, n, vec);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc = add_sq(acc, vp[u], vt[u]);
  }
  for (; g < groups; g += stride) acc = add_sq(acc, group(p, g, n, vec), group(t, g, n, vec));
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// The mean over n of the first pass's partial sums, added in a fixed order.
__global__ void __launch_bounds__(kThreads)
    mean_final(const double* partial, int nblocks, std::size_t n, float* out_f32, double* out_f64) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < nblocks; i += kThreads) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    const double r = n ? acc / double(n) : 0.0;
    *out_f64 = r;
    if (out_f32) *out_f32 = float(r);
  }
}

// Binary cross-entropy of sigmoid(z) against t, elementwise: the loss term in
// double (as cpu::xent), the gradient in float with the sigmoid of the other
// backends.
__global__ void __launch_bounds__(kThreads)
    xent_binary_partials(float* g, const float* z, const float* t, std::size_t n, float scale,
                         double* partial) {
  const std::size_t stride = std::size_t(gridDim.x) * kThreads;
  double acc = 0.0;
  for (std::size_t i = std::size_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    const float zi = z[i], ti = t[i];
    const double zd = zi;
    acc += (zd > 0.0 ? zd : 0.0) - zd * double(ti) + log1p(exp(-fabs(zd)));
    if (g) g[i] = __fmul_rn(scale, __fsub_rn(detail::sigmoid1(zi), ti));
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// The softmax cross-entropies, one row per group of TPR threads (rows.cuh):
// the row's max, logsumexp in double, then its loss and gradient. A group's
// first thread adds its rows' losses in row order; the block then sums the
// threads in a fixed tree, so the partial depends on the grid alone.
template <int TPR, bool SPARSE>
__global__ void __launch_bounds__(kThreads)
    xent_softmax_partials(float* g, const float* z, const float* t, std::size_t rows, std::size_t cols,
                          float scale, double* partial) {
  static_assert(detail::kRowThreads == kThreads, "block_sum assumes the row kernels' block size");
  __shared__ float smax[kThreads / 32];
  __shared__ double ssum[kThreads / 32];
  const int lane = detail::RowGroup<TPR>::lane();
  const std::size_t per_block = detail::RowGroup<TPR>::kPerBlock;
  double acc = 0.0;
  for (std::size_t r = blockIdx.x * per_block + detail::RowGroup<TPR>::group(); r < rows;
       r += std::size_t(gridDim.x) * per_block) {
    const float* zr = z + r * cols;
    float* gr = g ? g + r * cols : nullptr;
    float mx = -INFINITY;
    for (std::size_t c = lane; c < cols; c += TPR) mx = fmaxf(mx, zr[c]);
    mx = detail::group_reduce<TPR>(mx, detail::MaxOp{}, smax);
    double sum = 0.0;
    for (std::size_t c = lane; c < cols; c += TPR) sum += exp(double(__fsub_rn(zr[c], mx)));
    sum = detail::group_reduce<TPR>(sum, detail::SumOp{}, ssum);
    const double lse = double(mx) + log(sum);
    if (SPARSE) {
      // Range and integrality are checked on the float, before any conversion:
      // a NaN, negative, fractional or too large index never becomes an address.
      const float label = t[r];
      const bool ok = label >= 0.f && label < float(cols) && label == truncf(label) &&
                      std::size_t(label) < cols;
      const std::size_t k = ok ? std::size_t(label) : 0;
      if (lane == 0) acc += ok ? lse - double(zr[k]) : double(NAN);
      if (gr)
        for (std::size_t c = lane; c < cols; c += TPR)
          gr[c] = ok ? __fmul_rn(scale, __fsub_rn(float(exp(double(zr[c]) - lse)), c == k ? 1.f : 0.f)) : 0.f;
    } else {
      const float* tr = t + r * cols;
      double part = 0.0;
      for (std::size_t c = lane; c < cols; c += TPR) {
        const float zc = zr[c], tc = tr[c];
        part += double(tc) * (lse - double(zc));
        if (gr) gr[c] = __fmul_rn(scale, __fsub_rn(float(exp(double(zc) - lse)), tc));
      }
      part = detail::group_reduce<TPR>(part, detail::SumOp{}, ssum);
      if (lane == 0) acc += part;
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

template <int TPR, bool SPARSE>
void launch_xent_rows(float* g, const float* z, const float* t, std::size_t rows, std::size_t cols,
                      float scale, unsigned blocks, double* partial, cudaStream_t stream) {
  xent_softmax_partials<TPR, SPARSE><<<blocks, kThreads, 0, stream>>>(g, z, t, rows, cols, scale, partial);
}

// First-pass blocks for `units` of work, `per_block` to a block: a function of
// the shape alone (never of the device), at most kMaxBlocks.
unsigned partial_blocks(std::size_t units, std::size_t per_block) {
  const std::size_t b = (units + per_block - 1) / per_block;
  return unsigned(b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b));
}

struct MseGrad {
  float scale;
  __device__ float operator()(float p, float t) const { return __fmul_rn(scale, __fsub_rn(p, t)); }
};

// flag[0] = 1.0 when every target is 0 or 1 (Keras' hinge label conversion),
// else 0.0: one block, so no initialisation or atomics are needed.
__global__ void __launch_bounds__(kThreads) zero_one_flag(const float* t, std::size_t n, double* flag) {
  int ok = 1;
  for (std::size_t i = threadIdx.x; i < n; i += kThreads) ok &= (t[i] == 0.f || t[i] == 1.f) ? 1 : 0;
  ok = __syncthreads_and(ok);
  if (threadIdx.x == 0) *flag = ok ? 1.0 : 0.0;
}

// Elementwise LossFn terms (loss_math.h) summed in double per block; the
// gradient written as float(scale * dl) like cpu::loss_grad.
__global__ void __launch_bounds__(kThreads)
    loss_elem_partials(float* g, const float* p, const float* t, std::size_t n, LossFn fn, LossParams param,
                       const double* flag, double scale, double* partial) {
  const std::size_t stride = std::size_t(gridDim.x) * kThreads;
  const bool hinge01 = flag && *flag != 0.0;
  double acc = 0.0, dl;
  for (std::size_t i = std::size_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    acc += loss_math::elem(fn, p[i], t[i], param, hinge01, &dl);
    if (g) g[i] = float(scale * dl);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// The row LossFn kinds: one thread per row (the rows of a batch are short).
__global__ void __launch_bounds__(kThreads)
    loss_row_partials(float* g, const float* p, const float* t, std::size_t rows, std::size_t cols, LossFn fn,
                      LossParams param, float scale, double* partial) {
  const std::size_t stride = std::size_t(gridDim.x) * kThreads;
  double acc = 0.0;
  for (std::size_t r = std::size_t(blockIdx.x) * kThreads + threadIdx.x; r < rows; r += stride)
    acc += loss_math::row(fn, p + r * cols, t + r * cols, long(cols), scale, g ? g + r * cols : nullptr, param);
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

}  // namespace

std::size_t loss_grad_workspace_len() { return kMaxBlocks + 2; }

cudaError_t loss_grad(float* g, const float* p, const float* t, std::size_t rows, std::size_t cols, LossFn fn,
                      LossParams param, float* loss_out, double* workspace, cudaStream_t stream) {
  const std::size_t n = rows * cols;
  std::size_t count = n;
  unsigned blocks = 1;
  double* result = workspace + kMaxBlocks + 1;  // the last element, as for mse and xent
  if (n == 0) {
    count = 0;
    mean_final<<<1, kThreads, 0, stream>>>(workspace, 0, 0, loss_out, result);
    return cudaGetLastError();
  }
  if (loss_fn_is_rowwise(fn)) {
    count = rows;
    blocks = partial_blocks(rows, kThreads);
    loss_row_partials<<<blocks, kThreads, 0, stream>>>(g, p, t, rows, cols, fn, param,
                                                       float(1.0 / double(rows)), workspace);
  } else {
    double* flag = nullptr;
    if (fn == LossFn::hinge || fn == LossFn::squared_hinge) {
      flag = workspace + kMaxBlocks;
      zero_one_flag<<<1, kThreads, 0, stream>>>(t, n, flag);
      cudaError_t e = cudaGetLastError();
      if (e != cudaSuccess) return e;
    }
    blocks = partial_blocks(n, kThreads);
    loss_elem_partials<<<blocks, kThreads, 0, stream>>>(g, p, t, n, fn, param, flag, 1.0 / double(n), workspace);
  }
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  mean_final<<<1, kThreads, 0, stream>>>(workspace, int(blocks), count, loss_out, result);
  return cudaGetLastError();
}

std::size_t mse_workspace_len() { return kMaxBlocks + 1; }

cudaError_t mse(const float* p, const float* t, std::size_t n, float* out, double* workspace,
                cudaStream_t stream) {
  const std::size_t groups = (n + 3) / 4;
  std::size_t blocks = (groups + kThreads - 1) / kThreads;
  blocks = blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks);
  const bool vec = detail::aligned16(p) && detail::aligned16(t);
  mse_partials<<<unsigned(blocks), kThreads, 0, stream>>>(p, t, n, vec, workspace);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  mean_final<<<1, kThreads, 0, stream>>>(workspace, int(blocks), n, out, workspace + kMaxBlocks);
  return cudaGetLastError();
}

std::size_t xent_workspace_len() { return kMaxBlocks + 1; }

cudaError_t xent(float* g, const float* z, const float* t, std::size_t rows, std::size_t cols,
                 XentKind kind, float scale, float* loss_out, double* workspace, cudaStream_t stream) {
  std::size_t count = rows;  // what the loss is the mean over
  unsigned blocks = 1;
  if (kind == XentKind::sigmoid_binary) {
    count = rows * cols;
    blocks = partial_blocks(count, kThreads);
    xent_binary_partials<<<blocks, kThreads, 0, stream>>>(g, z, t, count, scale, workspace);
  } else {
    const bool sparse = kind == XentKind::softmax_sparse;
    const bool warp_rows = cols <= detail::kWarpRowMaxCols;
    blocks = partial_blocks(rows, warp_rows ? detail::RowGroup<32>::kPerBlock : 1);
    if (warp_rows && sparse) launch_xent_rows<32, true>(g, z, t, rows, cols, scale, blocks, workspace, stream);
    else if (warp_rows) launch_xent_rows<32, false>(g, z, t, rows, cols, scale, blocks, workspace, stream);
    else if (sparse) launch_xent_rows<kThreads, true>(g, z, t, rows, cols, scale, blocks, workspace, stream);
    else launch_xent_rows<kThreads, false>(g, z, t, rows, cols, scale, blocks, workspace, stream);
  }
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  mean_final<<<1, kThreads, 0, stream>>>(workspace, int(blocks), count, loss_out, workspace + kMaxBlocks);
  return cudaGetLastError();
}

cudaError_t mse_grad(float* g, const float* p, const float* t, std::size_t n, float scale,
                     cudaStream_t stream) {
  return detail::launch_map<2>(g, p, t, n, MseGrad{scale}, stream);
}

}  // namespace cuda
}  // namespace fusednn
