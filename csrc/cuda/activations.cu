// Elementwise activations and their gradients, and the row softmax and its
// gradient (the twins of cpu/activations.cpp).
#include <type_traits>
#include <algorithm>

#include "activation.cuh"
#include "elementwise.cuh"
#include "fusednn/cuda.h"
#include "rows.cuh"

namespace fusednn {
namespace cuda {

namespace {

using detail::kMapThreads;

template <Act A>
struct Forward {
  __device__ float operator()(float x, float) const { return detail::act_fwd<A>(x); }
};

template <Act A>
struct Backward {
  __device__ float operator()(float dy, float y) const { return detail::act_bwd<A>(dy, y); }
};

template <template <Act> class Op, int NIN>
cudaError_t dispatch(float* out, const float* a, const float* b, std::size_t n, Act act,
                     cudaStream_t stream) {
  switch (act) {
    case Act::relu: return detail::launch_map<NIN>(out, a, b, n, Op<Act::relu>{}, stream);
    case Act::sigmoid: return detail::launch_map<NIN>(out, a, b, n, Op<Act::sigmoid>{}, stream);
    case Act::tanh: return detail::launch_map<NIN>(out, a, b, n, Op<Act::tanh>{}, stream);
#define FUSEDNN_ACT_CASE(name) \
  case Act::name: return detail::launch_map<NIN>(out, a, b, n, Op<Act::name>{}, stream);
      FUSEDNN_ACT_CASE(elu) FUSEDNN_ACT_CASE(selu) FUSEDNN_ACT_CASE(leaky_relu) FUSEDNN_ACT_CASE(gelu)
      FUSEDNN_ACT_CASE(gelu_tanh) FUSEDNN_ACT_CASE(swish) FUSEDNN_ACT_CASE(softplus) FUSEDNN_ACT_CASE(softsign)
      FUSEDNN_ACT_CASE(hard_sigmoid) FUSEDNN_ACT_CASE(hard_swish) FUSEDNN_ACT_CASE(relu6) FUSEDNN_ACT_CASE(mish)
      FUSEDNN_ACT_CASE(exponential)
#undef FUSEDNN_ACT_CASE
    default: return detail::launch_map<NIN>(out, a, b, n, Op<Act::linear>{}, stream);
  }
}

// Rows on grid.y (grid-stride), columns on x: the bias index is the column,
// with no division per element. VEC moves float4s along a row; it needs
// cols % 4 == 0 and every pointer 16-byte aligned.
template <Act A, bool VEC>
__global__ void __launch_bounds__(kMapThreads)
    bias_act_kernel(float* y, const float* x, const float* b, std::size_t rows, std::size_t cols) {
  const std::size_t units = VEC ? cols / 4 : cols;
  const std::size_t cstride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t r = blockIdx.y; r < rows; r += gridDim.y) {
    for (std::size_t c = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; c < units; c += cstride) {
      const std::size_t i = r * units + c;
      if (VEC) {
        const float4 v = reinterpret_cast<const float4*>(x)[i];
        const float4 bb = reinterpret_cast<const float4*>(b)[c];
        reinterpret_cast<float4*>(y)[i] =
            make_float4(detail::act_fwd<A>(v.x + bb.x), detail::act_fwd<A>(v.y + bb.y),
                        detail::act_fwd<A>(v.z + bb.z), detail::act_fwd<A>(v.w + bb.w));
      } else {
        y[i] = detail::act_fwd<A>(x[i] + b[c]);
      }
    }
  }
}

template <Act A>
cudaError_t launch_bias_act(float* y, const float* x, const float* b, std::size_t rows,
                            std::size_t cols, cudaStream_t stream) {
  const bool vec = cols % 4 == 0 && detail::aligned16(y) && detail::aligned16(x) && detail::aligned16(b);
  const std::size_t units = vec ? cols / 4 : cols;
  const std::size_t gx = (units + kMapThreads - 1) / kMapThreads;
  const std::size_t blocks = std::size_t(sm_count()) * detail::kMapBlocksPerSm;
  dim3 grid(unsigned(gx < blocks ? gx : blocks), 1);
  const std::size_t gy = (blocks + grid.x - 1) / grid.x;
  grid.y = unsigned(std::min<std::size_t>(std::min<std::size_t>(gy, rows), 65535));
  if (vec)
    bias_act_kernel<A, true><<<grid, kMapThreads, 0, stream>>>(y, x, b, rows, cols);
  else
    bias_act_kernel<A, false><<<grid, kMapThreads, 0, stream>>>(y, x, b, rows, cols);
  return cudaGetLastError();
}

using detail::kRowThreads;
using detail::RowGroup;

// Three passes over the row (max, sum of exp, scaled exp), recomputing exp
// rather than keeping the row: a row may be any length and the re-reads hit
// L1. The row's values are y = e * float(1 / sum), as cpu::softmax computes them.
template <int TPR>
__global__ void __launch_bounds__(kRowThreads)
    softmax_kernel(float* y, const float* x, std::size_t rows, std::size_t cols) {
  __shared__ float smax[kRowThreads / 32];
  __shared__ double ssum[kRowThreads / 32];
  const int lane = RowGroup<TPR>::lane();
  const std::size_t per_block = RowGroup<TPR>::kPerBlock;
  for (std::size_t r = blockIdx.x * per_block + RowGroup<TPR>::group(); r < rows;
       r += std::size_t(gridDim.x) * per_block) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float mx = -INFINITY;
    for (std::size_t c = lane; c < cols; c += TPR) mx = fmaxf(mx, xr[c]);
    mx = detail::group_reduce<TPR>(mx, detail::MaxOp{}, smax);
    double sum = 0.0;
    for (std::size_t c = lane; c < cols; c += TPR) sum += double(expf(__fsub_rn(xr[c], mx)));
    sum = detail::group_reduce<TPR>(sum, detail::SumOp{}, ssum);
    const float inv = float(1.0 / sum);
    for (std::size_t c = lane; c < cols; c += TPR) yr[c] = __fmul_rn(expf(__fsub_rn(xr[c], mx)), inv);
  }
}

template <int TPR>
__global__ void __launch_bounds__(kRowThreads)
    softmax_backward_kernel(float* dx, const float* dy, const float* y, std::size_t rows,
                            std::size_t cols) {
  __shared__ double ssum[kRowThreads / 32];
  const int lane = RowGroup<TPR>::lane();
  const std::size_t per_block = RowGroup<TPR>::kPerBlock;
  for (std::size_t r = blockIdx.x * per_block + RowGroup<TPR>::group(); r < rows;
       r += std::size_t(gridDim.x) * per_block) {
    const std::size_t o = r * cols;
    double dot = 0.0;  // float products are exact in double: fma adds each one rounded once
    for (std::size_t c = lane; c < cols; c += TPR) dot = fma(double(dy[o + c]), double(y[o + c]), dot);
    const float d = float(detail::group_reduce<TPR>(dot, detail::SumOp{}, ssum));
    for (std::size_t c = lane; c < cols; c += TPR) dx[o + c] = __fmul_rn(y[o + c], __fsub_rn(dy[o + c], d));
  }
}

// y = x - max - log(sum e^(x - max)), the sum in double (cpu::log_softmax).
template <int TPR>
__global__ void __launch_bounds__(kRowThreads)
    log_softmax_kernel(float* y, const float* x, std::size_t rows, std::size_t cols) {
  __shared__ float smax[kRowThreads / 32];
  __shared__ double ssum[kRowThreads / 32];
  const int lane = RowGroup<TPR>::lane();
  const std::size_t per_block = RowGroup<TPR>::kPerBlock;
  for (std::size_t r = blockIdx.x * per_block + RowGroup<TPR>::group(); r < rows;
       r += std::size_t(gridDim.x) * per_block) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float mx = -INFINITY;
    for (std::size_t c = lane; c < cols; c += TPR) mx = fmaxf(mx, xr[c]);
    mx = detail::group_reduce<TPR>(mx, detail::MaxOp{}, smax);
    double sum = 0.0;
    for (std::size_t c = lane; c < cols; c += TPR) sum += exp(double(xr[c]) - double(mx));
    sum = detail::group_reduce<TPR>(sum, detail::SumOp{}, ssum);
    const double shift = double(mx) + log(sum);
    for (std::size_t c = lane; c < cols; c += TPR) yr[c] = float(double(xr[c]) - shift);
  }
}

