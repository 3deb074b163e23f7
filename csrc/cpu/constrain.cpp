// Weight constraints (fusednn/constraint.h) on the CPU: the per-op path's
// projection after an update and the fused trainer's.
#include <cmath>
#include <vector>

#include "fusednn/cpu.h"

namespace fusednn {
namespace cpu {

void constrain(float* w, std::size_t rows, std::size_t cols, const Constraint& c) {
  const std::size_t n = rows * cols;
  switch (c.kind) {
    case ConstraintKind::none:
      return;
    case ConstraintKind::non_neg:
      for (std::size_t i = 0; i < n; ++i) w[i] = w[i] > 0.f ? w[i] : 0.f;
      return;
    default:
      break;
  }
  if (c.axis == ConstraintAxis::all) {
    double ss = 0.0;
    for (std::size_t i = 0; i < n; ++i) ss += double(w[i]) * double(w[i]);
    const float f = constraint_factor(c, std::sqrt(ss));
    for (std::size_t i = 0; i < n; ++i) w[i] *= f;
  } else if (c.axis == ConstraintAxis::cols) {  // one norm per row
    for (std::size_t r = 0; r < rows; ++r) {
      float* row = w + r * cols;
      double ss = 0.0;
      for (std::size_t j = 0; j < cols; ++j) ss += double(row[j]) * double(row[j]);
      const float f = constraint_factor(c, std::sqrt(ss));
      for (std::size_t j = 0; j < cols; ++j) row[j] *= f;
    }
  } else {  // one norm per column, summed row by row (reused scratch: no allocation per step)
    thread_local std::vector<double> ss;
    thread_local std::vector<float> f;
    ss.assign(cols, 0.0);
    f.resize(cols);
    for (std::size_t r = 0; r < rows; ++r) {
      const float* row = w + r * cols;
      for (std::size_t j = 0; j < cols; ++j) ss[j] += double(row[j]) * double(row[j]);
    }
    for (std::size_t j = 0; j < cols; ++j) f[j] = constraint_factor(c, std::sqrt(ss[j]));
    for (std::size_t r = 0; r < rows; ++r) {
      float* row = w + r * cols;
      for (std::size_t j = 0; j < cols; ++j) row[j] *= f[j];
    }
  }
}

}  // namespace cpu
}  // namespace fusednn
