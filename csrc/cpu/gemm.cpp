// CPU GEMM in the BLIS shape: the K×N block of op(B) is packed into NR-wide
// slivers, the M×K block of op(A) into MR-tall slivers, and a register-tiled
// MR×NR micro-kernel (AVX2+FMA when the CPU has it) runs over the packed data.
// Transposes are absorbed by the packing routines (strided reads), so all four
// combinations run the same micro-kernel. Bias and activation are applied in
// the micro-kernel's store after the last K block (the fused epilogue).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "avx2.h"
#include "fusednn/cpu.h"
#include "threads.h"

namespace fusednn {
namespace cpu {

namespace {

constexpr int MR = 6;
constexpr int NR = 16;
// Sized for Zen 3 (32 KiB L1d, 512 KiB L2 per core): a KC×NR sliver of B
// (16 KiB) stays in L1 while the MC×KC block of A (144 KiB) streams from L2.
constexpr int KC = 256;
constexpr int MC = 144;
constexpr int NC = 3072;
// Below this many multiply-adds a product runs on one thread. Splitting the
// seed MLP's 32x64·64x64 products over both cores made fit(epochs=100) slower
// (75 ms against 45 ms): each step's activations then bounce between the two
// cores' private caches, which costs more than the halved arithmetic saves.
constexpr double kParallelMinFlops = 1 << 21;

// avx2::gemm_small_k's limit on K and N
constexpr int kSmallK = 16;

// A strided view of a matrix: element (i, j) is p[i*rs + j*cs].
struct View {
  const float* p;
  long rs, cs;
  const float* at(long i, long j) const { return p + i * rs + j * cs; }
};

float* aligned_floats(std::size_t n) {
  void* q = std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
  if (!q) throw std::bad_alloc();
  return static_cast<float*>(q);
}

// Per-thread packing buffers, allocated once and reused by every call.
struct PackBuffers {
  float* a = nullptr;
  float* b = nullptr;
  PackBuffers() : a(aligned_floats(std::size_t(MC) * KC)), b(aligned_floats(std::size_t(KC) * (NC + NR))) {}
  ~PackBuffers() {
    std::free(a);
    std::free(b);
  }
};
PackBuffers& buffers() {
  static thread_local PackBuffers buf;
  return buf;
}

// Pack rows [0, mc) × cols [0, kc) of op(A) into MR-tall slivers, each stored
// k-major (MR consecutive floats per k), zero-padding the last sliver.
void pack_a(float* dst, View a, int mc, int kc) {
  for (int i0 = 0; i0 < mc; i0 += MR) {
    const int mr = std::min(MR, mc - i0);
    if (a.rs == 1 && mr == MR) {  // op(A) columns are contiguous (A stored transposed)
      for (int k = 0; k < kc; ++k) {
        std::memcpy(dst, a.at(i0, k), MR * sizeof(float));
        dst += MR;
      }
    } else if (a.rs == 1) {
      for (int k = 0; k < kc; ++k) {
        const float* src = a.at(i0, k);
        int i = 0;
        for (; i < mr; ++i) dst[i] = src[i];
        for (; i < MR; ++i) dst[i] = 0.f;
        dst += MR;
      }
    } else {
      const float* rows[MR];
      for (int i = 0; i < MR; ++i) rows[i] = a.at(i0 + std::min(i, mr - 1), 0);
      for (int k = 0; k < kc; ++k) {
        for (int i = 0; i < MR; ++i) dst[i] = i < mr ? rows[i][k * a.cs] : 0.f;
        dst += MR;
      }
    }
  }
}

// Pack rows [0, kc) × cols [0, nc) of op(B) into NR-wide slivers, each stored
// k-major (NR consecutive floats per k), zero-padding the last sliver.
void pack_b(float* dst, View b, int kc, int nc) {
  for (int j0 = 0; j0 < nc; j0 += NR) {
    const int nr = std::min(NR, nc - j0);
    if (b.cs == 1 && nr == NR) {  // rows of op(B) are contiguous
      for (int k = 0; k < kc; ++k) {
        std::memcpy(dst, b.at(k, j0), NR * sizeof(float));
        dst += NR;
      }
    } else if (b.cs == 1) {
      for (int k = 0; k < kc; ++k) {
        const float* src = b.at(k, j0);
        int j = 0;
        for (; j < nr; ++j) dst[j] = src[j];
        for (; j < NR; ++j) dst[j] = 0.f;
        dst += NR;
      }
    } else {  // B stored transposed: each column of op(B) is contiguous in k
#ifdef FUSEDNN_HAVE_AVX2_TU
      if (nr == NR && b.rs == 1 && use_avx2()) {  // 8×8 register transposes
        avx2::pack_b_transposed_16(dst, b.at(0, j0), b.cs, kc);
        dst += std::size_t(kc) * NR;
        continue;
      }
#endif
      for (int j = 0; j < nr; ++j) {
        const float* src = b.at(0, j0 + j);
        for (int k = 0; k < kc; ++k) dst[k * NR + j] = src[k * b.rs];
      }
      for (int j = nr; j < NR; ++j)
        for (int k = 0; k < kc; ++k) dst[k * NR + j] = 0.f;
      dst += std::size_t(kc) * NR;
    }
  }
}

float apply_act(float v, Act act) {
  switch (act) {
    case Act::relu: return v < 0.f ? 0.f : v;  // NaN propagates, as np.maximum
    case Act::sigmoid: return 1.f / (1.f + std::exp(-v));
    case Act::tanh: return std::tanh(v);
    default: return v;
  }
}

// Portable micro-kernel with the same contract as avx2::gemm_ukernel_6x16.
void ukernel_portable(int kc, const float* A, long rsa, long csa, const float* B, long rsb, float* C,
                      long ldc, int mr, int nr, bool accumulate, bool final, const float* bias,
                      Act act) {
  float acc[MR][NR] = {};
  for (int k = 0; k < kc; ++k) {
    const float* b = B + k * rsb;
    for (int i = 0; i < MR; ++i) {
      const float a = A[i * rsa + k * csa];
      for (int j = 0; j < NR; ++j) acc[i][j] += a * b[j];
    }
  }
  for (int i = 0; i < mr; ++i) {
    float* c = C + i * ldc;
    for (int j = 0; j < nr; ++j) {
      float v = acc[i][j];
      if (accumulate) v += c[j];
      if (final) {
        if (bias) v += bias[j];
        v = apply_act(v, act);
      }
      c[j] = v;
    }
  }
}

using Ukernel = void (*)(int, const float*, long, long, const float*, long, float*, long, int, int,
                         bool, bool, const float*, Act);

Ukernel select_ukernel() {
#ifdef FUSEDNN_HAVE_AVX2_TU
  if (use_avx2()) return avx2::gemm_ukernel_6x16;
#endif
  return ukernel_portable;
}

// Products this small are read in place instead of packed: their operands sit
// in L1/L2 anyway, and packing would cost as much as the arithmetic.
bool small_product(int M, int N, int K) {
  // With a single sliver of columns each sliver of A is read once: packing it
  // would only add a pass.
  return K <= KC && long(K) * N <= 32768 && (N <= NR || long(M) * K <= 32768);
}

// C[M,N] = epilogue(op(A)·op(B)) on one thread.
void gemm_serial(float* C, long ldc, View a, View b, int M, int N, int K, const float* bias,
                 Act act) {
  const Ukernel uk = select_ukernel();
  PackBuffers& buf = buffers();
  const bool direct = small_product(M, N, K);
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = std::min(KC, K - pc);
      const bool first = pc == 0, final = pc + kc == K;
      // Direct B: full slivers read op(B)'s rows in place (needs unit column
      // stride); only a partial last sliver is packed, at the start of buf.b.
      const bool b_direct = direct && b.cs == 1;
      if (b_direct) {
        const int tail = nc % NR;
        if (tail) pack_b(buf.b, View{b.at(pc, jc + nc - tail), b.rs, b.cs}, kc, tail);
      } else {
        pack_b(buf.b, View{b.at(pc, jc), b.rs, b.cs}, kc, nc);
      }
      for (int ic = 0; ic < M; ic += MC) {
        const int mc = std::min(MC, M - ic);
        if (direct) {  // only a partial last sliver of A is packed
          const int tail = mc % MR;
          if (tail) pack_a(buf.a, View{a.at(ic + mc - tail, pc), a.rs, a.cs}, tail, kc);
        } else {
          pack_a(buf.a, View{a.at(ic, pc), a.rs, a.cs}, mc, kc);
        }
        for (int jr = 0; jr < nc; jr += NR) {
          const int nr = std::min(NR, nc - jr);
          const float* bp;
          long rsb = NR;
          if (b_direct && nr == NR) {
            bp = b.at(pc, jc + jr);
            rsb = b.rs;
          } else {
            bp = b_direct ? buf.b : buf.b + std::size_t(jr) * kc;
          }
          const float* bias_j = bias ? bias + jc + jr : nullptr;
          for (int ir = 0; ir < mc; ir += MR) {
            const int mr = std::min(MR, mc - ir);
            float* c = C + long(ic + ir) * ldc + jc + jr;
#ifdef FUSEDNN_HAVE_AVX2_TU
            if (nr <= 8 && ir + 2 * MR <= mc && use_avx2()) {  // two full slivers at once
              const bool in_place = direct;  // full slivers are read in place when direct
              const float* a0 = in_place ? a.at(ic + ir, pc) : buf.a + std::size_t(ir) * kc;
              const float* a1 = in_place ? a.at(ic + ir + MR, pc) : buf.a + std::size_t(ir + MR) * kc;
              avx2::gemm_ukernel_12x8(kc, a0, a1, in_place ? a.rs : 1, in_place ? a.cs : MR, bp, rsb, c, ldc, nr,
                                      !first, final, bias_j, act);
              ir += MR;
              continue;
            }
#endif
            if (direct && mr == MR)
              uk(kc, a.at(ic + ir, pc), a.rs, a.cs, bp, rsb, c, ldc, mr, nr, !first, final, bias_j, act);
            else
              uk(kc, direct ? buf.a : buf.a + std::size_t(ir) * kc, 1, MR, bp, rsb, c, ldc, mr, nr,
                 !first, final, bias_j, act);
          }
        }
      }
    }
  }
}

// Multiply-adds the micro-kernels issue for an M×N output: MR-row slivers,
// 16-wide column slivers, and a last sliver of at most 8 columns (the 6×8
// kernel).
long tiled_cost(int M, int N) {
  const long rows = long(M + MR - 1) / MR * MR;
  const int tail = N % NR;
  // a sliver of at most 8 columns runs on the 12×8 kernel (6×8 for a last odd
  // sliver of rows), at about the 6×16 kernel's rate per lane
  return rows * (long(N / NR) * NR + (tail == 0 ? 0 : tail <= 8 ? 8 : NR));
}

// A narrow output (a few classes, or a weight gradient of a few input
// features) wastes most of each 6×16 tile; its transpose Cᵀ = op(B)ᵀ·op(A)ᵀ
// tiles with far less padding (10×200 as 12×200 instead of 204×16). Worth it
// when that saves a fifth of the work and K is long enough for the extra pass
// that writes Cᵀ back transposed (with the epilogue) to be small beside it.
bool transposed_pays(int M, int N, int K) {
  return K >= 32 && long(M) * N <= 65536 && 5 * tiled_cost(N, M) < 4 * tiled_cost(M, N);
}

// C = epilogue(op(A)·op(B)) computed as Cᵀ = op(B)ᵀ·op(A)ᵀ into a scratch
// buffer (the swapped operands are the same memory with row and column
// strides exchanged), then copied back transposed, bias and activation after.
void gemm_transposed(float* C, View a, View b, int M, int N, int K, const float* bias, Act act) {
  static thread_local std::vector<float> scratch;
  scratch.resize(std::size_t(M) * N);
  float* T = scratch.data();
  gemm_serial(T, M, View{b.p, b.cs, b.rs}, View{a.p, a.cs, a.rs}, N, M, K, nullptr, Act::linear);
  constexpr int kBlock = 32;  // blocks of the transpose stay in L1 on both sides
  for (int i0 = 0; i0 < M; i0 += kBlock)
    for (int j0 = 0; j0 < N; j0 += kBlock) {
      const int i1 = std::min(M, i0 + kBlock), j1 = std::min(N, j0 + kBlock);
      for (int i = i0; i < i1; ++i)
        for (int j = j0; j < j1; ++j) C[long(i) * N + j] = T[long(j) * M + i];
    }
  if (bias)
    bias_act(C, C, bias, std::size_t(M), std::size_t(N), act);
  else if (act != Act::linear)
    act_forward(C, C, std::size_t(M) * std::size_t(N), act);
}

// N == 1 (a regression model's output layer and its weight gradient): a
// matrix-vector product. The 6×16 micro-kernel would waste 15/16 of its work
// and pack a 16-wide panel for one column.
void gemm_n1(float* C, const float* A, const float* B, int M, int K, bool ta, const float* bias, Act act) {
#ifdef FUSEDNN_HAVE_AVX2_TU
  if (use_avx2()) {
    avx2::gemm_n1(C, A, B, M, K, ta);
  } else
#endif
  {
    for (int i = 0; i < M; ++i) {
      float s = 0.f;
      for (int k = 0; k < K; ++k) s += (ta ? A[long(k) * M + i] : A[long(i) * K + k]) * B[k];
      C[i] = s;
    }
  }
  if (bias || act != Act::linear)
    for (int i = 0; i < M; ++i) C[i] = apply_act(C[i] + (bias ? bias[0] : 0.f), act);
}

// K == 0: the product is zero, so C is the epilogue of zero.
void fill_epilogue(float* C, int M, int N, const float* bias, Act act) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) C[long(i) * N + j] = apply_act(bias ? bias[j] : 0.f, act);
}

}  // namespace

