// Weight penalties (Keras' L1/L2 regularizers) for the per-op path and the
// fused trainer: one pass that adds the penalty's gradient to g and its value
// to the step's loss.
#include <cmath>

#include "avx2.h"
#include "fusednn/cpu.h"

namespace fusednn {
namespace cpu {

void regularize(float* g, const float* w, std::size_t n, float l1, float l2, float* loss) {
#ifdef FUSEDNN_HAVE_AVX2_TU
  if (use_avx2()) {
    const double pen = avx2::regularize(g, w, n, l1, l2);
    if (loss) *loss = float(double(*loss) + pen);
    return;
  }
#endif
  const float two_l2 = 2.0f * l2;
  // The gradient update is elementwise (the compiler vectorizes it); the
  // penalty is summed in a second pass with eight independent double
  // accumulators, since one serial double sum was most of this kernel's time.
  if (l1 == 0.f) {
    for (std::size_t i = 0; i < n; ++i) g[i] += two_l2 * w[i];
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      const float x = w[i];
      // Keras: d|x|/dx = sign(x), 0 at 0 (and for NaN); written without
      // branches, which mispredicted on every other weight
      const float s = (x > 0.f ? 1.f : 0.f) - (x < 0.f ? 1.f : 0.f);
      g[i] += l1 * s + two_l2 * x;
    }
  }
  double acc[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const double x = w[i + j];
      acc[j] += double(l1) * std::fabs(x) + double(l2) * x * x;
    }
  for (; i < n; ++i) {
    const double x = w[i];
    acc[0] += double(l1) * std::fabs(x) + double(l2) * x * x;
  }
  const double pen = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  if (loss) *loss = float(double(*loss) + pen);
}

void weighted_sum_regularize(float* g, const float* g0, const float* g1, float c0, float c1, const float* w,
                             std::size_t n, float l1, float l2, float* loss) {
#ifdef FUSEDNN_HAVE_AVX2_TU
  if (use_avx2()) {
    const double pen = avx2::weighted_sum_regularize(g, g0, g1, c0, c1, w, n, l1, l2);
    if (loss) *loss = float(double(*loss) + pen);
    return;
  }
#endif
  for (std::size_t i = 0; i < n; ++i) g[i] = c0 * g0[i] + c1 * g1[i];
  regularize(g, w, n, l1, l2, loss);
}

}  // namespace cpu
}  // namespace fusednn
