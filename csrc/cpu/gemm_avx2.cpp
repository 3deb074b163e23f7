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
