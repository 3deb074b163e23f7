// Internal: run chunks of work on the CPU thread pool (threads.cpp).
#pragma once
#include <algorithm>
#include <cstddef>

#include "fusednn/cpu.h"

namespace fusednn {
namespace cpu {

using ChunkFn = void (*)(void* ctx, int chunk);

// Run fn(ctx, c) for every c in [0, nchunks), on up to num_threads() threads;
// the calling thread takes part, and returns when every chunk is done.
void parallel_run(int nchunks, ChunkFn fn, void* ctx);

template <class F>
void parallel_for(int nchunks, F&& f) {
  parallel_run(nchunks, [](void* ctx, int c) { (*static_cast<F*>(ctx))(c); }, static_cast<void*>(&f));
}

// Elementwise loops over [0, n): one contiguous, 64-float-aligned range per
// thread once n is large enough to pay for waking the pool.
constexpr std::size_t kParallelMinElems = std::size_t(1) << 16;

template <class F>
void parallel_chunks(std::size_t n, F&& fn) {
  const int nt = num_threads();
  if (n < kParallelMinElems || nt <= 1) {
    fn(std::size_t(0), n);
    return;
  }
  const std::size_t per = ((n + nt - 1) / nt + 63) / 64 * 64;
  parallel_for(nt, [&](int t) {
    const std::size_t b = std::min(n, per * t), e = std::min(n, per * (t + 1));
    if (e > b) fn(b, e);
  });
}

}  // namespace cpu
}  // namespace fusednn
