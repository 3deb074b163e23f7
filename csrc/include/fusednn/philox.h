// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11): a counter-based generator, written once for the CPU kernels and the
// CUDA kernels (FUSEDNN_PHILOX_HD marks it __host__ __device__ under nvcc), and
// mirrored bit for bit by the vectorised NumPy version in
// fusednn/layers/philox.py. Random numbers are a pure function of
// (key, counter), so every device draws the same dropout mask for the same
// seed, step and element, with no generator state to carry between kernels.
//
// Convention for element e of the draw at step t of a layer seeded with seed:
//   key     = (lo32(seed), hi32(seed))
//   counter = (lo32(e >> 2), hi32(e >> 2), lo32(t), hi32(t))
//   u32     = output word (e & 3) of philox4x32_10(counter, key)
//   uniform = (u32 >> 8) * 2^-24   in [0, 1), exact in float32
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FUSEDNN_PHILOX_HD __host__ __device__ __forceinline__
#else
#define FUSEDNN_PHILOX_HD inline
#endif

namespace fusednn {

struct Philox4 {
  std::uint32_t v[4];
};

FUSEDNN_PHILOX_HD void philox_mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t p = std::uint64_t(a) * std::uint64_t(b);
  hi = std::uint32_t(p >> 32);
  lo = std::uint32_t(p);
}

FUSEDNN_PHILOX_HD Philox4 philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                                 std::uint32_t k0, std::uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    std::uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    const std::uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The 32-bit word for element e at step t (the convention above).
FUSEDNN_PHILOX_HD std::uint32_t philox_word(std::uint64_t seed, std::uint64_t t, std::uint64_t e) {
  const std::uint64_t blk = e >> 2;
  const Philox4 r = philox4x32_10(std::uint32_t(blk), std::uint32_t(blk >> 32), std::uint32_t(t),
                                  std::uint32_t(t >> 32), std::uint32_t(seed), std::uint32_t(seed >> 32));
  return r.v[e & 3];
}

FUSEDNN_PHILOX_HD float philox_uniform(std::uint64_t seed, std::uint64_t t, std::uint64_t e) {
  return float(philox_word(seed, t, e) >> 8) * (1.0f / 16777216.0f);
}

// Index of element (r, c) of a rows×cols draw in the noise array when the
// noise is broadcast over rows (row_b) and/or columns (col_b), as Keras'
// noise_shape with a 1 in that axis.
FUSEDNN_PHILOX_HD std::uint64_t noise_index(std::int64_t r, std::int64_t c, std::int64_t cols, bool row_b, bool col_b) {
  const std::int64_t nc = col_b ? 1 : cols;
  return std::uint64_t((row_b ? 0 : r) * nc + (col_b ? 0 : c));
}

}  // namespace fusednn
