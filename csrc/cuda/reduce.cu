// Column sums (the bias gradient), the twin of cpu/reduce.cpp.
#include "fusednn/cuda.h"

namespace fusednn {
namespace cuda {

namespace {

// A block owns 32 adjacent columns (a warp reads 128 contiguous bytes of a
// row) and splits the rows over kRowLanes lanes; the lanes' double partial
// sums are then added in a fixed tree, so the result never depends on timing.
constexpr int kCols = 32;
constexpr int kRowLanes = 32;

__global__ void __launch_bounds__(kCols * kRowLanes)
    sum_rows_kernel(float* out, const float* x, std::size_t rows, std::size_t cols) {
  __shared__ double part[kRowLanes][kCols + 1];
  const std::size_t c = std::size_t(blockIdx.x) * kCols + threadIdx.x;
  double acc = 0.0;
  if (c < cols)
    for (std::size_t r = threadIdx.y; r < rows; r += kRowLanes) acc += double(x[r * cols + c]);
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
#pragma unroll
  for (int s = kRowLanes / 2; s > 0; s /= 2) {
    if (threadIdx.y < s) part[threadIdx.y][threadIdx.x] += part[threadIdx.y + s][threadIdx.x];
    __syncthreads();
  }
  if (threadIdx.y == 0 && c < cols) out[c] = float(part[0][threadIdx.x]);
}

}  // namespace

cudaError_t sum_rows(float* out, const float* x, std::size_t rows, std::size_t cols,
                     cudaStream_t stream) {
  if (cols == 0) return cudaSuccess;
  const std::size_t blocks = (cols + kCols - 1) / kCols;
  if (blocks > 0x7fffffffu) return cudaErrorInvalidConfiguration;
  sum_rows_kernel<<<unsigned(blocks), dim3(kCols, kRowLanes), 0, stream>>>(out, x, rows, cols);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fusednn
