#include <algorithm>
#include <vector>

#include "fusednn/cpu.h"
#include "threads.h"

namespace fusednn {
namespace cpu {

double mse(const float* p, const float* t, std::size_t n) {
  if (n == 0) return 0.0;
  // Fixed-size blocks summed in a fixed order: the result does not depend on
  // the number of threads. Eight independent double accumulators per block
  // keep the loop from being latency-bound on the additions.
  constexpr std::size_t kBlock = 4096;
  const std::size_t nblocks = (n + kBlock - 1) / kBlock;
  double total = 0.0;
  auto block_sum = [&](std::size_t blk) {
    const std::size_t b = blk * kBlock, e = std::min(n, b + kBlock);
    double acc[8] = {};
    std::size_t i = b;
    for (; i + 8 <= e; i += 8)
      for (int j = 0; j < 8; ++j) {
        const double d = double(p[i + j]) - double(t[i + j]);
        acc[j] += d * d;
      }
    for (; i < e; ++i) {
      const double d = double(p[i]) - double(t[i]);
      acc[0] += d * d;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  };
  if (nblocks == 1) return block_sum(0) / double(n);
  std::vector<double> partial(nblocks);
  const int nt = n >= kParallelMinElems ? num_threads() : 1;
  parallel_for(nt, [&](int t) {
    for (std::size_t blk = nblocks * t / nt; blk < nblocks * (t + 1) / nt; ++blk) partial[blk] = block_sum(blk);
  });
  for (double s : partial) total += s;
  return total / double(n);
}

void mse_grad(float* g, const float* p, const float* t, std::size_t n, float scale) {
  parallel_chunks(n, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) g[i] = scale * (p[i] - t[i]);
  });
}

}  // namespace cpu
}  // namespace fusednn
