// The Keras losses beyond MSE and the cross-entropies (LossFn): value and
// gradient in one pass, the value reduced in double over fixed blocks summed
// in a fixed order, so the result does not depend on the thread count. The
// formulas live in fusednn/loss_math.h, shared with the CUDA kernel.
#include <algorithm>
#include <vector>

#include "fusednn/cpu.h"
#include "fusednn/loss_math.h"
#include "threads.h"

namespace fusednn {
namespace cpu {

namespace {

bool all_zero_one(const float* t, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (t[i] != 0.f && t[i] != 1.f) return false;
  return true;
}

// Sum of block_sum(b) over nblocks blocks: in parallel, added in block order.
template <class F>
double blocked_sum(std::size_t nblocks, std::size_t work, F&& block_sum) {
  if (nblocks == 0) return 0.0;
  if (nblocks == 1) return block_sum(0);
  std::vector<double> partial(nblocks);
  const int nt = work >= kParallelMinElems ? num_threads() : 1;
  parallel_for(nt, [&](int th) {
    for (std::size_t b = nblocks * th / nt; b < nblocks * (th + 1) / nt; ++b) partial[b] = block_sum(b);
  });
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace

double loss_grad(float* g, const float* p, const float* t, std::size_t rows, std::size_t cols, LossFn fn,
                 LossParams param) {
  const std::size_t n = rows * cols;
  if (n == 0) return 0.0;
  if (loss_fn_is_rowwise(fn)) {
    const float scale = float(1.0 / double(rows));
    constexpr std::size_t kRowsPerBlock = 256;
    const double total = blocked_sum((rows + kRowsPerBlock - 1) / kRowsPerBlock, n, [&](std::size_t b) {
      double acc = 0.0;
      for (std::size_t r = b * kRowsPerBlock; r < std::min(rows, (b + 1) * kRowsPerBlock); ++r)
        acc += loss_math::row(fn, p + r * cols, t + r * cols, long(cols), scale, g ? g + r * cols : nullptr,
                              param);
      return acc;
    });
    return total / double(rows);
  }
  const bool hinge01 = (fn == LossFn::hinge || fn == LossFn::squared_hinge) && all_zero_one(t, n);
  const double scale = 1.0 / double(n);
  constexpr std::size_t kBlock = 4096;
  const double total = blocked_sum((n + kBlock - 1) / kBlock, n, [&](std::size_t b) {
    double acc = 0.0, dl;
    const std::size_t e = std::min(n, (b + 1) * kBlock);
    for (std::size_t i = b * kBlock; i < e; ++i) {
      acc += loss_math::elem(fn, p[i], t[i], param, hinge01, &dl);
      if (g) g[i] = float(scale * dl);
    }
    return acc;
  });
  return total / double(n);
}

}  // namespace cpu
}  // namespace fusednn
