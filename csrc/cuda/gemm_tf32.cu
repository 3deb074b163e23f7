// Opt-in TF32 tensor-core GEMM (mma.sync m16n8k8), for devices of compute
// capability 8.0 or newer; the same contract and epilogue as the FP32 kernels.
//
// A 128×128 block tile, BK = 16, eight warps in a 2×4 grid, each warp a
// 64×32 tile of 4×4 mma instructions. Operands are rounded to TF32 once, when
// staged into shared memory. Each operand's shared layout is chosen so that
// the fragment reads of a warp hit 32 different banks: MN-major operands are
// stored [k][mn] with rows padded to 136 floats (lane (g, t) reads bank
// 8t + g), K-major operands [mn][k] with rows padded to 20 floats (bank
// 20g + t mod 32). Global loads are staged through registers into the other
// of two buffers while the tensor cores work on the current one.
#include <cstdint>

#include "activation.cuh"
#include "gemm_common.cuh"

namespace fusednn {
namespace cuda {
namespace detail {

namespace {

constexpr int BM = 128, BN = 128, THREADS = 256;

// The device code needs sm_80 (cvt.rna.tf32, mma .tf32); for older targets the
// kernel is compiled empty, and the launcher never starts it there.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
constexpr int BK = 16, WARPS_N = 4, WM = 64, WN = 32, MI = WM / 16, NI = WN / 8;

// Shared layout of one operand: K-major operands [mn][k], others [k][mn].
template <bool KMAJOR, int BMN>
struct Smem {
  static constexpr int LD = KMAJOR ? BK + 4 : BMN + 8;
  static constexpr int SIZE = KMAJOR ? BMN * LD : BK * LD;
  __device__ __forceinline__ static std::uint32_t at(const float* s, int mn, int k) {
    return __float_as_uint(KMAJOR ? s[mn * LD + k] : s[k * LD + mn]);
  }
};

__device__ __forceinline__ void mma_tf32(float (&d)[4], const std::uint32_t (&a)[4],
                                         const std::uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

template <bool TA, bool TB>
__global__ void __launch_bounds__(THREADS, 2) gemm_tf32_kernel(const GemmArgs p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using SA = Smem<!TA, BM>;
  using SB = Smem<TB, BN>;
  __shared__ __align__(16) float As[2][SA::SIZE];
  __shared__ __align__(16) float Bs[2][SB::SIZE];

  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  PanelLoader<BM, BK, THREADS, !TA, !TA, SA::LD, true> la(p.A, p.lda, p.M, p.K, m0, tid);
  PanelLoader<BN, BK, THREADS, TB, TB, SB::LD, true> lb(p.B, p.ldb, p.N, p.K, n0, tid);

  const int warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;  // the mma fragment coordinates of this lane
  const int wm = (warp / WARPS_N) * WM, wn = (warp % WARPS_N) * WN;

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.f;

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
    if (more) {
      la.load((kt + 1) * BK, p.vec_a);
      lb.load((kt + 1) * BK, p.vec_b);
    }
    const float* as = As[cur];
    const float* bs = Bs[cur];
#pragma unroll
    for (int kb = 0; kb < BK; kb += 8) {
      std::uint32_t af[MI][4], bf[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        const int r = wm + i * 16 + g;
        af[i][0] = SA::at(as, r, kb + t);
        af[i][1] = SA::at(as, r + 8, kb + t);
        af[i][2] = SA::at(as, r, kb + t + 4);
        af[i][3] = SA::at(as, r + 8, kb + t + 4);
      }
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int c = wn + j * 8 + g;
        bf[j][0] = SB::at(bs, c, kb + t);
        bf[j][1] = SB::at(bs, c, kb + t + 4);
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) mma_tf32(acc[i][j], af[i], bf[j]);
    }
    if (more) {
      la.store(As[cur ^ 1]);
      lb.store(Bs[cur ^ 1]);
    }
    __syncthreads();
  }

  // Lane (g, t) holds rows g and g + 8, columns 2t and 2t + 1 of each 16×8 tile.
  const int rem_m = p.M - m0, rem_n = p.N - n0;
  float bv[NI][2];
#pragma unroll
  for (int j = 0; j < NI; ++j)
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const int c = wn + j * 8 + 2 * t + q;
      bv[j][q] = p.bias != nullptr && c < rem_n ? p.bias[n0 + c] : 0.f;
    }
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = wm + i * 16 + g + 8 * h;
      if (r >= rem_m) continue;
      float* crow = p.C + (static_cast<long long>(m0) + r) * p.N + n0;
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int c = wn + j * 8 + 2 * t;
        const float v0 = act_fwd_rt(acc[i][j][2 * h] + bv[j][0], p.act);
        const float v1 = act_fwd_rt(acc[i][j][2 * h + 1] + bv[j][1], p.act);
        if (p.vec_c) {  // N % 4 == 0 and c even: the pair is in or out together
          if (c < rem_n) *reinterpret_cast<float2*>(crow + c) = make_float2(v0, v1);
        } else {
          if (c < rem_n) crow[c] = v0;
          if (c + 1 < rem_n) crow[c + 1] = v1;
        }
      }
    }
#endif
}

}  // namespace

cudaError_t launch_gemm_tf32(const GemmArgs& p, bool ta, bool tb, cudaStream_t stream) {
  const unsigned gm = unsigned((p.M + BM - 1) / BM), gn = unsigned((p.N + BN - 1) / BN);
  if (gn > 65535u) return cudaErrorInvalidConfiguration;
  const dim3 grid(gm, gn);
  if (!ta && !tb) gemm_tf32_kernel<false, false><<<grid, THREADS, 0, stream>>>(p);
  if (!ta && tb) gemm_tf32_kernel<false, true><<<grid, THREADS, 0, stream>>>(p);
  if (ta && !tb) gemm_tf32_kernel<true, false><<<grid, THREADS, 0, stream>>>(p);
  if (ta && tb) gemm_tf32_kernel<true, true><<<grid, THREADS, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace detail
}  // namespace cuda
}  // namespace fusednn
