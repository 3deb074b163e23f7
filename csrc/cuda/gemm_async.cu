// FP32 GEMM variants with a multi-stage cp.async pipeline (sm_80+; on older
// devices and for operands that are not 16-byte aligned with a row pitch that
// is a multiple of 4, the launcher falls back to the register-staged 128x128
// kernel of gemm.cu). Selectable by index like every tile variant of gemm.cu
// (not picked automatically until a device run has timed them).
//
// STAGES K-slices are in flight: global -> shared copies go straight through
// cp.async (no register staging, zero-fill outside the matrix), the block
// waits only for the oldest slice, computes on it, and refills the slot it
// freed. Shared layouts follow the global one, since cp.async cannot
// transpose: an MN-major operand is stored [k][mn] (rows padded by 4 floats;
// fragments read as float4, as in gemm.cu), a K-major one [mn][k] with the
// 16-byte chunks of each row XOR-swizzled by (mn / 4) % (BK / 4). For a K-major
// operand a lane's rows (columns) are interleaved (lane + 4q, not 4 lane + q),
// so the lanes that read one k read consecutive rows: banks 8 apart, and the
// swizzle moves rows 4 apart to the other chunk, so with BK = 8 the 4 (A) or 8
// (B) distinct addresses of a fragment read land in different banks (with
// BK = 16 rows are 16 floats apart and two of them share a bank: 2-way). Blocks are ordered in groups of kGroupM tile rows so that
// consecutive blocks share panels of A and B in L2.
#include <cstdint>

#include "activation.cuh"
#include "gemm_common.cuh"

