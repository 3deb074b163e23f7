// AVX2+FMA pieces of the loss kernels (loss.cpp): the exponentials of a
// softmax cross-entropy row, which were most of that kernel's time in
// small-batch training (10 classes × 200 rows per step).
#include <immintrin.h>

#include <cmath>

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
// out[c] = column c of the eight rows of x (rows × cols, row stride cols): 8×8 register
// transposes of whole 8-column blocks (a gather per column took ~9 cycles on Zen 3),
// gathers for the last cols % 8 columns.
void columns8(float (*out)[8], const float* x, int cols, __m256i row_offsets) {
  int c = 0;
  for (; c + 8 <= cols; c += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(x + std::size_t(i) * std::size_t(cols) + std::size_t(c));
    transpose8(r);
    for (int j = 0; j < 8; ++j) _mm256_store_ps(out[c + j], r[j]);
  }
  for (; c < cols; ++c) _mm256_store_ps(out[c], _mm256_i32gather_ps(x + c, row_offsets, 4));
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

double xent_sigmoid(float* g, const float* z, const float* t, std::size_t n, float scale) {
  // per element max(z, 0) - z t in double (as the portable loop: no overflow or
  // cancellation for any float z and t) plus log(1 + e^-|z|) in float (log1p_unit_ps:
  // e^-|z| is in [0, 1], the term in [0, ln 2]), summed in double lanes; NaN propagates
  // (max_pd returns its second operand)
  const __m256 sc = _mm256_set1_ps(scale), sign = _mm256_set1_ps(-0.f);
  const __m256d zero = _mm256_setzero_pd();
  const auto linear = [zero](__m128 zh, __m128 th) {
    const __m256d zd = _mm256_cvtps_pd(zh);
    return _mm256_sub_pd(_mm256_max_pd(zero, zd), _mm256_mul_pd(zd, _mm256_cvtps_pd(th)));
  };
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 zi = _mm256_loadu_ps(z + i), ti = _mm256_loadu_ps(t + i);
    const __m256 soft = log1p_unit_ps(exp_ps(_mm256_or_ps(zi, sign)));  // log(1 + e^-|z|)
    lo = _mm256_add_pd(lo, _mm256_add_pd(linear(_mm256_castps256_ps128(zi), _mm256_castps256_ps128(ti)),
                                          _mm256_cvtps_pd(_mm256_castps256_ps128(soft))));
    hi = _mm256_add_pd(hi, _mm256_add_pd(linear(_mm256_extractf128_ps(zi, 1), _mm256_extractf128_ps(ti, 1)),
                                          _mm256_cvtps_pd(_mm256_extractf128_ps(soft, 1))));
    if (g) _mm256_storeu_ps(g + i, _mm256_mul_ps(sc, _mm256_sub_ps(sigmoid_ps(zi), ti)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(lo, hi));
  double total = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i) {  // the last n % 8 as the portable loop computes them
    const double zd = z[i];
    total += (zd > 0 ? zd : 0.0) - zd * t[i] + std::log1p(std::exp(-std::fabs(zd)));
    if (g) {
      const float e = std::exp(-std::fabs(z[i]));
      g[i] = scale * ((z[i] < 0.f ? e / (1.f + e) : 1.f / (1.f + e)) - t[i]);
    }
  }
  return total;
}

void xent_softmax_rows8(float* g, const float* z, const float* t, std::size_t cols, bool sparse, float scale,
                        double* loss) {
  const int C = int(cols);
  const __m256i rows = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(C));
  alignas(32) float Z[kXentLaneCols][8];  // column c of the eight rows (gathered once)
  alignas(32) float E[kXentLaneCols][8];  // exp(z - max)
  alignas(32) float T[kXentLaneCols][8];  // column c of the targets (one-hot or soft labels)
  columns8(Z, z, C, rows);
  if (!sparse) columns8(T, t, C, rows);
  __m256 mx = _mm256_load_ps(Z[0]);
  for (int c = 1; c < C; ++c) mx = _mm256_max_ps(_mm256_load_ps(Z[c]), mx);  // zc > mx ? zc : mx
  const __m256 ns = _mm256_sub_ps(_mm256_setzero_ps(), mx);
  // loss.cpp sums a row's exponentials in double lanes j = c % 8 (lo: j < 4, hi: the
  // rest) over 8-wide chunks, then (lo + hi)_j, then (j0 + j1) + (j2 + j3): the same
  // sums here, each over the eight rows (two halves of four doubles).
  __m256d acc[8][2];
  for (int c = 0; c < C; ++c) {
    const __m256 e = exp_diff(_mm256_load_ps(Z[c]), ns);
    _mm256_store_ps(E[c], e);
    const __m256d e0 = _mm256_cvtps_pd(_mm256_castps256_ps128(e)), e1 = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
    if (c < 8) {
      acc[c][0] = e0;
      acc[c][1] = e1;
    } else {
      acc[c % 8][0] = _mm256_add_pd(acc[c % 8][0], e0);
      acc[c % 8][1] = _mm256_add_pd(acc[c % 8][1], e1);
    }
  }
  const __m256d zero = _mm256_setzero_pd();
  for (int j = C; j < 8; ++j) acc[j][0] = acc[j][1] = zero;
  __m256d sum[2];
  for (int h = 0; h < 2; ++h) {
    __m256d lane[4];
    for (int j = 0; j < 4; ++j) lane[j] = _mm256_add_pd(acc[j][h], acc[j + 4][h]);
    sum[h] = _mm256_add_pd(_mm256_add_pd(lane[0], lane[1]), _mm256_add_pd(lane[2], lane[3]));
  }
  alignas(32) double s8[8], lse8[8];
  alignas(32) float mx8[8];
  _mm256_store_pd(s8, sum[0]);
  _mm256_store_pd(s8 + 4, sum[1]);
  _mm256_store_ps(mx8, mx);
  for (int r = 0; r < 8; ++r) lse8[r] = double(mx8[r]) + std::log(s8[r]);
  const __m256d one = _mm256_set1_pd(1.0);
  const __m256d inv[2] = {_mm256_div_pd(one, sum[0]), _mm256_div_pd(one, sum[1])};
  const __m256d lse[2] = {_mm256_load_pd(lse8), _mm256_load_pd(lse8 + 4)};
  const __m256 sc = _mm256_set1_ps(scale);
  alignas(32) float G[kXentLaneCols][8];
  alignas(32) float label8[8];
  __m256 label = _mm256_setzero_ps();
  if (sparse) {
    label = _mm256_i32gather_ps(t, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), 4);
    _mm256_store_ps(label8, label);
  }
  __m256d row[2] = {zero, zero};
  for (int c = 0; c < C; ++c) {
    const __m256 e = _mm256_load_ps(E[c]);
    __m256 tc;
    if (sparse) {
      tc = _mm256_and_ps(_mm256_cmp_ps(label, _mm256_set1_ps(float(c)), _CMP_EQ_OQ), _mm256_set1_ps(1.f));
    } else {
      tc = _mm256_load_ps(T[c]);
      const __m256 zc = _mm256_load_ps(Z[c]);
      for (int h = 0; h < 2; ++h) {  // row += t_c * (lse - z_c), in double
        const __m128 th = h ? _mm256_extractf128_ps(tc, 1) : _mm256_castps256_ps128(tc);
        const __m128 zh = h ? _mm256_extractf128_ps(zc, 1) : _mm256_castps256_ps128(zc);
        __m256d term = _mm256_mul_pd(_mm256_cvtps_pd(th), _mm256_sub_pd(lse[h], _mm256_cvtps_pd(zh)));
        asm("" : "+x"(term));  // rounded before the sum, as the row loop does (GCC would contract to an FMA)
        row[h] = _mm256_add_pd(row[h], term);
      }
    }
    if (g) {  // scale * (float(e * (1 / sum)) - t_c)
      const __m128 p0 = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)), inv[0]));
      const __m128 p1 = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)), inv[1]));
      const __m256 p = _mm256_insertf128_ps(_mm256_castps128_ps256(p0), p1, 1);
      _mm256_store_ps(G[c], _mm256_mul_ps(sc, _mm256_sub_ps(p, tc)));
    }
  }
  if (sparse) {
    for (int r = 0; r < 8; ++r) loss[r] = lse8[r] - double(z[std::size_t(r) * cols + std::size_t(label8[r])]);
  } else {
    _mm256_storeu_pd(loss, row[0]);
    _mm256_storeu_pd(loss + 4, row[1]);
  }
  if (g) {
    int c = 0;
    for (; c + 8 <= C; c += 8) {  // columns c..c+7 back into the rows: one 8×8 transpose
      __m256 r[8];
      for (int j = 0; j < 8; ++j) r[j] = _mm256_load_ps(G[c + j]);
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(g + std::size_t(i) * cols + std::size_t(c), r[i]);
    }
    for (; c < C; ++c)
      for (int i = 0; i < 8; ++i) g[std::size_t(i) * cols + std::size_t(c)] = G[c][i];
  }
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
