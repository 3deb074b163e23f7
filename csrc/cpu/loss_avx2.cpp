// AVX2+FMA pieces of the loss kernels (loss.cpp): the exponentials of a
// softmax cross-entropy row, which were most of that kernel's time in
// small-batch training (10 classes × 200 rows per step).
#include <immintrin.h>

#include "avx2.h"
#include "simd_math_avx2.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

namespace {
// exp(z - shift) with the subtraction's rounding error carried: z - shift is
// split into s + err exactly (Knuth's two-sum), and exp(s + err) is exp(s) *
// (1 + err). Without it a probability e^-60 from logits of size 100 was off by
// 3e-6 relative (the rounding of z - shift, amplified by its size).
inline __m256 exp_diff(__m256 z, __m256 neg_shift) {
  const __m256 s = _mm256_add_ps(z, neg_shift);
  const __m256 bb = _mm256_sub_ps(s, z);
  __m256 err = _mm256_add_ps(_mm256_sub_ps(z, _mm256_sub_ps(s, bb)), _mm256_sub_ps(neg_shift, bb));
  err = _mm256_and_ps(err, _mm256_cmp_ps(err, err, _CMP_ORD_Q));  // infinite s: no correction
  __m256 e = exp_ps(s);
  e = _mm256_fmadd_ps(e, err, e);
  // below -104 the float result is 0 (exp_ps clamps there); NaN stays NaN, as std::exp
  e = _mm256_andnot_ps(_mm256_cmp_ps(s, _mm256_set1_ps(-104.f), _CMP_LT_OQ), e);
  return keep_nan(e, s);
}
}  // namespace

double exp_shifted_sum(float* e, const float* z, std::size_t cols, float shift) {
  const __m256 ns = _mm256_set1_ps(-shift);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  std::size_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    const __m256 v = exp_diff(_mm256_loadu_ps(z + c), ns);
    _mm256_storeu_ps(e + c, v);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  if (c < cols) {  // the last 1..7: masked, the lanes past the row count zero
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(cols - c)), iota);
    __m256 v = exp_diff(_mm256_maskload_ps(z + c, m), ns);
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
