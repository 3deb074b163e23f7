// FP32 GEMM with a fused bias + activation epilogue, the twin of cpu/gemm.cpp.
//
// Tiled kernel: a block computes a BM×BN tile of C, walking K in BK-wide
// slices. Each slice of op(A) and op(B) is fetched into registers (128-bit
// loads where alignment allows) while the block computes on the previous
// slice from shared memory, then written to the other of two shared-memory
// buffers: one barrier per slice. Shared memory holds both operands
// MN-contiguous ([k][m] and [k][n], rows padded by 4 floats so the transposing
// stores of K-major operands do not conflict), so a thread reads its
// fragments as float4s. A warp is 4×8 lanes; a lane owns TM×TN outputs made of
// (TM/4)×(TN/4) 4×4 sub-tiles spaced 16 rows and 32 columns apart, so the 8
// lanes of a row read 128 contiguous bytes of B and the 4 lanes of a column
// broadcast-read A: fragment reads have no bank conflicts.
#include <algorithm>

#include "activation.cuh"
#include "elementwise.cuh"
#include "gemm_common.cuh"

namespace fusednn {
namespace cuda {

namespace {

using detail::GemmArgs;

template <int BM_, int BN_, int BK_, int TM_, int TN_, int MINB_>
struct Tiling {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_, MINB = MINB_;
  static constexpr int LY = 4, LX = 8;  // lanes of a warp along M and N
  static constexpr int WM = LY * TM, WN = LX * TN;
  static constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN;
  static constexpr int THREADS = WARPS_M * WARPS_N * 32;
  static constexpr int LDA = BM + 4, LDB = BN + 4;
  static_assert(BM % WM == 0 && BN % WN == 0 && TM % 4 == 0 && TN % 4 == 0, "tile shape");
};

template <class T, bool TA, bool TB>
__global__ void __launch_bounds__(T::THREADS, T::MINB) sgemm_kernel(const GemmArgs p) {
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK, TM = T::TM, TN = T::TN;
  constexpr int LDA = T::LDA, LDB = T::LDB;
  __shared__ __align__(16) float As[2][BK * LDA];
  __shared__ __align__(16) float Bs[2][BK * LDB];

  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  detail::PanelLoader<BM, BK, T::THREADS, !TA, false, LDA, false> la(p.A, p.lda, p.M, p.K, m0, tid);
  detail::PanelLoader<BN, BK, T::THREADS, TB, false, LDB, false> lb(p.B, p.ldb, p.N, p.K, n0, tid);

  const int warp = tid / 32, lane = tid % 32;
  // This lane's first row and column inside the block tile.
  const int tm = (warp / T::WARPS_N) * T::WM + (lane / T::LX) * 4;
  const int tn = (warp % T::WARPS_N) * T::WN + (lane % T::LX) * 4;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  const int ktiles = (p.K + BK - 1) / BK;
  if (ktiles > 0) {
    la.load(0, p.vec_a);
    lb.load(0, p.vec_b);
    la.store(As[0]);
    lb.store(Bs[0]);
  }
  __syncthreads();

  for (int kt = 0; kt < ktiles; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < ktiles;
    // The next slice's global loads are in flight during this slice's math.
    if (more) {
      la.load((kt + 1) * BK, p.vec_a);
      lb.load((kt + 1) * BK, p.vec_b);
    }
    const float* as = As[cur];
    const float* bs = Bs[cur];
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM / 4; ++i) {
        const float4 v = *reinterpret_cast<const float4*>(as + k * LDA + tm + i * T::LY * 4);
        a[4 * i] = v.x, a[4 * i + 1] = v.y, a[4 * i + 2] = v.z, a[4 * i + 3] = v.w;
      }
#pragma unroll
      for (int j = 0; j < TN / 4; ++j) {
        const float4 v = *reinterpret_cast<const float4*>(bs + k * LDB + tn + j * T::LX * 4);
        b[4 * j] = v.x, b[4 * j + 1] = v.y, b[4 * j + 2] = v.z, b[4 * j + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    // The other buffer was last read before the previous barrier.
    if (more) {
      la.store(As[cur ^ 1]);
      lb.store(Bs[cur ^ 1]);
    }
    __syncthreads();
  }

  // Epilogue: bias, activation, store; float4 when C allows it.
  const int rem_m = p.M - m0, rem_n = p.N - n0;
  float bv[TN];
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int c = tn + (j / 4) * T::LX * 4 + j % 4;
    bv[j] = p.bias != nullptr && c < rem_n ? p.bias[n0 + c] : 0.f;
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = tm + (i / 4) * T::LY * 4 + i % 4;
    if (r >= rem_m) continue;
    float* crow = p.C + (static_cast<long long>(m0) + r) * p.N + n0;
#pragma unroll
    for (int j4 = 0; j4 < TN / 4; ++j4) {
      const int c = tn + j4 * T::LX * 4;
      float v[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) v[q] = detail::act_fwd_rt(acc[i][4 * j4 + q] + bv[4 * j4 + q], p.act);
      if (p.vec_c) {
        if (c < rem_n) *reinterpret_cast<float4*>(crow + c) = make_float4(v[0], v[1], v[2], v[3]);
      } else {
#pragma unroll
        for (int q = 0; q < 4; ++q)
          if (c + q < rem_n) crow[c + q] = v[q];
      }
    }
  }
}

template <class T>
cudaError_t launch_sgemm(const GemmArgs& p, bool ta, bool tb, cudaStream_t stream) {
  const unsigned gm = unsigned((p.M + T::BM - 1) / T::BM), gn = unsigned((p.N + T::BN - 1) / T::BN);
  if (gn > 65535u) return cudaErrorInvalidConfiguration;
  const dim3 grid(gm, gn);
  if (!ta && !tb) sgemm_kernel<T, false, false><<<grid, T::THREADS, 0, stream>>>(p);
  if (!ta && tb) sgemm_kernel<T, false, true><<<grid, T::THREADS, 0, stream>>>(p);
  if (ta && !tb) sgemm_kernel<T, true, false><<<grid, T::THREADS, 0, stream>>>(p);
  if (ta && tb) sgemm_kernel<T, true, true><<<grid, T::THREADS, 0, stream>>>(p);
  return cudaGetLastError();
}

struct Variant {
  const char* name;
  int bm, bn, warps;
  bool auto_pick;  // considered by gemm_pick_variant
  cudaError_t (*launch)(const GemmArgs&, bool, bool, cudaStream_t);
};

// Large tiles reuse each loaded value most (8×8 per lane: 16 fragment floats
// per 64 FMAs); small tiles give small products enough blocks to fill the GPU.
// BK = 16 halves the per-slice overhead (loads, stores, barrier) per FMA but
// needs ~150 registers, so one block per multiprocessor: kept for the
// benchmark to weigh against BK = 8 with two blocks.
using T128x128 = Tiling<128, 128, 8, 8, 8, 2>;
using T128x128k16 = Tiling<128, 128, 16, 8, 8, 1>;
using T128x256 = Tiling<128, 256, 8, 8, 16, 1>;
using T128x64 = Tiling<128, 64, 8, 8, 8, 3>;
using T64x64 = Tiling<64, 64, 8, 4, 4, 4>;
using T32x32 = Tiling<32, 32, 8, 4, 4, 8>;
// The cp.async kernels where they can run (sm_80+, 16-byte groups), else the
// register-staged kernel of the same block tile, so every variant takes every input.
template <int BM, int BN, int BK, int TM, int TN, int STAGES>
cudaError_t launch_async(const GemmArgs& p, bool ta, bool tb, cudaStream_t stream) {
  if (compute_major() >= 8 && p.vec_a && p.vec_b)
    return detail::launch_sgemm_async<BM, BN, BK, TM, TN, STAGES>(p, ta, tb, stream);
  if (BN == 256) return launch_sgemm<T128x256>(p, ta, tb, stream);
  return launch_sgemm<T128x128>(p, ta, tb, stream);
}

constexpr Variant kVariants[] = {
    {"128x128x8/8x8", 128, 128, T128x128::THREADS / 32, true, launch_sgemm<T128x128>},
    {"128x128x16/8x8", 128, 128, T128x128k16::THREADS / 32, false, launch_sgemm<T128x128k16>},
    {"128x256x8/8x16", 128, 256, T128x256::THREADS / 32, true, launch_sgemm<T128x256>},
    {"128x64x8/8x8", 128, 64, T128x64::THREADS / 32, true, launch_sgemm<T128x64>},
    {"64x64x8/4x4", 64, 64, T64x64::THREADS / 32, true, launch_sgemm<T64x64>},
    {"32x32x8/4x4", 32, 32, T32x32::THREADS / 32, true, launch_sgemm<T32x32>},
    // cp.async pipelines (gemm_async.cu), selectable only until timed on a device
    {"async128x128x8/8x8s3", 128, 128, 8, false, launch_async<128, 128, 8, 8, 8, 3>},
    {"async128x128x8/8x8s4", 128, 128, 8, false, launch_async<128, 128, 8, 8, 8, 4>},
    {"async128x128x16/8x8s3", 128, 128, 8, false, launch_async<128, 128, 16, 8, 8, 3>},
    {"async128x256x8/8x16s3", 128, 256, 8, false, launch_async<128, 256, 8, 8, 16, 3>},
};
constexpr int kNumVariants = int(sizeof(kVariants) / sizeof(kVariants[0]));
constexpr int kSmallestVariant = 5;  // 32x32: small products
static_assert(kVariants[kSmallestVariant].bm == 32, "the smallest tile's index");

// One output per thread, double accumulation: slow and obviously right.
__global__ void gemm_reference_kernel(const GemmArgs p, bool ta, bool tb) {
  const long long total = static_cast<long long>(p.M) * p.N;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long o = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += stride) {
    const long long i = o / p.N, j = o % p.N;
    double s = p.bias ? p.bias[j] : 0.0;
    for (long long k = 0; k < p.K; ++k)
      s += double(ta ? p.A[k * p.M + i] : p.A[i * p.K + k]) *
           double(tb ? p.B[j * p.K + k] : p.B[k * p.N + j]);
    p.C[o] = detail::act_fwd_rt(float(s), p.act);
  }
}

GemmArgs make_args(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb,
                   const float* bias, Act act) {
  GemmArgs p;
  p.C = C, p.A = A, p.B = B, p.bias = bias;
  p.M = M, p.N = N, p.K = K;
  p.lda = ta ? M : K;
  p.ldb = tb ? K : N;
  p.act = act;
  p.vec_a = detail::aligned16(A) && p.lda % 4 == 0;
  p.vec_b = detail::aligned16(B) && p.ldb % 4 == 0;
  p.vec_c = detail::aligned16(C) && N % 4 == 0;
  return p;
}

}  // namespace

int gemm_variant_count() { return kNumVariants; }

const char* gemm_variant_name(int variant) {
  return variant >= 0 && variant < kNumVariants ? kVariants[variant].name : "";
}

int gemm_pick_variant(int M, int N, int K) {
  // The largest tile that still fills about one wave of blocks (one per
  // multiprocessor); smaller products take the smallest tile, whose many
  // blocks hide latency best. Measured on an H200 (benchmarks/RESULTS.md):
  // 4096^3 is fastest with 128x256, 1024^3 with 128x64, 256^3 and the MLP
  // shapes with 32x32.
  static constexpr int kBySize[] = {2, 0, 3, 4};  // tile area, largest first
  const long long wave = 9LL * sm_count() / 10;
  for (int v : kBySize) {
    const Variant& t = kVariants[v];
    if (!t.auto_pick) continue;
    const long long blocks = ((M + t.bm - 1LL) / t.bm) * ((N + t.bn - 1LL) / t.bn);
    if (blocks >= wave) return v;
  }
  return kSmallestVariant;
}

bool tf32_supported() { return compute_major() >= 8; }

cudaError_t matmul(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb,
                   const float* bias, Act act, cudaStream_t stream, int variant, bool tf32) {
  if (M < 0 || N < 0 || K < 0 || variant < -1 || variant >= kNumVariants) return cudaErrorInvalidValue;
  if (M == 0 || N == 0) return cudaSuccess;
  const GemmArgs p = make_args(C, A, B, M, N, K, ta, tb, bias, act);
  if (tf32 && K > 0 && tf32_supported()) return detail::launch_gemm_tf32(p, ta, tb, stream);
  if (variant < 0) variant = gemm_pick_variant(M, N, K);
  return kVariants[variant].launch(p, ta, tb, stream);
}

cudaError_t matmul_reference(float* C, const float* A, const float* B, int M, int N, int K, bool ta,
                             bool tb, const float* bias, Act act, cudaStream_t stream) {
  if (M < 0 || N < 0 || K < 0) return cudaErrorInvalidValue;
  if (M == 0 || N == 0) return cudaSuccess;
  const GemmArgs p = make_args(C, A, B, M, N, K, ta, tb, bias, act);
  const long long total = static_cast<long long>(M) * N;
  const long long blocks = std::min<long long>((total + 255) / 256, 65536);
  gemm_reference_kernel<<<unsigned(blocks), 256, 0, stream>>>(p, ta, tb);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fusednn
