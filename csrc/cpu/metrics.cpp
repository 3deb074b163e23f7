// Metric accumulators: per-batch counts that fit/evaluate sum over an epoch and
// read back once, so metrics cost no host round trip per step.
#include <cmath>

#include "fusednn/cpu.h"

namespace fusednn {
namespace cpu {

namespace {

inline long argmax(const float* v, std::size_t n) {
  long best = 0;
  for (std::size_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = long(i);
  return best;
}

}  // namespace

void confusion_update(double* counts, const float* p, const float* t, std::size_t rows, std::size_t cols,
                      int classes, bool sparse, float threshold) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* pr = p + r * cols;
    long pred, truth;
    if (cols == 1) {
      pred = pr[0] > threshold ? 1 : 0;
    } else {
      pred = argmax(pr, cols);
    }
    if (sparse) {
      // a label outside (-1, classes) (or NaN) is skipped before it is converted:
      // converting NaN or a huge float to long is undefined behaviour
      const float label = t[r];
      truth = label > -1.f && label < float(classes) ? long(label) : -1;
    } else if (cols == 1) {
      truth = t[r] > 0.5f ? 1 : 0;
    } else {
      truth = argmax(t + r * cols, cols);
    }
    if (truth < 0 || truth >= classes || pred < 0 || pred >= classes) continue;  // checked upstream
    counts[truth * classes + pred] += 1.0;
  }
}

void error_sums_update(double* sums, const float* p, const float* t, std::size_t n) {
  double a = 0.0, s = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = double(p[i]) - double(t[i]);
    a += std::fabs(d);
    s += d * d;
  }
  sums[0] += a;
  sums[1] += s;
}

}  // namespace cpu
}  // namespace fusednn
