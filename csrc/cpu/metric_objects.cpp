// Keras metric objects accumulated on the CPU (fusednn/metric_math.h): the
// rows in order, added into float64 accumulators, so the sums do not depend on
// the thread count. The work per row is a few compares and adds next to the
// GEMMs of the step that produced it, so it stays serial and scalar.
#include "fusednn/cpu.h"
#include "fusednn/metric_math.h"

namespace fusednn {
namespace cpu {

void metric_update(const MetricSpec& s, const float* p, const float* t, const float* w, std::size_t rows,
                   std::size_t cols) {
  const std::size_t t_cols = s.sparse ? 1 : cols;
  const auto add = [](double* slot, double v) { *slot += v; };
  for (std::size_t r = 0; r < rows; ++r)
    metric_math::row_update(s, p + r * cols, t + r * t_cols, w ? double(w[r]) : 1.0, long(cols), add);
}

}  // namespace cpu
}  // namespace fusednn
