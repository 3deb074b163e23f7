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

// The epilogue of a tile whose rows are in acc[i][0..NV): C += (accumulate),
// then bias and act (final). Partial tiles use masked loads and stores, so only
// the mr×nr block the tile owns is read or written (no scratch tile).
template <int NV>
inline void store_tile(float* C, long ldc, const __m256 (&acc)[MR][2], int mr, int nr, bool accumulate,
                       bool final, const float* bias, Act act) {
  const bool full = nr == NV * 8;
  const __m256i m0 = lane_mask(nr, 0), m1 = lane_mask(nr, 8);
  const bool has_bias = final && bias != nullptr;
  __m256 b[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  if (has_bias) {
    b[0] = full ? _mm256_loadu_ps(bias) : _mm256_maskload_ps(bias, m0);
    if (NV == 2) b[1] = full ? _mm256_loadu_ps(bias + 8) : _mm256_maskload_ps(bias + 8, m1);
  }
  for (int i = 0; i < mr; ++i) {
    float* c = C + i * ldc;
    for (int v = 0; v < NV; ++v) {
      const __m256i m = v == 0 ? m0 : m1;
      __m256 x = acc[i][v];
      if (accumulate) x = _mm256_add_ps(x, full ? _mm256_loadu_ps(c + 8 * v) : _mm256_maskload_ps(c + 8 * v, m));
      if (final) {
        if (has_bias) x = _mm256_add_ps(x, b[v]);
        x = act_ps(x, act);
      }
      if (full)
        _mm256_storeu_ps(c + 8 * v, x);
      else
        _mm256_maskstore_ps(c + 8 * v, m, x);
    }
  }
}

// The common epilogue of a whole tile (every row and column owned, one K block: no
// accumulation, bias and act applied), straight-line with the activation fixed at
// compile time: store_tile's loops over a run-time row count keep the accumulators in
// memory and test the options per vector, which cost as much as 10 k steps of the
// tile (~75 cycles; most of the time of the K = 8..30 products of small-input layers).
template <Act A, bool Bias>
__attribute__((always_inline)) inline void put(float* c, __m256 x, __m256 b) {
  if (Bias) x = _mm256_add_ps(x, b);
  _mm256_storeu_ps(c, act_ps(x, A));
}

// Rows of one (NV = 1) or two (NV = 2) vectors: r[2i + v] is row i's vector v.
template <int NV, int Rows, Act A, bool Bias>
__attribute__((always_inline)) inline void put_rows(float* C, long ldc, const __m256* r, __m256 b0, __m256 b1) {
#pragma GCC unroll 12
  for (int i = 0; i < Rows; ++i) {
    put<A, Bias>(C + i * ldc, r[NV * i], b0);
    if (NV == 2) put<A, Bias>(C + i * ldc + 8, r[NV * i + 1], b1);
  }
}

template <int NV, int Rows, bool Bias>
__attribute__((always_inline)) inline void put_rows_act(float* C, long ldc, const __m256* r, __m256 b0, __m256 b1,
                                                        Act act) {
  switch (act) {  // the epilogue's activations (act_in_gemm_epilogue)
    case Act::relu: put_rows<NV, Rows, Act::relu, Bias>(C, ldc, r, b0, b1); break;
    case Act::sigmoid: put_rows<NV, Rows, Act::sigmoid, Bias>(C, ldc, r, b0, b1); break;
    case Act::tanh: put_rows<NV, Rows, Act::tanh, Bias>(C, ldc, r, b0, b1); break;
    default: put_rows<NV, Rows, Act::linear, Bias>(C, ldc, r, b0, b1); break;
  }
}

inline __m256 b0_unused() { return _mm256_setzero_ps(); }

// C = act(r + bias) for a whole tile of Rows rows × 8·NV columns.
template <int NV, int Rows>
__attribute__((always_inline)) inline void store_whole(float* C, long ldc, const __m256* r, const float* bias,
                                                       Act act) {
  if (bias) {
    const __m256 b0 = _mm256_loadu_ps(bias), b1 = NV == 2 ? _mm256_loadu_ps(bias + 8) : b0;
    put_rows_act<NV, Rows, true>(C, ldc, r, b0, b1, act);
  } else {
    put_rows_act<NV, Rows, false>(C, ldc, r, b0_unused(), b0_unused(), act);
  }
}

// nr <= 8: half the tile, half the multiply-adds (an output layer of a few
// classes, or the last columns of a width that is not a multiple of 16).
void ukernel_6x8(int kc, const float* A, long rsa, long csa, const float* B, long rsb, float* C, long ldc,
                 int mr, int nr, bool accumulate, bool final, const float* bias, Act act) {
  __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps(), c2 = _mm256_setzero_ps();
  __m256 c3 = _mm256_setzero_ps(), c4 = _mm256_setzero_ps(), c5 = _mm256_setzero_ps();
  const float* a0 = A;
  const float* a3 = A + 3 * rsa;
  const long r2 = 2 * rsa;
#pragma GCC unroll 4
  for (int k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(B);
    c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0), b0, c0);
    c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + rsa), b0, c1);
    c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + r2), b0, c2);
    c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a3), b0, c3);
    c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a3 + rsa), b0, c4);
    c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a3 + r2), b0, c5);
    a0 += csa;
    a3 += csa;
    B += rsb;
  }
  if (mr == MR && nr == 8 && final && !accumulate) {
    const __m256 r[MR] = {c0, c1, c2, c3, c4, c5};
    store_whole<1, MR>(C, ldc, r, bias, act);
    return;
  }
  const __m256 z = _mm256_setzero_ps();
  const __m256 acc[MR][2] = {{c0, z}, {c1, z}, {c2, z}, {c3, z}, {c4, z}, {c5, z}};
  store_tile<1>(C, ldc, acc, mr, nr, accumulate, final, bias, act);
}
}  // namespace

