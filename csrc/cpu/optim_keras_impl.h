// The loops of cpu::optimizer_update over a range of elements, included by
// optim_keras.cpp (portable) and optim_keras_avx2.cpp (built with -mavx2 -mfma,
// where the compiler vectorises the same source eight floats at a time). The
// arithmetic is fusednn/optim_update.h's, shared with CUDA; here a range is cut
// into blocks and each stage of Keras' step (clip, decay, update, EMA) is its own
// branch-free loop over the block, with the kind and its flags compile-time
// constants, so that every loop vectorises. Each element goes through the same
// operations as opt_elem, so the results are those of the per-element rule.
#pragma once
#include <cstddef>

#include "fusednn/optim_update.h"

namespace fusednn {
namespace cpu {
namespace OPTIM_IMPL_NS {

constexpr std::size_t kBlock = 512;

template <int K, int KF>
static void update_range(const float* p_, int flags, float factor, std::size_t b, std::size_t e,
                         float* __restrict w, const float* __restrict g, float* __restrict s1,
                         float* __restrict s2, float* __restrict s3, float* __restrict ema) {
  float p[kOptParams];  // a local copy the compiler knows nothing writes to
  for (int k = 0; k < kOptParams; ++k) p[k] = p_[k];
  constexpr bool u1 = opt_uses(K, KF, 1), u2 = opt_uses(K, KF, 2), u3 = opt_uses(K, KF, 3);
  const float clip = p[P_CLIP];
  alignas(32) float gb[kBlock];
  for (std::size_t i0 = b; i0 < e; i0 += kBlock) {
    const std::size_t n = e - i0 < kBlock ? e - i0 : kBlock;
    const float* __restrict gg = g + i0;
    if (flags & optf::clip_value) {
      for (std::size_t j = 0; j < n; ++j) gb[j] = clip_grad(gg[j], optf::clip_value, clip, factor);
      gg = gb;
    } else if (flags & optf::clip_norm) {
      for (std::size_t j = 0; j < n; ++j) gb[j] = clip_grad(gg[j], optf::clip_norm, clip, factor);
      gg = gb;
    } else if (flags & optf::clip_global) {
      for (std::size_t j = 0; j < n; ++j) gb[j] = clip_grad(gg[j], optf::clip_global, clip, factor);
      gg = gb;
    }
    float* __restrict wb = w + i0;
    if (flags & optf::weight_decay)
      for (std::size_t j = 0; j < n; ++j) wb[j] = decayed(wb[j], p);
    float* __restrict a1 = u1 ? s1 + i0 : nullptr;
    float* __restrict a2 = u2 ? s2 + i0 : nullptr;
    float* __restrict a3 = u3 ? s3 + i0 : nullptr;
    for (std::size_t j = 0; j < n; ++j) {
      float wi = wb[j], a = u1 ? a1[j] : 0.f, bb = u2 ? a2[j] : 0.f, c = u3 ? a3[j] : 0.f;
      opt_core<K, KF>(p, wi, gg[j], a, bb, c);
      wb[j] = wi;
      if (u1) a1[j] = a;
      if (u2) a2[j] = bb;
      if (u3) a3[j] = c;
    }
    if (flags & optf::ema) {
      float* __restrict eb = ema + i0;
      for (std::size_t j = 0; j < n; ++j) ema_elem(p, wb[j], eb[j]);
    }
  }
}

// sum of x^2 in double, in a fixed order that does not depend on the build: eight
// running lanes (element i goes to lane i % 8), then the lanes added in order.
inline double sum_squares_lanes(const float* __restrict x, std::size_t n) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) lane[k] += double(x[i + k]) * double(x[i + k]);
  for (int k = 0; i < n; ++i, ++k) lane[k] += double(x[i]) * double(x[i]);
  double s = 0.0;
  for (int k = 0; k < 8; ++k) s += lane[k];
  return s;
}

struct RangeCall {
  const float* p;
  int flags;
  float factor;
  std::size_t b, e;
  float *w;
  const float* g;
  float *s1, *s2, *s3, *ema;
  template <int K, int KF>
  void run() const {
    update_range<K, KF>(p, flags, factor, b, e, w, g, s1, s2, s3, ema);
  }
};

inline void optimizer_update_range(int kind, int flags, const float* p, float factor, std::size_t b,
                                   std::size_t e, float* w, const float* g, float* s1, float* s2, float* s3,
                                   float* ema) {
  opt_dispatch(kind, flags, RangeCall{p, flags, factor, b, e, w, g, s1, s2, s3, ema});
}

}  // namespace OPTIM_IMPL_NS
}  // namespace cpu
}  // namespace fusednn
