// AVX2+FMA pieces of the loss kernels (loss.cpp): the exponentials of a
// softmax cross-entropy row, which were most of that kernel's time in
// small-batch training (10 classes × 200 rows per step).
#include <immintrin.h>

#include "avx2.h"
#include "simd_math_avx2.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

double exp_shifted_sum(float* e, const float* z, std::size_t cols, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  std::size_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    const __m256 v = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(z + c), s));
    _mm256_storeu_ps(e + c, v);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  if (c < cols) {  // the last 1..7: masked, the lanes past the row count zero
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(cols - c)), iota);
    __m256 v = exp_ps(_mm256_sub_ps(_mm256_maskload_ps(z + c, m), s));
    v = _mm256_and_ps(v, _mm256_castsi256_ps(m));
    _mm256_maskstore_ps(e + c, m, v);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(lo, hi));
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