void gemm_ukernel_12x8(int kc, const float* A0, const float* A1, long rsa, long csa, const float* B, long rsb,
                       float* C, long ldc, int nr, bool accumulate, bool final, const float* bias, Act act) {
  // Two full 6-row slivers against one sliver of at most 8 columns: twelve
  // independent accumulators keep both FMA pipes busy, which the six of the
  // 6×8 kernel cannot (FMA latency 4 × 2 pipes needs 8 chains).
  __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps(), c2 = _mm256_setzero_ps();
  __m256 c3 = _mm256_setzero_ps(), c4 = _mm256_setzero_ps(), c5 = _mm256_setzero_ps();
  __m256 c6 = _mm256_setzero_ps(), c7 = _mm256_setzero_ps(), c8 = _mm256_setzero_ps();
  __m256 c9 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  const float* a0 = A0;
  const float* a3 = A0 + 3 * rsa;
  const float* a6 = A1;
  const float* a9 = A1 + 3 * rsa;
  const long r2 = 2 * rsa;
#pragma GCC unroll 2
  for (int k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(B);
    c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0), b0, c0);
    c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + rsa), b0, c1);
    c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + r2), b0, c2);
    c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a3), b0, c3);
    c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a3 + rsa), b0, c4);
    c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a3 + r2), b0, c5);
    c6 = _mm256_fmadd_ps(_mm256_broadcast_ss(a6), b0, c6);
    c7 = _mm256_fmadd_ps(_mm256_broadcast_ss(a6 + rsa), b0, c7);
    c8 = _mm256_fmadd_ps(_mm256_broadcast_ss(a6 + r2), b0, c8);
    c9 = _mm256_fmadd_ps(_mm256_broadcast_ss(a9), b0, c9);
    c10 = _mm256_fmadd_ps(_mm256_broadcast_ss(a9 + rsa), b0, c10);
    c11 = _mm256_fmadd_ps(_mm256_broadcast_ss(a9 + r2), b0, c11);
    a0 += csa;
    a3 += csa;
    a6 += csa;
    a9 += csa;
    B += rsb;
  }
  if (nr == 8 && final && !accumulate) {
    const __m256 r[2 * MR] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};
    store_whole<1, 2 * MR>(C, ldc, r, bias, act);
    return;
  }
  const __m256 z = _mm256_setzero_ps();
  const __m256 top[MR][2] = {{c0, z}, {c1, z}, {c2, z}, {c3, z}, {c4, z}, {c5, z}};
  const __m256 bottom[MR][2] = {{c6, z}, {c7, z}, {c8, z}, {c9, z}, {c10, z}, {c11, z}};
  store_tile<1>(C, ldc, top, MR, nr, accumulate, final, bias, act);
  store_tile<1>(C + MR * ldc, ldc, bottom, MR, nr, accumulate, final, bias, act);
}

