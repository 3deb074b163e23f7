// Pieces shared by the FP32 (gemm.cu) and TF32 (gemm_tf32.cu) GEMM kernels:
// the argument block and the loader that stages one operand's K-slice of a
// tile from global memory into shared memory through registers.
#pragma once
#include <cstdint>

#include "fusednn/cuda.h"

namespace fusednn {
namespace cuda {
namespace detail {

struct GemmArgs {
  float* C;
  const float* A;
  const float* B;
  const float* bias;  // length N or null
  int M, N, K;
  long long lda, ldb;  // row pitch of A and B as stored (K or M, N or K)
  Act act;
  // 128-bit access is legal: base 16-byte aligned and row pitch % 4 == 0.
  bool vec_a, vec_b, vec_c;
};

// Launches the TF32 tensor-core kernel (gemm_tf32.cu); the caller has checked
// that the device is sm_80 or newer.
cudaError_t launch_gemm_tf32(const GemmArgs& p, bool ta, bool tb, cudaStream_t stream);

// The multi-stage cp.async FP32 kernels (gemm_async.cu), instantiated for the
// tilings gemm.cu lists; they need sm_80+ and 16-byte-aligned operands with a
// row pitch divisible by 4 (gemm.cu falls back otherwise).
template <int BM, int BN, int BK, int TM, int TN, int STAGES>
cudaError_t launch_sgemm_async(const GemmArgs& p, bool ta, bool tb, cudaStream_t stream);

// One operand of a tile: BMN rows of the M (or N) dimension by BK columns of
// K, per K step. The operand is "K-major" in global memory when consecutive
// addresses run along K (A not transposed, B transposed), else "MN-major".
// The loader reads it in float4 groups along the contiguous direction (one
// 128-bit load when `vec`, else four bounds-checked scalar loads), zero-fills
// whatever lies outside the matrix, and writes shared memory in one of two
// layouts:
//   SMEM_MK == false: S[k * LD + mn]   (MN contiguous; float4 fragment reads)
//   SMEM_MK == true:  S[mn * LD + k]   (K contiguous; only for K-major operands)
// With TF32, values are rounded to TF32 (round to nearest, ties away) as they
// are written, so the tensor cores see correctly rounded operands.
template <int BMN, int BK, int THREADS, bool KMAJOR, bool SMEM_MK, int LD, bool TF32>
struct PanelLoader {
  // The tile is kRows "rows" across the contiguous direction (MN rows of a
  // K-major operand, K rows of an MN-major one), each kGroupsPerRow float4s
  // long. Thread tid's l-th group is row tid / kGroupsPerRow + l * kRowsPerPass,
  // float4 column tid % kGroupsPerRow: consecutive lanes read consecutive
  // 16 bytes, and only one base pointer per thread is kept in registers.
  static constexpr int kRows = KMAJOR ? BMN : BK;
  static constexpr int kGroupsPerRow = (KMAJOR ? BK : BMN) / 4;
  static constexpr int kRowsPerPass = THREADS / kGroupsPerRow;
  static constexpr int kLoads = (kRows + kRowsPerPass - 1) / kRowsPerPass;
  static constexpr bool kAllActive = kRows % kRowsPerPass == 0;
  static_assert(BMN % 4 == 0 && BK % 4 == 0, "tiles are float4 groups");
  static_assert(THREADS % kGroupsPerRow == 0, "a pass covers whole rows");
  static_assert(KMAJOR || !SMEM_MK, "an MN-major operand is stored MN-contiguous");

  const float* base;  // this thread's first group at k0 = 0
  long long ld;
  int row, col;  // this thread's first group in the tile (col in floats)
  int rem_mn, K;
  float4 reg[kLoads];

  __device__ __forceinline__ PanelLoader(const float* X, long long ld_, int dim_mn, int K_, int mn0,
                                         int tid)
      : ld(ld_),
        row(tid / kGroupsPerRow),
        col((tid % kGroupsPerRow) * 4),
        rem_mn(dim_mn - mn0),
        K(K_) {
    base = KMAJOR ? X + (static_cast<long long>(mn0) + row) * ld + col
                  : X + static_cast<long long>(row) * ld + mn0 + col;
  }

  __device__ __forceinline__ bool active(int l) const {
    return kAllActive || row + l * kRowsPerPass < kRows;
  }

  // Fetch the slice starting at column k0 of K into registers.
  __device__ __forceinline__ void load(int k0, bool vec) {
    const int rem_k = K - k0;
#pragma unroll
    for (int l = 0; l < kLoads; ++l) {
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      const int r = row + l * kRowsPerPass;
      const float* p = base + (KMAJOR ? static_cast<long long>(l * kRowsPerPass) * ld + k0
                                      : (static_cast<long long>(k0) + l * kRowsPerPass) * ld);
      // Across the contiguous direction the group is in or out as a whole;
      // along it, it runs from `col` against the limit `lim`.
      const bool row_in = KMAJOR ? r < rem_mn : r < rem_k;
      const int lim = KMAJOR ? rem_k : rem_mn;
      if (active(l) && row_in) {
        if (vec) {
          // The pitch is a multiple of 4, so the matrix edge never splits a group.
          if (col < lim) v = *reinterpret_cast<const float4*>(p);
        } else {
          if (col < lim) v.x = p[0];
          if (col + 1 < lim) v.y = p[1];
          if (col + 2 < lim) v.z = p[2];
          if (col + 3 < lim) v.w = p[3];
        }
      }
      reg[l] = v;
    }
  }

  __device__ __forceinline__ static float round(float x) {
    if constexpr (TF32) {
      std::uint32_t r;
      asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
      return __uint_as_float(r);
    } else {
      return x;
    }
  }

  __device__ __forceinline__ void store(float* S) const {
#pragma unroll
    for (int l = 0; l < kLoads; ++l) {
      if (!active(l)) continue;
      const int r = row + l * kRowsPerPass;
      const float4 v = make_float4(round(reg[l].x), round(reg[l].y), round(reg[l].z), round(reg[l].w));
      if (KMAJOR && !SMEM_MK) {
        S[(col + 0) * LD + r] = v.x;
        S[(col + 1) * LD + r] = v.y;
        S[(col + 2) * LD + r] = v.z;
        S[(col + 3) * LD + r] = v.w;
      } else {
        *reinterpret_cast<float4*>(S + r * LD + col) = v;
      }
    }
  }
};

}  // namespace detail
}  // namespace cuda
}  // namespace fusednn