namespace fusednn {
namespace cuda {
namespace detail {

namespace {

constexpr int kGroupM = 8;

template <int BM_, int BN_, int BK_, int TM_, int TN_, int STAGES_>
struct AsyncTiling {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_, STAGES = STAGES_;
  // One block per multiprocessor: capping 8x8-per-lane tiles at 128 registers (two
  // blocks) spills 100-540 bytes per thread (ptxas, sm_90), so the pipeline depth,
  // not a second block, hides the latency.
  static constexpr int MINB = 1;
  static constexpr int LY = 4, LX = 8;
  static constexpr int WM = LY * TM, WN = LX * TN;
  static constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN;
  static constexpr int THREADS = WARPS_M * WARPS_N * 32;
  static_assert(BM % WM == 0 && BN % WN == 0 && TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "tile shape");
};

// One operand's shared layout for a K-slice of BMN x BK.
template <bool KMAJOR, int BMN, int BK>
struct Layout {
  static constexpr int LD = KMAJOR ? BK : BMN + 4;
  static constexpr int SIZE = KMAJOR ? BMN * BK : BK * LD;
  static constexpr int CHUNKS = BK / 4;  // 16-byte chunks per K-major row
  // Float offset of element (mn, k); for K-major rows the chunk index is swizzled.
  __device__ __forceinline__ static int at(int mn, int k) {
    if constexpr (KMAJOR) {
      const int chunk = (k / 4) ^ ((mn / 4) % CHUNKS);
      return mn * LD + chunk * 4 + (k % 4);
    } else {
      return k * LD + mn;
    }
  }
};

__device__ __forceinline__ void cp_async16(float* dst, const float* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const int bytes = valid ? 16 : 0;  // 0: nothing is read, the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// Issue the copies of one operand's K-slice starting at k0 (16-byte groups along the
// contiguous direction; rows outside the matrix are zero-filled).
template <bool KMAJOR, int BMN, int BK, int THREADS>
__device__ __forceinline__ void load_slice(float* S, const float* X, long long ld, int dim_mn, int K, int mn0, int k0,
                                           int tid) {
  using Lay = Layout<KMAJOR, BMN, BK>;
  constexpr int kRows = KMAJOR ? BMN : BK;
  constexpr int kGroups = (KMAJOR ? BK : BMN) / 4;
  constexpr int kTotal = kRows * kGroups;
  for (int e = tid; e < kTotal; e += THREADS) {
    const int r = e / kGroups, c = (e % kGroups) * 4;
    const int mn = KMAJOR ? r : c, k = KMAJOR ? c : r;
    const bool valid = mn0 + mn < dim_mn && k0 + k < K;
    const float* src = valid ? (KMAJOR ? X + (long long)(mn0 + mn) * ld + k0 + k : X + (long long)(k0 + k) * ld + mn0 + mn)
                             : X;
    cp_async16(S + Lay::at(mn, k), src, valid);
  }
}

template <class T, bool TA, bool TB>
__global__ void __launch_bounds__(T::THREADS, T::MINB) sgemm_async_kernel(const GemmArgs p) {
// The host launches this only on sm_80+ (cp.async); older targets compile an empty body,
// which keeps their build short.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK, TM = T::TM, TN = T::TN, S = T::STAGES;
  constexpr bool AK = !TA, BKM = TB;  // K-major operands
  using LA = Layout<AK, BM, BK>;
  using LB = Layout<BKM, BN, BK>;
  extern __shared__ __align__(16) float smem[];
  float* As = smem;
  float* Bs = smem + S * LA::SIZE;

  // Grouped block order: kGroupM tile rows walk the tile columns together.
  const int gm = (p.M + BM - 1) / BM, gn = (p.N + BN - 1) / BN;
  const int bid = blockIdx.x;
  const int per_group = kGroupM * gn;
  const int group = bid / per_group, first_m = group * kGroupM;
  const int rows_here = gm - first_m < kGroupM ? gm - first_m : kGroupM;
  const int bm = first_m + (bid % per_group) % rows_here, bn = (bid % per_group) / rows_here;
  const int m0 = bm * BM, n0 = bn * BN;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int ly = lane / T::LX, lx = lane % T::LX;
  const int wm0 = (warp / T::WARPS_N) * T::WM, wn0 = (warp % T::WARPS_N) * T::WN;
  // This lane's i-th row and j-th column in the block tile (see the header comment).
  auto row_of = [&](int i) { return wm0 + (i / 4) * T::LY * 4 + (AK ? ly + T::LY * (i % 4) : ly * 4 + i % 4); };
  auto col_of = [&](int j) { return wn0 + (j / 4) * T::LX * 4 + (BKM ? lx + T::LX * (j % 4) : lx * 4 + j % 4); };

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  // Layout::at's chunk swizzle (mn / 4) % CHUNKS, worked out for this lane's rows and
  // columns so the fragment reads need no per-element index arithmetic: warp tiles
  // start at multiples of 32 rows and 64 columns, so for A's row wm0 + 16i + ly + 4q
  // it is q % CHUNKS (a constant) and for B's column wn0 + 32j + lx + 8q it is
  // (2q + lx / 4) % CHUNKS.
  int bsw[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) bsw[q] = (2 * q + lx / 4) % LB::CHUNKS;
  static_assert(T::WM % 32 == 0 && T::WN % 64 == 0, "the swizzle shortcut assumes these warp tiles");

  const int ktiles = (p.K + BK - 1) / BK;
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (s < ktiles) {
      load_slice<AK, BM, BK, T::THREADS>(As + s * LA::SIZE, p.A, p.lda, p.M, p.K, m0, s * BK, tid);
      load_slice<BKM, BN, BK, T::THREADS>(Bs + s * LB::SIZE, p.B, p.ldb, p.N, p.K, n0, s * BK, tid);
    }
    cp_async_commit();  // an empty group keeps the count uniform
  }

  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<S - 2>();  // slice kt has landed (for this thread) ...
    __syncthreads();         // ... and for every thread; slot (kt - 1) % S is free
    const int nk = kt + S - 1;
    if (nk < ktiles) {
      load_slice<AK, BM, BK, T::THREADS>(As + (nk % S) * LA::SIZE, p.A, p.lda, p.M, p.K, m0, nk * BK, tid);
      load_slice<BKM, BN, BK, T::THREADS>(Bs + (nk % S) * LB::SIZE, p.B, p.ldb, p.N, p.K, n0, nk * BK, tid);
    }
    cp_async_commit();
    const float* as = As + (kt % S) * LA::SIZE;
    const float* bs = Bs + (kt % S) * LB::SIZE;
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM / 4; ++i) {
        if constexpr (AK) {
#pragma unroll
          for (int q = 0; q < 4; ++q)  // the swizzle of row_of(4i + q) is q % CHUNKS (see bsw)
            a[4 * i + q] = as[row_of(4 * i + q) * BK + (((k / 4) ^ (q % LA::CHUNKS)) * 4) + k % 4];
        } else {
          const float4 v = *reinterpret_cast<const float4*>(as + LA::at(row_of(4 * i), k));
          a[4 * i] = v.x, a[4 * i + 1] = v.y, a[4 * i + 2] = v.z, a[4 * i + 3] = v.w;
        }
      }
#pragma unroll
      for (int j = 0; j < TN / 4; ++j) {
        if constexpr (BKM) {
#pragma unroll
          for (int q = 0; q < 4; ++q)
            b[4 * j + q] = bs[col_of(4 * j + q) * BK + (((k / 4) ^ bsw[q]) * 4) + k % 4];
        } else {
          const float4 v = *reinterpret_cast<const float4*>(bs + LB::at(col_of(4 * j), k));
          b[4 * j] = v.x, b[4 * j + 1] = v.y, b[4 * j + 2] = v.z, b[4 * j + 3] = v.w;
        }
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }
  cp_async_wait<0>();