void gemm_ukernel_6x16(int kc, const float* A, long rsa, long csa, const float* B, long rsb, float* C,
                       long ldc, int mr, int nr, bool accumulate, bool final, const float* bias,
                       Act act) {
  if (nr <= 8) {
    ukernel_6x8(kc, A, rsa, csa, B, rsb, C, ldc, mr, nr, accumulate, final, bias, act);
    return;
  }
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
  if (mr == MR && nr == NR && final && !accumulate) {
    const __m256 r[2 * MR] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    store_whole<2, MR>(C, ldc, r, bias, act);
    return;
  }
  const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  store_tile<2>(C, ldc, acc, mr, nr, accumulate, final, bias, act);
}

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

void gemm_k1(float* C, const float* a, long sa, const float* b, int M, int N, const float* bias, Act act) {
  const __m256i tail = lane_mask(N % 8, 0);
  const int n8 = N - N % 8;
  for (int i = 0; i < M; ++i) {
    const __m256 ai = _mm256_broadcast_ss(a + i * sa);
    float* c = C + long(i) * N;
    int j = 0;
    for (; j < n8; j += 8) {
      __m256 v = bias ? _mm256_fmadd_ps(ai, _mm256_loadu_ps(b + j), _mm256_loadu_ps(bias + j))
                      : _mm256_mul_ps(ai, _mm256_loadu_ps(b + j));
      _mm256_storeu_ps(c + j, act_ps(v, act));
    }
    if (j < N) {
      __m256 v = _mm256_mul_ps(ai, _mm256_maskload_ps(b + j, tail));
      if (bias) v = _mm256_add_ps(v, _mm256_maskload_ps(bias + j, tail));
      _mm256_maskstore_ps(c + j, tail, act_ps(v, act));
    }
  }
}

namespace {
// c[0, 8V) = (columns [0, 8V) of the K×M matrix A)ᵀ b, one accumulator per vector of outputs
template <int V>
void n1_pass(float* c, const float* A, const float* b, int M, int K) {
  __m256 acc[V];
  for (int v = 0; v < V; ++v) acc[v] = _mm256_setzero_ps();
  const float* row = A;
  for (int k = 0; k < K; ++k, row += M) {
    const __m256 bk = _mm256_broadcast_ss(b + k);
    for (int v = 0; v < V; ++v) acc[v] = _mm256_fmadd_ps(bk, _mm256_loadu_ps(row + 8 * v), acc[v]);
  }
  for (int v = 0; v < V; ++v) _mm256_storeu_ps(c + 8 * v, acc[v]);
}
}  // namespace

