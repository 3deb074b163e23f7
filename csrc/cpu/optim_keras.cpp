// Keras 3's optimizers (SGD, Adam/AdamW with amsgrad, RMSprop, Adagrad, Adadelta,
// Adamax, Nadam, Lion) with gradient clipping, weight decay and EMA: one entry
// point over the element rule in fusednn/optim_update.h.
#include <cmath>

#include "avx2.h"
#include "fusednn/cpu.h"
#include "threads.h"
#define OPTIM_IMPL_NS portable
#include "optim_keras_impl.h"

namespace fusednn {
namespace cpu {

void optimizer_update(OptKind kind, int flags, const float* p, float* w, const float* g, float* s1, float* s2,
                      float* s3, float* ema, std::size_t n, double sumsq) {
  const float factor = clip_factor(flags, p[P_CLIP], sumsq);
  parallel_chunks(n, [&](std::size_t b, std::size_t e) {
#ifdef FUSEDNN_HAVE_AVX2_TU
    if (use_avx2()) return avx2::optimizer_update(int(kind), flags, p, factor, b, e, w, g, s1, s2, s3, ema);
#endif
    portable::optimizer_update_range(int(kind), flags, p, factor, b, e, w, g, s1, s2, s3, ema);
  });
}

double sum_squares(const float* x, std::size_t n) {
  // One fixed order of additions (optim_keras_impl.h), whichever path runs: the
  // fused trainer and the per-op path (which adds these per-variable sums in
  // Python) then agree to the bit.
#ifdef FUSEDNN_HAVE_AVX2_TU
  if (use_avx2()) return avx2::sum_squares(x, n);
#endif
  return portable::sum_squares_lanes(x, n);
}

}  // namespace cpu
}  // namespace fusednn