  const int rem_m = p.M - m0, rem_n = p.N - n0;
  float bv[TN];
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int c = col_of(j);
    bv[j] = p.bias != nullptr && c < rem_n ? p.bias[n0 + c] : 0.f;
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = row_of(i);
    if (r >= rem_m) continue;
    float* crow = p.C + (static_cast<long long>(m0) + r) * p.N + n0;
#pragma unroll
    for (int j4 = 0; j4 < TN / 4; ++j4) {
      float v[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) v[q] = act_fwd_rt(acc[i][4 * j4 + q] + bv[4 * j4 + q], p.act);
      const int c = col_of(4 * j4);
      if (!BKM && p.vec_c) {  // 4 consecutive columns
        if (c < rem_n) *reinterpret_cast<float4*>(crow + c) = make_float4(v[0], v[1], v[2], v[3]);
      } else {
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int cq = col_of(4 * j4 + q);
          if (cq < rem_n) crow[cq] = v[q];
        }
      }
    }
  }
#endif
}

template <class T, bool TA, bool TB>
cudaError_t launch_one(const GemmArgs& p, cudaStream_t stream) {
  constexpr int kA = Layout<!TA, T::BM, T::BK>::SIZE, kB = Layout<TB, T::BN, T::BK>::SIZE;
  constexpr int bytes = T::STAGES * (kA + kB) * int(sizeof(float));
  static_assert(bytes <= 227 * 1024, "pipeline does not fit shared memory");
  const long long blocks = (long long)((p.M + T::BM - 1) / T::BM) * ((p.N + T::BN - 1) / T::BN);
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
  cudaError_t e = cudaFuncSetAttribute(sgemm_async_kernel<T, TA, TB>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e != cudaSuccess) return e;
  sgemm_async_kernel<T, TA, TB><<<unsigned(blocks), T::THREADS, bytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

template <int BM, int BN, int BK, int TM, int TN, int STAGES>
cudaError_t launch_sgemm_async(const GemmArgs& p, bool ta, bool tb, cudaStream_t stream) {
  using T = AsyncTiling<BM, BN, BK, TM, TN, STAGES>;
  if (!ta && !tb) return launch_one<T, false, false>(p, stream);
  if (!ta && tb) return launch_one<T, false, true>(p, stream);
  if (ta && !tb) return launch_one<T, true, false>(p, stream);
  return launch_one<T, true, true>(p, stream);
}

template cudaError_t launch_sgemm_async<128, 128, 8, 8, 8, 3>(const GemmArgs&, bool, bool, cudaStream_t);
template cudaError_t launch_sgemm_async<128, 128, 16, 8, 8, 3>(const GemmArgs&, bool, bool, cudaStream_t);
template cudaError_t launch_sgemm_async<128, 128, 8, 8, 8, 4>(const GemmArgs&, bool, bool, cudaStream_t);
template cudaError_t launch_sgemm_async<128, 256, 8, 8, 16, 3>(const GemmArgs&, bool, bool, cudaStream_t);

}  // namespace detail
}  // namespace cuda
}  // namespace fusednn
