// Weight penalties (Keras' L1/L2 regularizers) for the per-op path and the
// fused trainer: one pass that adds the penalty's gradient to g and its value
// to the step's loss.
#include <cmath>

#include "fusednn/cpu.h"

namespace fusednn {
namespace cpu {

void regularize(float* g, const float* w, std::size_t n, float l1, float l2, float* loss) {
  double pen = 0.0;
  const float two_l2 = 2.0f * l2;
  for (std::size_t i = 0; i < n; ++i) {
    const float x = w[i];
    // Keras: d|x|/dx = sign(x), 0 at 0
    const float s = x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
    g[i] += l1 * s + two_l2 * x;
    pen += double(l1) * std::fabs(double(x)) + double(l2) * double(x) * double(x);
  }
  if (loss) *loss = float(double(*loss) + pen);
}

}  // namespace cpu
}  // namespace fusednn
