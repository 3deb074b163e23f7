// Dropout's Philox4x32-10 draw eight counters at a time with AVX2 (compiled with
// -mavx2; called only where the CPU has it). It gives exactly the words of
// fusednn/philox.h (the tests hold the mask to the NumPy twin bit for bit).
#include <immintrin.h>

#include <cstdint>

#include "fusednn/cpu_layers.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

namespace {

// (hi, lo) of the 32×32-bit products of each lane of c with m.
inline void mulhilo8(__m256i m, __m256i c, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(c, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

}  // namespace

// m[e] for e in [0, 32 * groups): the mask of 8 * groups Philox blocks starting at block 0.
void dropout_mask_blocks(float* m, std::uint64_t groups, float rate, std::uint64_t seed, std::uint64_t t) {
  const float scale = 1.0f / (1.0f - rate);
  const __m256i M0 = _mm256_set1_epi32(int(0xD2511F53u)), M1 = _mm256_set1_epi32(int(0xCD9E8D57u));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  alignas(32) std::uint32_t w[4][8];
  for (std::uint64_t g = 0; g < groups; ++g) {
    const std::uint64_t b0 = g * 8;
    __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(int(std::uint32_t(b0))), lane);
    // the high word of the block number: b0 is a multiple of 8, so the 8 blocks share it
    __m256i c1 = _mm256_set1_epi32(int(std::uint32_t(b0 >> 32)));
    __m256i c2 = _mm256_set1_epi32(int(std::uint32_t(t))), c3 = _mm256_set1_epi32(int(std::uint32_t(t >> 32)));
    std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      if (r > 0) {
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
      }
      __m256i hi0, lo0, hi1, lo1;
      mulhilo8(M0, c0, hi0, lo0);
      mulhilo8(M1, c2, hi1, lo1);
      const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(int(k0)));
      const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(int(k1)));
      c0 = n0;
      c1 = lo1;
      c2 = n2;
      c3 = lo0;
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(w[0]), c0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(w[1]), c1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(w[2]), c2);
    _mm256_store_si256(reinterpret_cast<__m256i*>(w[3]), c3);
    float* out = m + g * 32;
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 4; ++k) {
        const float u = float(w[k][j] >> 8) * (1.0f / 16777216.0f);
        out[4 * j + k] = u >= rate ? scale : 0.0f;
      }
  }
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
