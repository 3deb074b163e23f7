// The loops of cpu::optimizer_update over a range of elements, included by
// optim_keras.cpp (portable) and optim_keras_avx2.cpp (built with -mavx2 -mfma,
// where the compiler vectorises the same source eight floats at a time). One
// loop per kind, its flags tested inside: the compiler hoists them (loop
// unswitching), and the arithmetic is fusednn/optim_update.h's, shared with CUDA.
#pragma once
#include <cstddef>

#include "fusednn/optim_update.h"

namespace fusednn {
namespace cpu {
namespace OPTIM_IMPL_NS {

template <int K>
static void update_range(const float* __restrict p, int flags, float factor, std::size_t b, std::size_t e,
                         float* __restrict w, const float* __restrict g, float* __restrict s1,
                         float* __restrict s2, float* __restrict s3, float* __restrict ema) {
  float pl[kOptParams];  // a local copy: the compiler may keep it in registers
  for (int k = 0; k < kOptParams; ++k) pl[k] = p[k];
  for (std::size_t i = b; i < e; ++i) opt_elem<K>(pl, flags, factor, i, w, g, s1, s2, s3, ema);
}

inline void optimizer_update_range(int kind, int flags, const float* p, float factor, std::size_t b,
                                   std::size_t e, float* w, const float* g, float* s1, float* s2, float* s3,
                                   float* ema) {
  switch (kind) {
    case 0: return update_range<0>(p, flags, factor, b, e, w, g, s1, s2, s3, ema);
    case 1: return update_range<1>(p, flags, factor, b, e, w, g, s1, s2, s3, ema);
    case 2: return update_range<2>(p, flags, factor, b, e, w, g, s1, s2, s3, ema);
    case 3: return update_range<3>(p, flags, factor, b, e, w, g, s1, s2, s3, ema);
    case 4: return update_range<4>(p, flags, factor, b, e, w, g, s1, s2, s3, ema);
    case 5: return update_range<5>(p, flags, factor, b, e, w, g, s1, s2, s3, ema);
    case 6: return update_range<6>(p, flags, factor, b, e, w, g, s1, s2, s3, ema);
    default: return update_range<7>(p, flags, factor, b, e, w, g, s1, s2, s3, ema);
  }
}

}  // namespace OPTIM_IMPL_NS
}  // namespace cpu
}  // namespace fusednn
