// Vectorized exp / sigmoid / tanh for AVX2+FMA. Include only from *_avx2.cpp
// files. Everything here is `static inline` (internal linkage) so that no
// AVX2-compiled copy of a function can be picked by the linker for portable code.
#pragma once
#include <immintrin.h>

#include "fusednn/activation.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

// e^x to about 1 ulp: Cody-Waite reduction, a degree-6 polynomial on
// [-ln2/2, ln2/2] evaluated with FMA, and 2^n applied in two halves so that
// results in the denormal range (x down to -103.9) round correctly instead of
// flushing. x is clamped to [-104, 88.37]; NaN is the caller's business.
static inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.f)), _mm256_set1_ps(88.3762626647949f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  const __m256i ni = _mm256_cvtps_epi32(n);  // in [-150, 127]
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

// Lanes j of an 8-wide vector with j + off < n: the first n - off lanes (all for
// n - off >= 8, none for n - off <= 0).
static inline __m256i lane_mask(int n, int off = 0) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n - off), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Transpose the 8×8 block held in r[0..8) (rows) into columns, in place.
static inline __attribute__((always_inline)) void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Store lanes [0, n) of x at p (0 < n <= 8) with plain 32-, 16-, 8- and 4-byte
// stores. For an n known at compile time that is one to three stores, measured
// faster than vmaskmovps (the narrow-output kernels' rows); for a run-time n the
// branches cost more than they save, and masked stores stay.
static inline void store_first(float* p, __m256 x, int n) {
  if (n == 8) {
    _mm256_storeu_ps(p, x);
    return;
  }
  __m128 h = _mm256_castps256_ps128(x);
  if (n >= 4) {
    _mm_storeu_ps(p, h);
    h = _mm256_extractf128_ps(x, 1);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), h);
    h = _mm_movehl_ps(h, h);
    p += 2;
    n -= 2;
  }
  if (n) _mm_store_ss(p, h);
}

static inline __m256 keep_nan(__m256 r, __m256 x) {
  return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// 1 / (1 + e^-x), written so that neither branch overflows: for x < 0 it is
// e^x / (1 + e^x), which keeps full relative precision for very negative x.
// The rounding error of 1 + e is recovered exactly (Fast2Sum, since e <= 1)
// and folded into one correction step of the quotient: without it the
// maximum relative error was 2.05e-7, above the 2e-7 budget.
static inline __m256 sigmoid_ps(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.f), x);
  const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), ax));  // e^-|x| in [0, 1]
  const __m256 d = _mm256_add_ps(one, e);
  const __m256 d_err = _mm256_add_ps(_mm256_sub_ps(one, d), e);  // (1 + e) - d, exactly
  const __m256 num = _mm256_blendv_ps(one, e, neg);
  const __m256 q = _mm256_div_ps(num, d);
  __m256 rem = _mm256_fnmadd_ps(q, d, num);  // num - q*d, exact with FMA
  rem = _mm256_fnmadd_ps(q, d_err, rem);
  const __m256 r = _mm256_fmadd_ps(rem, _mm256_rcp_ps(d), q);
  return keep_nan(r, x);
}

// tanh: an odd polynomial near 0 (no cancellation), 1 - 2/(e^{2|x|} + 1) beyond,
// and exactly ±1 once e^{2|x|} would overflow.
static inline __m256 tanh_ps(__m256 x) {
  const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.f));
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.f), x);
  const __m256 one = _mm256_set1_ps(1.f);
  // |x| < 0.625: x + x^3 P(x^2)
  const __m256 z = _mm256_mul_ps(ax, ax);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), ax, ax);
  // |x| >= 0.625
  const __m256 e = exp_ps(_mm256_min_ps(_mm256_add_ps(ax, ax), _mm256_set1_ps(88.f)));
  const __m256 large = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.f), _mm256_add_ps(e, one)));
  __m256 r = _mm256_blendv_ps(large, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
  r = _mm256_blendv_ps(r, one, _mm256_cmp_ps(ax, _mm256_set1_ps(9.5f), _CMP_GT_OQ));
  return keep_nan(_mm256_or_ps(r, sign), x);
}

