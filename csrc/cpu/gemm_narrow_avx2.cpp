// AVX2+FMA kernels for products with a narrow output, N <= 12 columns (an output
// layer of a few classes: its forward product and its weight gradient), and for the
// last 1..8 columns of a wider small product (100 = 96 + 4). The 6×16 tile fills at
// most 12 of its 16 lanes there (the 12×8 one half of them for 4 columns), and
// computing the transpose instead pads 10 rows to 12 and adds a transposing pass;
// these put every lane to use. See gemm.cpp for when they are chosen.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "avx2.h"
#include "simd_math_avx2.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

namespace {

// The first `rows` rows of an 8-row block of C whose NJ columns are in acc (rows in
// the lanes): transposed, then the bias/activation epilogue, one partial store a row.
// (A function of its own so that acc's indices are constants and it stays in registers.)
template <int NJ>
__attribute__((always_inline)) inline void store_rows(float* C, long ldc, const __m256 (&acc)[NJ], int rows,
                                                      const __m256* bias, Act act) {
  __m256 r[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) r[j] = j < NJ ? acc[j] : _mm256_setzero_ps();
  transpose8(r);
  for (int l = 0; l < rows; ++l) {
    const __m256 x = bias ? _mm256_add_ps(r[l], *bias) : r[l];
    store_first(C + l * ldc, act_ps(x, act), NJ);
  }
}

// Rows m0..m0+mr (mr <= 16) × columns j0..j0+NJ of C from op(A) with unit stride
// along M: two vectors of rows in the lanes, one accumulator per (vector, column), so
// each k step is two loads of A, NJ broadcasts of B and 2·NJ multiply-adds. The
// accumulators hold columns of C; an 8×8 transpose turns them into rows for the store.
template <int NJ>
void lanes_block(float* C, long ldc, const float* A, long lda, const float* B, long rsb, long csb, int mr,
                 int K, const float* bias, Act act) {
  __m256 lo[NJ], hi[NJ];  // rows 0-7 and 8-15 (two arrays: GCC kept a 2-D one in memory)
#pragma GCC unroll 8
  for (int j = 0; j < NJ; ++j) lo[j] = hi[j] = _mm256_setzero_ps();
  const bool full = mr == 16;
  const __m256i m0 = lane_mask(mr), m1 = lane_mask(mr - 8);
  for (int k = 0; k < K; ++k) {
    const __m256 a0 = full ? _mm256_loadu_ps(A) : _mm256_maskload_ps(A, m0);
    const __m256 a1 = full ? _mm256_loadu_ps(A + 8) : _mm256_maskload_ps(A + 8, m1);
#pragma GCC unroll 8
    for (int j = 0; j < NJ; ++j) {
      const __m256 b = _mm256_broadcast_ss(B + j * csb);
      lo[j] = _mm256_fmadd_ps(a0, b, lo[j]);
      hi[j] = _mm256_fmadd_ps(a1, b, hi[j]);
    }
    A += lda;
    B += rsb;
  }
  const __m256 bv = bias ? _mm256_maskload_ps(bias, lane_mask(NJ)) : _mm256_setzero_ps();
  store_rows<NJ>(C, ldc, lo, std::min(8, mr), bias ? &bv : nullptr, act);
  if (mr > 8) store_rows<NJ>(C + 8 * ldc, ldc, hi, mr - 8, bias ? &bv : nullptr, act);
}

using LanesBlock = void (*)(float*, long, const float*, long, const float*, long, long, int, int, const float*, Act);
constexpr LanesBlock kLanesBlocks[] = {lanes_block<1>, lanes_block<2>, lanes_block<3>,
                                       lanes_block<4>, lanes_block<5>, lanes_block<6>};

// The column blocks of at most 6 an N-wide output is split into, as even as possible
// (10 -> 5 + 5), so that every block keeps enough accumulators for both FMA pipes.
template <typename F>
void column_blocks(int N, int widest, F&& f) {
  const int blocks = (N + widest - 1) / widest;
  for (int b = 0, j0 = 0; b < blocks; ++b) {
    const int nj = (N - j0) / (blocks - b);
    f(j0, nj);
    j0 += nj;
  }
}

// The sum of each of v[0..8) in one vector: lane t holds the sum of v[t]'s lanes.
inline __m256 sum8(const __m256 v[8]) {
  const __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
  const __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// lanes 0..3 hold the sums of v[0..4)'s lanes, in sum8's order for each of them
inline __m128 sum4(const __m256 v[4]) {
  const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

// An R×J block of C (R·J = 8 or 12: 3×4, 2×4, 4×2 or 8×1) as dot products of R rows of
// A with J rows of Bᵀ, each accumulator over k in 8 lanes (a masked last chunk past
// K's multiple of 8), then horizontal sums (the same order for every accumulator, so
// a value does not depend on the block shape). Rows past `rows` read row 0 again and
// are not stored.
template <int R, int J>
__attribute__((always_inline)) inline void dots_block(float* C, long ldc, const float* A, long lda, const float* Bt,
                                                      long ldb, int rows, int K, const float* bias, Act act) {
  constexpr int NA = R * J;
  static_assert(NA == 8 || NA == 12, "8 or 12 accumulators");
  __m256 acc[NA];
  for (int t = 0; t < NA; ++t) acc[t] = _mm256_setzero_ps();
  const float* a[R];
  for (int r = 0; r < R; ++r) a[r] = A + (r < rows ? r : 0) * lda;
  const int k8 = K & ~7;
  for (int k = 0; k < k8; k += 8) {
    __m256 av[R];
    for (int r = 0; r < R; ++r) av[r] = _mm256_loadu_ps(a[r] + k);
    for (int j = 0; j < J; ++j) {
      const __m256 b = _mm256_loadu_ps(Bt + j * ldb + k);
      for (int r = 0; r < R; ++r) acc[r * J + j] = _mm256_fmadd_ps(av[r], b, acc[r * J + j]);
    }
  }
  if (k8 < K) {
    const __m256i m = lane_mask(K - k8);
    __m256 av[R];
    for (int r = 0; r < R; ++r) av[r] = _mm256_maskload_ps(a[r] + k8, m);
    for (int j = 0; j < J; ++j) {
      const __m256 b = _mm256_maskload_ps(Bt + j * ldb + k8, m);
      for (int r = 0; r < R; ++r) acc[r * J + j] = _mm256_fmadd_ps(av[r], b, acc[r * J + j]);
    }
  }
  alignas(32) float out[16];
  __m256 s = sum8(acc);
  if (bias) {
    alignas(32) float bb[8];
    for (int t = 0; t < 8; ++t) bb[t] = bias[t % J];
    s = _mm256_add_ps(s, _mm256_load_ps(bb));
  }
  _mm256_store_ps(out, act_ps(s, act));
  if constexpr (NA == 12) {  // the last four accumulators: columns 0..3 of row 2
    __m128 s4 = sum4(acc + 8);
    if (bias) s4 = _mm_add_ps(s4, _mm_loadu_ps(bias));
    _mm_store_ps(out + 8, _mm256_castps256_ps128(act_ps(_mm256_insertf128_ps(_mm256_setzero_ps(), s4, 0), act)));
  }
  for (int r = 0; r < std::min(R, rows); ++r)
    for (int j = 0; j < J; ++j) C[r * ldc + j] = out[r * J + j];
}

template <int R, int J>
void dots_columns(float* C, long ldc, const float* A, long lda, const float* Bt, long ldb, int M, int K,
                  const float* bias, Act act) {
  for (int i = 0; i < M; i += R)
    dots_block<R, J>(C + long(i) * ldc, ldc, A + long(i) * lda, lda, Bt, ldb, std::min(R, M - i), K, bias, act);
}

}  // namespace

void gemm_narrow_lanes(float* C, long ldc, const float* A, long lda, const float* B, long rsb, long csb, int M,
                       int N, int K, const float* bias, Act act) {
  column_blocks(N, 6, [&](int j0, int nj) {
    const float* bj = bias ? bias + j0 : nullptr;
    for (int i = 0; i < M; i += 16)
      kLanesBlocks[nj - 1](C + long(i) * ldc + j0, ldc, A + i, lda, B + long(j0) * csb, rsb, csb,
                           std::min(16, M - i), K, bj, act);
  });
}

void gemm_small_k(float* C, const float* A, long lda, const float* B, long rsb, long csb, int M, int N, int K,
                  const float* bias, Act act) {
  // op(B) as K rows of 16 floats, zero past N (at most 16×16)
  alignas(32) float Bp[16][16];
  for (int k = 0; k < K; ++k)
    for (int j = 0; j < 16; ++j) Bp[k][j] = j < N ? B[long(k) * rsb + long(j) * csb] : 0.f;
  const __m256i m0 = lane_mask(N), m1 = lane_mask(N, 8);
  const __m256 bias0 = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
  const __m256 bias1 = bias && N > 8 ? _mm256_maskload_ps(bias + 8, m1) : _mm256_setzero_ps();
  const bool wide = N > 8;
  for (int i = 0; i < M; i += 4) {
    const int rows = std::min(4, M - i);
    const float* a0 = A + long(i) * lda;
    const float* a1 = A + long(i + std::min(1, rows - 1)) * lda;
    const float* a2 = A + long(i + std::min(2, rows - 1)) * lda;
    const float* a3 = A + long(i + std::min(3, rows - 1)) * lda;
    __m256 l0 = _mm256_setzero_ps(), l1 = l0, l2 = l0, l3 = l0, h0 = l0, h1 = l0, h2 = l0, h3 = l0;
    for (int k = 0; k < K; ++k) {  // each output's products added in k order from zero, as the tiled kernels
      const __m256 b0 = _mm256_load_ps(Bp[k]), b1 = _mm256_load_ps(Bp[k] + 8);
      __m256 x = _mm256_broadcast_ss(a0 + k);
      l0 = _mm256_fmadd_ps(x, b0, l0);
      h0 = _mm256_fmadd_ps(x, b1, h0);
      x = _mm256_broadcast_ss(a1 + k);
      l1 = _mm256_fmadd_ps(x, b0, l1);
      h1 = _mm256_fmadd_ps(x, b1, h1);
      x = _mm256_broadcast_ss(a2 + k);
      l2 = _mm256_fmadd_ps(x, b0, l2);
      h2 = _mm256_fmadd_ps(x, b1, h2);
      x = _mm256_broadcast_ss(a3 + k);
      l3 = _mm256_fmadd_ps(x, b0, l3);
      h3 = _mm256_fmadd_ps(x, b1, h3);
    }
    const __m256 lo[4] = {l0, l1, l2, l3}, hi[4] = {h0, h1, h2, h3};
    for (int r = 0; r < rows; ++r) {
      // C's rows are contiguous (ldc = N): whole vectors, in row order, the spill past a
      // row's N floats overwritten by the next rows' stores; masked where a whole
      // vector would reach past C's end (the last rows)
      float* c = C + long(i + r) * N;
      const __m256 v0 = act_ps(bias ? _mm256_add_ps(lo[r], bias0) : lo[r], act);
      const __m256 v1 = act_ps(bias ? _mm256_add_ps(hi[r], bias1) : hi[r], act);
      if (long(i + r) * N + (wide ? 16 : 8) <= long(M) * N) {
        _mm256_storeu_ps(c, v0);
        if (wide) _mm256_storeu_ps(c + 8, v1);
      } else {
        _mm256_maskstore_ps(c, m0, v0);
        if (wide) _mm256_maskstore_ps(c + 8, m1, v1);
      }
    }
  }
}

void gemm_narrow_dots(float* C, long ldc, const float* A, const float* B, long ldb, bool tb, int M, int N, int K,
                      const float* bias, Act act) {
  const float* Bt = B;  // Bᵀ, N rows of K (row stride ldb)
  if (!tb) {            // B's K×N columns: their transpose, once per call (N·K floats)
    static thread_local std::vector<float> scratch;
    scratch.resize(std::size_t(N) * K);
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < N; ++j) scratch[std::size_t(j) * K + k] = B[long(k) * ldb + j];
    Bt = scratch.data();
    ldb = K;
  }
  const auto bias_at = [bias](int j) { return bias ? bias + j : nullptr; };
  int j = 0;
  for (; j + 4 <= N; j += 4) dots_columns<3, 4>(C + j, ldc, A, K, Bt + j * ldb, ldb, M, K, bias_at(j), act);
  if (j + 2 <= N) {
    dots_columns<4, 2>(C + j, ldc, A, K, Bt + j * ldb, ldb, M, K, bias_at(j), act);
    j += 2;
  }
  if (j < N) dots_columns<8, 1>(C + j, ldc, A, K, Bt + j * ldb, ldb, M, K, bias_at(j), act);
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