// dx = dy - e^y * sum(dy) per row (the sum in double).
template <int TPR>
__global__ void __launch_bounds__(kRowThreads)
    log_softmax_backward_kernel(float* dx, const float* dy, const float* y, std::size_t rows, std::size_t cols) {
  __shared__ double ssum[kRowThreads / 32];
  const int lane = RowGroup<TPR>::lane();
  const std::size_t per_block = RowGroup<TPR>::kPerBlock;
  for (std::size_t r = blockIdx.x * per_block + RowGroup<TPR>::group(); r < rows;
       r += std::size_t(gridDim.x) * per_block) {
    const std::size_t o = r * cols;
    double sum = 0.0;
    for (std::size_t c = lane; c < cols; c += TPR) sum += double(dy[o + c]);
    sum = detail::group_reduce<TPR>(sum, detail::SumOp{}, ssum);
    for (std::size_t c = lane; c < cols; c += TPR) dx[o + c] = float(double(dy[o + c]) - exp(double(y[o + c])) * sum);
  }
}

// Enough blocks for every row group, at most a few waves of resident blocks
// (the kernels stride over the rest).
unsigned row_blocks(std::size_t rows, int per_block) {
  const std::size_t want = (rows + per_block - 1) / per_block;
  const std::size_t cap = std::size_t(sm_count()) * 8;
  return unsigned(std::max<std::size_t>(1, std::min(want, cap)));
}

