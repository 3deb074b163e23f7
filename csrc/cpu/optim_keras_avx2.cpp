// cpu::optimizer_update's loops and the clipping sum of squares compiled for
// AVX2+FMA (see optim_keras_impl.h).
#include "avx2.h"
#define OPTIM_IMPL_NS avx2
#include "optim_keras_impl.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

void optimizer_update(int kind, int flags, const float* p, float factor, std::size_t b, std::size_t e,
                      float* w, const float* g, float* s1, float* s2, float* s3, float* ema) {
  optimizer_update_range(kind, flags, p, factor, b, e, w, g, s1, s2, s3, ema);
}

double sum_squares(const float* x, std::size_t n) { return sum_squares_lanes(x, n); }

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
