// Row-wise kernels (softmax, its backward, the softmax cross-entropies) give
// each row of a matrix to a group of TPR threads: a warp (TPR = 32) while a row
// is at most kWarpRowMaxCols long, else a whole block (TPR = kRowThreads), so a
// batch of 10-class rows keeps every lane busy and a 10 000-class row is not
// left to 32 threads. Thread `lane` of a group owns the elements lane,
// lane + TPR, ... of its row in every pass, so a kernel whose output aliases
// its input (softmax in place) never reads an element another thread wrote.
#pragma once
#include <cstddef>

namespace fusednn {
namespace cuda {
namespace detail {

constexpr int kRowThreads = 256;
constexpr std::size_t kWarpRowMaxCols = 1024;

template <int TPR>
struct RowGroup {
  static_assert(TPR == 32 || TPR == kRowThreads, "a row group is a warp or a block");
  static constexpr int kPerBlock = kRowThreads / TPR;
  __device__ static int lane() { return TPR == 32 ? int(threadIdx.x % 32) : int(threadIdx.x); }
  __device__ static int group() { return TPR == 32 ? int(threadIdx.x / 32) : 0; }
};

struct MaxOp {
  // fmaxf ignores a NaN operand; a NaN logit still makes its row NaN through exp.
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ double operator()(double a, double b) const { return a + b; }
};

// v reduced with `op` over the TPR threads of a row group, in a fixed order,
// returned to every thread of the group (the butterfly combines the same pair
// of operands in every lane, and both ops are commutative, so all lanes hold
// the same bits). With TPR == kRowThreads every thread of the block must call
// it (it synchronises the block); `scratch` is shared memory of
// kRowThreads / 32 entries, free again when it returns.
template <int TPR, class T, class Op>
__device__ __forceinline__ T group_reduce(T v, Op op, T* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (TPR == 32) return v;
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  T r = scratch[0];
#pragma unroll
  for (int w = 1; w < TPR / 32; ++w) r = op(r, scratch[w]);
  __syncthreads();  // every thread has read scratch before the next reduction writes it
  return r;
}

}  // namespace detail
}  // namespace cuda
}  // namespace fusednn
