// Sample weights for the fused trainer: the weighted mean of the per-row losses
// and the row scaling of the loss gradient (scikit-learn's sample_weight).
#include <algorithm>
#include <cmath>

#include "fusednn/cpu.h"
#include "fusednn/loss_math.h"

namespace fusednn {
namespace cpu {

double row_loss(const float* p, const float* t, std::size_t cols, int kind) {
  double l = 0.0;
  if (kind < 0) {  // mse: mean over the row
    for (std::size_t c = 0; c < cols; ++c) {
      const double d = double(p[c]) - double(t[c]);
      l += d * d;
    }
    return cols ? l / double(cols) : 0.0;
  }
  const auto k = static_cast<XentKind>(kind);
  if (k == XentKind::sigmoid_binary) {
    for (std::size_t c = 0; c < cols; ++c) {
      const double z = p[c];
      l += std::max(z, 0.0) - z * double(t[c]) + std::log1p(std::exp(-std::fabs(z)));
    }
    return cols ? l / double(cols) : 0.0;
  }
  double mx = -INFINITY;
  for (std::size_t c = 0; c < cols; ++c) mx = std::max(mx, double(p[c]));
  double sum = 0.0;
  for (std::size_t c = 0; c < cols; ++c) sum += std::exp(double(p[c]) - mx);
  const double lse = mx + std::log(sum);
  if (k == XentKind::softmax_sparse) {
    const float label = t[0];
    const long idx = long(label);
    if (!(label >= 0.f) || float(idx) != label || idx >= long(cols)) return std::nan("");
    return lse - double(p[idx]);
  }
  for (std::size_t c = 0; c < cols; ++c) l += double(t[c]) * (lse - double(p[c]));
  return l;
}

double weighted_loss(const float* p, const float* t, const float* s, std::size_t rows, std::size_t cols,
                     int kind) {
  const std::size_t t_cols = kind == int(XentKind::softmax_sparse) ? 1 : cols;
  double total = 0.0;
  for (std::size_t r = 0; r < rows; ++r) total += double(s[r]) * row_loss(p + r * cols, t + r * t_cols, cols, kind);
  return rows ? total / double(rows) : 0.0;
}

double weighted_loss_fn(const float* p, const float* t, const float* s, std::size_t rows, std::size_t cols,
                        LossFn fn, LossParams param) {
  if (rows == 0 || cols == 0) return 0.0;
  const std::size_t n = rows * cols;
  const bool rowwise = loss_fn_is_rowwise(fn);
  bool hinge01 = false;  // Keras converts {0, 1} labels when all of the batch's are 0 or 1
  if (fn == LossFn::hinge || fn == LossFn::squared_hinge) {
    hinge01 = true;
    for (std::size_t i = 0; i < n && hinge01; ++i) hinge01 = t[i] == 0.f || t[i] == 1.f;
  }
  double total = 0.0;
  for (std::size_t r = 0; r < rows; ++r) {
    const float *pr = p + r * cols, *tr = t + r * cols;
    const double l = loss_math::sample_loss(fn, rowwise, pr, tr, long(cols), param, hinge01);
    total += double(s[r]) * l;
  }
  return total / double(rows);
}

void scale_rows(float* g, const float* s, std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float f = s[r];
    float* gr = g + r * cols;
    for (std::size_t c = 0; c < cols; ++c) gr[c] *= f;
  }
}

}  // namespace cpu
}  // namespace fusednn