// Rows of at most kWarpRowMaxCols take one warp each (several rows per block); wider
// rows take a whole block. `launch(width, blocks)` launches the kernel of that width.
template <class Launch>
cudaError_t by_row_width(std::size_t rows, std::size_t cols, Launch launch) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (cols <= detail::kWarpRowMaxCols)
    launch(std::integral_constant<int, 32>{}, row_blocks(rows, RowGroup<32>::kPerBlock));
  else
    launch(std::integral_constant<int, kRowThreads>{}, row_blocks(rows, 1));
  return cudaGetLastError();
}

}  // namespace

cudaError_t softmax(float* y, const float* x, std::size_t rows, std::size_t cols, cudaStream_t stream) {
  return by_row_width(rows, cols, [&](auto width, unsigned blocks) {
    softmax_kernel<decltype(width)::value><<<blocks, kRowThreads, 0, stream>>>(y, x, rows, cols);
  });
}

cudaError_t softmax_backward(float* dx, const float* dy, const float* y, std::size_t rows,
                             std::size_t cols, cudaStream_t stream) {
  return by_row_width(rows, cols, [&](auto width, unsigned blocks) {
    softmax_backward_kernel<decltype(width)::value><<<blocks, kRowThreads, 0, stream>>>(dx, dy, y, rows, cols);
  });
}

cudaError_t log_softmax(float* y, const float* x, std::size_t rows, std::size_t cols, cudaStream_t stream) {
  return by_row_width(rows, cols, [&](auto width, unsigned blocks) {
    log_softmax_kernel<decltype(width)::value><<<blocks, kRowThreads, 0, stream>>>(y, x, rows, cols);
  });
}

cudaError_t log_softmax_backward(float* dx, const float* dy, const float* y, std::size_t rows,
                                 std::size_t cols, cudaStream_t stream) {
  return by_row_width(rows, cols, [&](auto width, unsigned blocks) {
    log_softmax_backward_kernel<decltype(width)::value><<<blocks, kRowThreads, 0, stream>>>(dx, dy, y, rows, cols);
  });
}

cudaError_t act_forward(float* y, const float* x, std::size_t n, Act act, cudaStream_t stream) {
  if (act == Act::linear && y == x) return cudaSuccess;
  return dispatch<Forward, 1>(y, x, nullptr, n, act, stream);
}

cudaError_t act_backward(float* dx, const float* dy, const float* y, std::size_t n, Act act,
                         cudaStream_t stream) {
  if (act == Act::linear && dx == dy) return cudaSuccess;
  return dispatch<Backward, 2>(dx, dy, y, n, act, stream);
}

cudaError_t bias_act(float* y, const float* x, const float* b, std::size_t rows, std::size_t cols,
                     Act act, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (!act_in_gemm_epilogue(act)) {  // the bias pass, then the activation's elementwise kernel
    cudaError_t e = launch_bias_act<Act::linear>(y, x, b, rows, cols, stream);
    if (e != cudaSuccess) return e;
    return act_forward(y, y, rows * cols, act, stream);
  }
  switch (act) {
    case Act::relu: return launch_bias_act<Act::relu>(y, x, b, rows, cols, stream);
    case Act::sigmoid: return launch_bias_act<Act::sigmoid>(y, x, b, rows, cols, stream);
    case Act::tanh: return launch_bias_act<Act::tanh>(y, x, b, rows, cols, stream);
    default: return launch_bias_act<Act::linear>(y, x, b, rows, cols, stream);
  }
}

}  // namespace cuda
}  // namespace fusednn
