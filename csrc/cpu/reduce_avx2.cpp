// AVX2 versions of sum_rows (reduce.cpp) and regularize (regularize.cpp) with the
// portable loops' arithmetic, operation for operation, so the same bits: the bias
// gradient's column sums and the weight penalties were 6 us of digits' 100 us fused
// step, run as SSE2 (the portable TUs are built for baseline x86-64).
#include <immintrin.h>

#include <cmath>

#include "avx2.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

namespace {
// A value the compiler must round before its next use: GCC contracts a product and a
// sum of intrinsics into one FMA, which the portable loops (built without FMA) do not.
template <class V>
inline V rounded(V v) {
  asm("" : "+x"(v));
  return v;
}
}  // namespace

void sum_rows(float* out, const float* x, std::size_t rows, std::size_t cols) {
  // each column's sum in double, row after row, as reduce.cpp: 16 columns at a time
  std::size_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    const float* p = x + c;
    for (std::size_t r = 0; r < rows; ++r, p += cols) {
      const __m256 lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);
      a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(lo)));
      a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(lo, 1)));
      a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(_mm256_castps256_ps128(hi)));
      a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(_mm256_extractf128_ps(hi, 1)));
    }
    const __m128 s0 = _mm256_cvtpd_ps(a0), s1 = _mm256_cvtpd_ps(a1), s2 = _mm256_cvtpd_ps(a2), s3 = _mm256_cvtpd_ps(a3);
    _mm256_storeu_ps(out + c, _mm256_insertf128_ps(_mm256_castps128_ps256(s0), s1, 1));
    _mm256_storeu_ps(out + c + 8, _mm256_insertf128_ps(_mm256_castps128_ps256(s2), s3, 1));
  }
  for (; c + 4 <= cols; c += 4) {
    __m256d a = _mm256_setzero_pd();
    for (std::size_t r = 0; r < rows; ++r) a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm_loadu_ps(x + r * cols + c)));
    _mm_storeu_ps(out + c, _mm256_cvtpd_ps(a));
  }
  for (; c < cols; ++c) {
    double a = 0.0;
    for (std::size_t r = 0; r < rows; ++r) a += double(x[r * cols + c]);
    out[c] = float(a);
  }
}

namespace {
// The gradient before its penalty: g itself, or two replicas' gradients weighted, c0 g0 +
// c1 g1 (each product rounded, as the portable loop of train_replicas.cpp computes it).
struct Own {
  const float* g;
  __m256 at(std::size_t i) const { return _mm256_loadu_ps(g + i); }
  float at1(std::size_t i) const { return g[i]; }
};
struct Weighted {
  const float *g0, *g1;
  float c0, c1;
  __m256 at(std::size_t i) const {
    return _mm256_add_ps(rounded(_mm256_mul_ps(_mm256_set1_ps(c0), _mm256_loadu_ps(g0 + i))),
                         rounded(_mm256_mul_ps(_mm256_set1_ps(c1), _mm256_loadu_ps(g1 + i))));
  }
  float at1(std::size_t i) const { return rounded(c0 * g0[i]) + rounded(c1 * g1[i]); }
};

// g = src + l1 sign(w) + 2 l2 w, in one pass that also sums the penalty: eight double
// accumulators, acc[j] over the elements i = j (mod 8), as regularize.cpp sums them;
// (l1 |x|) + ((l2 x) x) each rounded in double. Sign 0 at 0 and for NaN.
template <class Src>
double regularize_from(float* g, Src src, const float* w, std::size_t n, float l1, float l2) {
  const float two_l2 = 2.0f * l2;
  const __m256 t2 = _mm256_set1_ps(two_l2), a1 = _mm256_set1_ps(l1);
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f);
  const __m256d d1 = _mm256_set1_pd(double(l1)), d2 = _mm256_set1_pd(double(l2));
  const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
  const bool has_l1 = l1 != 0.f;
  __m256d lo = _mm256_setzero_pd(), hi = lo;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(w + i);
    __m256 step = rounded(_mm256_mul_ps(t2, x));
    if (has_l1) {
      const __m256 s = _mm256_sub_ps(_mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_GT_OQ), one),
                                     _mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_LT_OQ), one));
      step = _mm256_add_ps(rounded(_mm256_mul_ps(a1, s)), step);
    }
    _mm256_storeu_ps(g + i, _mm256_add_ps(src.at(i), step));
    for (int h = 0; h < 2; ++h) {
      const __m256d xd = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(x, 1) : _mm256_castps256_ps128(x));
      const __m256d term = _mm256_add_pd(rounded(_mm256_mul_pd(d1, _mm256_and_pd(xd, abs_mask))),
                                         rounded(_mm256_mul_pd(rounded(_mm256_mul_pd(d2, xd)), xd)));
      if (h)
        hi = _mm256_add_pd(hi, term);
      else
        lo = _mm256_add_pd(lo, term);
    }
  }
  alignas(32) double acc[8];
  _mm256_store_pd(acc, lo);
  _mm256_store_pd(acc + 4, hi);
  for (; i < n; ++i) {
    const float x = w[i];
    const float s = (x > 0.f ? 1.f : 0.f) - (x < 0.f ? 1.f : 0.f);
    const float step = has_l1 ? rounded(l1 * s) + rounded(two_l2 * x) : rounded(two_l2 * x);
    g[i] = src.at1(i) + step;
    const double xd = x;
    acc[0] += rounded(double(l1) * std::fabs(xd)) + rounded(rounded(double(l2) * xd) * xd);
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
}  // namespace

double regularize(float* g, const float* w, std::size_t n, float l1, float l2) {
  return regularize_from(g, Own{g}, w, n, l1, l2);
}

double weighted_sum_regularize(float* g, const float* g0, const float* g1, float c0, float c1, const float* w,
                               std::size_t n, float l1, float l2) {
  return regularize_from(g, Weighted{g0, g1, c0, c1}, w, n, l1, l2);
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
