// Split an elementwise loop over [0, n) into one contiguous chunk per thread
// when n is large enough to pay for the fork; chunk edges are multiples of 64
// floats so every chunk starts on a cache line (relative to the base pointer).
#pragma once
#include <algorithm>
#include <cstddef>

#include "fusednn/cpu.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fusednn {
namespace cpu {

constexpr std::size_t kParallelMinElems = std::size_t(1) << 16;

template <class F>
void parallel_chunks(std::size_t n, F&& fn) {
  int nt = num_threads();
  if (n < kParallelMinElems || nt <= 1) {
    fn(std::size_t(0), n);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    const std::size_t per = ((n + nt - 1) / nt + 63) / 64 * 64;
    const std::size_t b = std::min(n, per * t), e = std::min(n, per * (t + 1));
    if (e > b) fn(b, e);
  }
#else
  fn(std::size_t(0), n);
#endif
}

}  // namespace cpu
}  // namespace fusednn