void gemm_n1(float* c, const float* A, const float* b, int M, int K, bool ta) {
  if (ta) {  // c = A^T b, A stored K×M: accumulate b[k] * (row k of A)
    // 96, then 32 outputs per pass (12 or 4 independent multiply-add chains: 96 keep both
    // FMA pipes busy, 32 are bound by the FMA latency), each output's sum in k order; then
    // 8 at a time with the k range split over two chains; the last partial 8 use masked
    // loads and stores.
    int i = 0;
    for (; i + 96 <= M; i += 96) n1_pass<12>(c + i, A + i, b, M, K);
    for (; i + 32 <= M; i += 32) n1_pass<4>(c + i, A + i, b, M, K);
    for (; i < M; i += 8) {
      const bool full = i + 8 <= M;
      const __m256i m = lane_mask(M - i, 0);
      __m256 e = _mm256_setzero_ps(), o = _mm256_setzero_ps();
      const float* row = A + i;
      int k = 0;
      for (; k + 2 <= K; k += 2, row += 2 * long(M)) {
        const __m256 x0 = full ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, m);
        const __m256 x1 = full ? _mm256_loadu_ps(row + M) : _mm256_maskload_ps(row + M, m);
        e = _mm256_fmadd_ps(_mm256_broadcast_ss(b + k), x0, e);
        o = _mm256_fmadd_ps(_mm256_broadcast_ss(b + k + 1), x1, o);
      }
      if (k < K) e = _mm256_fmadd_ps(_mm256_broadcast_ss(b + k), full ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, m), e);
      const __m256 r = _mm256_add_ps(e, o);
      if (full)
        _mm256_storeu_ps(c + i, r);
      else
        _mm256_maskstore_ps(c + i, m, r);
    }
    return;
  }
  // c[i] = dot(row i of A, b): four rows at a time (eight independent multiply-add chains,
  // b's chunk loaded once for the four), each row's 8-wide chunks alternating between two
  // accumulators, the last K % 8 through a masked load; every row summed in the same order
  // (the same tree below), whichever group it falls in.
  const __m256i tail = lane_mask(K % 8, 0);
  const int k16 = K / 16 * 16, k8 = K / 8 * 8;
  int i = 0;
  for (; i + 4 <= M; i += 4) {
    const float *a0 = A + long(i) * K, *a1 = a0 + K, *a2 = a1 + K, *a3 = a2 + K;
    __m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, e3 = e0, o0 = e0, o1 = e0, o2 = e0, o3 = e0;
    int k = 0;
    for (; k < k16; k += 16) {
      const __m256 be = _mm256_loadu_ps(b + k), bo = _mm256_loadu_ps(b + k + 8);
      e0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + k), be, e0);
      e1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + k), be, e1);
      e2 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + k), be, e2);
      e3 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + k), be, e3);
      o0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + k + 8), bo, o0);
      o1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + k + 8), bo, o1);
      o2 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + k + 8), bo, o2);
      o3 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + k + 8), bo, o3);
    }
    if (k < k8) {  // an even chunk left
      const __m256 be = _mm256_loadu_ps(b + k);
      e0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + k), be, e0);
      e1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + k), be, e1);
      e2 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + k), be, e2);
      e3 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + k), be, e3);
      k += 8;
    }
    if (k < K) {  // the masked last chunk: into o after an even chunk, else into e
      const __m256 bt = _mm256_maskload_ps(b + k, tail);
      const bool odd = (k / 8) % 2;
      __m256 &t0 = odd ? o0 : e0, &t1 = odd ? o1 : e1, &t2 = odd ? o2 : e2, &t3 = odd ? o3 : e3;
      t0 = _mm256_fmadd_ps(_mm256_maskload_ps(a0 + k, tail), bt, t0);
      t1 = _mm256_fmadd_ps(_mm256_maskload_ps(a1 + k, tail), bt, t1);
      t2 = _mm256_fmadd_ps(_mm256_maskload_ps(a2 + k, tail), bt, t2);
      t3 = _mm256_fmadd_ps(_mm256_maskload_ps(a3 + k, tail), bt, t3);
    }
    // ((x0+x1)+(x2+x3)) + ((x4+x5)+(x6+x7)) of each row's x = e + o, four rows at once
    const __m256 h01 = _mm256_hadd_ps(_mm256_add_ps(e0, o0), _mm256_add_ps(e1, o1));
    const __m256 h23 = _mm256_hadd_ps(_mm256_add_ps(e2, o2), _mm256_add_ps(e3, o3));
    const __m256 h = _mm256_hadd_ps(h01, h23);
    _mm_storeu_ps(c + i, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
  for (; i < M; ++i) {
    const float* a = A + long(i) * K;
    __m256 e = _mm256_setzero_ps(), o = e;
    int k = 0;
    for (; k < k16; k += 16) {
      e = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), e);
      o = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), o);
    }
    if (k < k8) {
      e = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), e);
      k += 8;
    }
    if (k < K) {
      __m256& t = (k / 8) % 2 ? o : e;
      t = _mm256_fmadd_ps(_mm256_maskload_ps(a + k, tail), _mm256_maskload_ps(b + k, tail), t);
    }
    const __m256 x = _mm256_add_ps(e, o);
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(x, x), x);  // lane 0: (x0+x1)+(x2+x3), lane 4: (x4+x5)+(x6+x7)
    c[i] = _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