void matmul(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb,
            const float* bias, Act act) {
  if (M <= 0 || N <= 0) return;
  if (!act_in_gemm_epilogue(act)) {  // the newer activations: one elementwise pass after the product
    matmul(C, A, B, M, N, K, ta, tb, bias, Act::linear);
    act_forward(C, C, std::size_t(M) * std::size_t(N), act);
    return;
  }
  if (K <= 0) {
    fill_epilogue(C, M, N, bias, act);
    return;
  }
  if (N == 1 && double(M) * K < kParallelMinFlops) {  // B is K×1 or 1×K: contiguous either way
    gemm_n1(C, A, B, M, K, ta, bias, act);
    return;
  }
  const View a = ta ? View{A, 1, M} : View{A, K, 1};
  const View b = tb ? View{B, 1, K} : View{B, N, 1};
#ifdef FUSEDNN_HAVE_AVX2_TU
  // K == 1: an outer product, memory-bound on writing C; the tiled kernels would
  // spend their time in per-tile set-up and epilogues around a single k step.
  if (K == 1 && double(M) * N < kParallelMinFlops && use_avx2()) {
    avx2::gemm_k1(C, A, a.rs, B, M, N, bias, act);  // op(B)'s one row is contiguous either way
    return;
  }
  // K under 16 and N under 16 but not 8 (the products of a few tail units or classes:
  // 100×10 with K = 4 took 1.06 us on half-empty tiles, 0.34 here): four rows at a time,
  // no tiles. Whole 8-wide tiles, and the dot products from K = 16, stay faster.
  if (K < kSmallK && N < kSmallK && N % 8 != 0 && !ta && double(M) * N * K < kParallelMinFlops && use_avx2()) {
    avx2::gemm_small_k(C, A, K, B, b.rs, b.cs, M, N, K, bias, act);
    return;
  }
#endif
  int nt = num_threads();
  if (double(M) * N * K < kParallelMinFlops) nt = 1;
#ifdef FUSEDNN_HAVE_AVX2_TU
  // A narrow output (an output layer of a few classes), or the last 1..8 columns of a
  // wider one (100 = 96 + 4), on kernels that fill every lane: rows of C in the lanes
  // when op(A) is stored transposed, else dot products (K long enough for their
  // 8-wide chunks to be mostly full): all of 2..7 columns (2-4x faster than the 12×8
  // kernel's half-empty tiles at 100-200 rows), the columns after the first 8 of 9..12
  // (those on the 12×8 kernel, which beats the dots at 8 columns and K < 200). The 6×16
  // and 12×8 tiles would spend half their lanes or more on those columns. (By size, not
  // by thread count, so that the bits do not depend on the thread count.)
  if (double(M) * N * K < kParallelMinFlops && use_avx2() && (ta || K >= 16)) {
    const int head = N <= 12 ? (ta || N < 8 ? 0 : 8) : N % NR <= 8 ? N - N % NR : N;
    if (head < N) {
      if (head > 0) gemm_serial(C, N, a, b, M, head, K, bias, act);
      const float* bias_t = bias ? bias + head : nullptr;
      if (ta)
        avx2::gemm_narrow_lanes(C + head, N, A, M, b.at(0, head), b.rs, b.cs, M, N - head, K, bias_t, act);
      else
        avx2::gemm_narrow_dots(C + head, N, A, b.at(0, head), tb ? K : N, tb, M, N - head, K, bias_t, act);
      return;
    }
  }
#endif
  // Split the larger of M and N into one contiguous range per thread; each
  // range runs the whole blocked algorithm with its own packed panels, so no
  // barrier is needed inside the product.
  const bool split_m = M >= N;
  const int units = split_m ? (M + MR - 1) / MR : (N + NR - 1) / NR;
  nt = std::max(1, std::min(nt, units));
  if (nt == 1) {
    if (transposed_pays(M, N, K))
      gemm_transposed(C, a, b, M, N, K, bias, act);
    else
      gemm_serial(C, N, a, b, M, N, K, bias, act);
    return;
  }
  parallel_for(nt, [&](int t) {
    const int u0 = int(long(units) * t / nt), u1 = int(long(units) * (t + 1) / nt);
    if (split_m) {
      const int m0 = u0 * MR, m1 = std::min(M, u1 * MR);
      if (m1 > m0)
        gemm_serial(C + long(m0) * N, N, View{a.at(m0, 0), a.rs, a.cs}, b, m1 - m0, N, K, bias,
                    act);
    } else {
      const int n0 = u0 * NR, n1 = std::min(N, u1 * NR);
      if (n1 > n0)
        gemm_serial(C + n0, N, a, View{b.at(0, n0), b.rs, b.cs}, M, n1 - n0, K,
                    bias ? bias + n0 : nullptr, act);
    }
  });
}

void matmul_reference(float* C, const float* A, const float* B, int M, int N, int K, bool ta,
                      bool tb, const float* bias, Act act) {
  if (!act_in_gemm_epilogue(act)) {
    matmul_reference(C, A, B, M, N, K, ta, tb, bias, Act::linear);
    if (M > 0 && N > 0) act_forward(C, C, std::size_t(M) * std::size_t(N), act);
    return;
  }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = bias ? bias[j] : 0.0;
      for (int k = 0; k < K; ++k)
        s += double(ta ? A[long(k) * M + i] : A[long(i) * K + k]) *
             double(tb ? B[long(j) * K + k] : B[long(k) * N + j]);
      C[long(i) * N + j] = apply_act(float(s), act);
    }
}

}  // namespace cpu
}  // namespace fusednn
