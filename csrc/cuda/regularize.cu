// Weight penalties (Keras' L1/L2 regularizers), the twin of cpu/regularize.cpp.
#include "fusednn/cuda.h"

namespace fusednn {
namespace cuda {

namespace {

constexpr int kRegThreads = 256;

// One block: the weights of a dense layer are small, and a single block sums
// the penalty in a fixed order, so the loss is the same bits on every run.
__global__ void __launch_bounds__(kRegThreads)
    regularize_kernel(float* g, const float* w, std::size_t n, float l1, float l2, float* loss) {
  __shared__ double part[kRegThreads];
  const float two_l2 = 2.0f * l2;
  double acc = 0.0;
  for (std::size_t i = threadIdx.x; i < n; i += kRegThreads) {
    const float x = w[i];
    const float s = x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
    g[i] += l1 * s + two_l2 * x;
    acc += double(l1) * fabs(double(x)) + double(l2) * double(x) * double(x);
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kRegThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0 && loss) *loss = float(double(*loss) + part[0]);
}

}  // namespace

cudaError_t regularize(float* g, const float* w, std::size_t n, float l1, float l2, float* loss,
                       cudaStream_t stream) {
  if (n == 0 && !loss) return cudaSuccess;
  regularize_kernel<<<1, kRegThreads, 0, stream>>>(g, w, n, l1, l2, loss);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fusednn
