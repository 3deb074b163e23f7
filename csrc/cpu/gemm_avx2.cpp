// The AVX2+FMA micro-kernel of the CPU GEMM (see gemm.cpp for the blocking).
// A 6×16 tile of C lives in 12 ymm registers; each k step broadcasts 6 values
// of A and multiplies them by two 8-wide vectors of B. A and B are either the
// packed panels or, for small products, the caller's matrices read in place.
#include <immintrin.h>

#include "avx2.h"
#include "simd_math_avx2.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

namespace {
constexpr int MR = 6;
constexpr int NR = 16;

// Epilogue for one row of the tile held in (lo, hi), written to c[0..16).
inline void store_row(float* c, __m256 lo, __m256 hi, bool accumulate, bool final, __m256 blo,
                      __m256 bhi, bool has_bias, Act act) {
  if (accumulate) {
    lo = _mm256_add_ps(lo, _mm256_loadu_ps(c));
    hi = _mm256_add_ps(hi, _mm256_loadu_ps(c + 8));
  }
  if (final) {
    if (has_bias) {
      lo = _mm256_add_ps(lo, blo);
      hi = _mm256_add_ps(hi, bhi);
    }
    lo = act_ps(lo, act);
    hi = act_ps(hi, act);
  }
  _mm256_storeu_ps(c, lo);
  _mm256_storeu_ps(c + 8, hi);
}
}  // namespace

void gemm_ukernel_6x16(int kc, const float* A, long rsa, long csa, const float* B, long rsb, float* C,
                       long ldc, int mr, int nr, bool accumulate, bool final, const float* bias,
                       Act act) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  // Rows 0-2 are read relative to a0 and rows 3-5 relative to a3, so each
  // broadcast is one base+index*4 address whatever the row stride.
  const float* a0 = A;
  const float* a3 = A + 3 * rsa;
  const long r2 = 2 * rsa;
#pragma GCC unroll 4
  for (int k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(B);
    const __m256 b1 = _mm256_loadu_ps(B + 8);
    __m256 a;
    a = _mm256_broadcast_ss(a0);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(a0 + rsa);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(a0 + r2);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(a3);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(a3 + rsa);
    c40 = _mm256_fmadd_ps(a, b0, c40);
    c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(a3 + r2);
    c50 = _mm256_fmadd_ps(a, b0, c50);
    c51 = _mm256_fmadd_ps(a, b1, c51);
    a0 += csa;
    a3 += csa;
    B += rsb;
  }

  const bool full = mr == MR && nr == NR;
  // Partial tiles go through a full-size scratch tile so that the one vector
  // epilogue serves every tile; only the valid mr×nr part is read or written.
  alignas(32) float tile[MR * NR];
  alignas(32) float bias_buf[NR];
  float* dst = C;
  long ld = ldc;
  const float* b = bias;
  if (!full) {
    dst = tile;
    ld = NR;
    for (int i = 0; i < MR * NR; ++i) tile[i] = 0.f;
    if (accumulate)
      for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nr; ++j) tile[i * NR + j] = C[i * ldc + j];
    if (bias) {
      for (int j = 0; j < NR; ++j) bias_buf[j] = j < nr ? bias[j] : 0.f;
      b = bias_buf;
    }
  }
  const bool has_bias = final && b != nullptr;
  const __m256 blo = has_bias ? _mm256_loadu_ps(b) : _mm256_setzero_ps();
  const __m256 bhi = has_bias ? _mm256_loadu_ps(b + 8) : _mm256_setzero_ps();
  store_row(dst + 0 * ld, c00, c01, accumulate, final, blo, bhi, has_bias, act);
  store_row(dst + 1 * ld, c10, c11, accumulate, final, blo, bhi, has_bias, act);
  store_row(dst + 2 * ld, c20, c21, accumulate, final, blo, bhi, has_bias, act);
  store_row(dst + 3 * ld, c30, c31, accumulate, final, blo, bhi, has_bias, act);
  store_row(dst + 4 * ld, c40, c41, accumulate, final, blo, bhi, has_bias, act);
  store_row(dst + 5 * ld, c50, c51, accumulate, final, blo, bhi, has_bias, act);
  if (!full)
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < nr; ++j) C[i * ldc + j] = tile[i * NR + j];
}

namespace {
// Transpose the 8×8 block held in r[0..8) (rows) into columns, in place.
inline void transpose8(__m256 r[8]) {
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
}  // namespace

void pack_b_transposed_16(float* dst, const float* src, long ld, int kc) {
  int k = 0;
  for (; k + 8 <= kc; k += 8)
    for (int half = 0; half < 2; ++half) {  // columns j = 8*half .. 8*half+7
      __m256 r[8];
      for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src + (half * 8 + j) * ld + k);
      transpose8(r);  // r[t] now holds op(B)(k + t, 8*half .. 8*half+7)
      for (int t = 0; t < 8; ++t) _mm256_storeu_ps(dst + (k + t) * 16 + half * 8, r[t]);
    }
  for (; k < kc; ++k)
    for (int j = 0; j < 16; ++j) dst[k * 16 + j] = src[j * ld + k];
}

void gemm_n1(float* c, const float* A, const float* b, int M, int K, bool ta) {
  if (ta) {  // c = A^T b, A stored K×M: accumulate b[k] * (row k of A), 8 outputs at a time
    int i = 0;
    for (; i + 8 <= M; i += 8) {
      __m256 acc = _mm256_setzero_ps();
      for (int k = 0; k < K; ++k)
        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(b + k), _mm256_loadu_ps(A + long(k) * M + i), acc);
      _mm256_storeu_ps(c + i, acc);
    }
    for (; i < M; ++i) {
      float s = 0.f;
      for (int k = 0; k < K; ++k) s = __builtin_fmaf(b[k], A[long(k) * M + i], s);
      c[i] = s;
    }
    return;
  }
  for (int i = 0; i < M; ++i) {  // c[i] = dot(row i of A, b)
    const float* a = A + long(i) * K;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), acc1);
    }
    for (; k + 8 <= K; k += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc0);
    acc0 = _mm256_add_ps(acc0, acc1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float s = _mm_cvtss_f32(h);
    for (; k < K; ++k) s = __builtin_fmaf(a[k], b[k], s);
    c[i] = s;
  }
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