// e^x - 1 without the cancellation of exp_ps(x) - 1 near 0: a degree-9 Taylor
// polynomial for |x| < 0.5 (truncation < 2e-9 relative), exp_ps(x) - 1 beyond
// (at most ~2 ulp there, where |result| > 0.39).
static inline __m256 expm1_ps(__m256 x) {
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.f), x);
  __m256 p = _mm256_set1_ps(2.75573192e-6f);              // 1/9!
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(2.48015873e-5f));  // 1/8!
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.98412698e-4f));  // 1/7!
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.38888889e-3f));  // 1/6!
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.33333333e-3f));  // 1/5!
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.16666667e-2f));  // 1/4!
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.66666667e-1f));  // 1/3!
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(0.5f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, x), x, x);
  const __m256 large = _mm256_sub_ps(exp_ps(x), _mm256_set1_ps(1.f));
  const __m256 r = _mm256_blendv_ps(large, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.5f), _CMP_LT_OQ));
  return keep_nan(r, x);
}

// log(1 + e) for e in [0, 1] as 2 atanh(s), s = e / (2 + e) in [0, 1/3]: the odd
// series 2 (s + s^3/3 + ... + s^17/17), truncated below 2e-9 relative; no
// cancellation for small e.
static inline __m256 log1p_unit_ps(__m256 e) {
  const __m256 s = _mm256_div_ps(e, _mm256_add_ps(_mm256_set1_ps(2.f), e));
  const __m256 s2 = _mm256_mul_ps(s, s);
  __m256 p = _mm256_set1_ps(1.f / 17.f);
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 15.f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 13.f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 11.f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 9.f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 7.f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 5.f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 3.f));
  const __m256 s2x = _mm256_add_ps(s, s);
  return _mm256_fmadd_ps(_mm256_mul_ps(s2x, s2), p, s2x);
}

// Phi(x) = P(N(0,1) <= x) = erfc(|x| / sqrt 2) / 2 for x < 0 (full relative
// precision in the lower tail) and 1 - erfc(|x| / sqrt 2) / 2 above, with
// erfc(z) = t exp(-z^2) exp(P(t)), t = 1 / (1 + z/2): the Chebyshev fit of Numerical
// Recipes' erfcc (relative error below 1.1e-7 in exact arithmetic on [0, 13]). z^2 =
// x^2 / 2 is split exactly into hi + lo with an FMA and e^(-hi) taken on its own, so
// the large exponent is never rounded (that alone cost ~eps * z^2 relative).
static inline __m256 normal_cdf_ps(__m256 x) {
  const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.f), x);
  const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.f),
                                 _mm256_fmadd_ps(a, _mm256_set1_ps(0.35355339059327376f), _mm256_set1_ps(1.f)));
  __m256 p = _mm256_set1_ps(0.17087277f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
  const __m256 hi = _mm256_mul_ps(a, a);
  const __m256 lo = _mm256_fmsub_ps(a, a, hi);  // a^2 - hi, exact
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256 g = _mm256_mul_ps(exp_ps(_mm256_mul_ps(_mm256_set1_ps(-0.5f), hi)), exp_ps(_mm256_fnmadd_ps(half, lo, p)));
  const __m256 c = _mm256_mul_ps(_mm256_mul_ps(half, t), g);
  return _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.f), c), c, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
}

static inline __m256 act_ps(__m256 v, Act act) {
  switch (act) {
    case Act::relu: return _mm256_max_ps(_mm256_setzero_ps(), v);  // NaN propagates
    case Act::sigmoid: return sigmoid_ps(v);
    case Act::tanh: return tanh_ps(v);
    default: return v;
  }
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
