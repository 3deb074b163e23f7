// Parameterised activations and Gaussian noise factors (fusednn/cpu_steps_more.h).
// This file is compiled without -mfma: each product and sum rounds on its own, as
// in the NumPy formulas the per-op reference uses.
#include <algorithm>
#include <cmath>

#include "fusednn/cpu_steps_more.h"
#include "fusednn/philox.h"

namespace fusednn {
namespace cpu {

void act_param_forward(float* y, const float* x, std::int64_t n, const ActParam& a) {
  if (a.kind == ActParamKind::elu) {
    for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : a.alpha * std::expm1(std::min(x[i], 0.f));
    return;
  }
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = x[i] >= a.threshold ? x[i] : a.slope * (x[i] - a.threshold);
    y[i] = a.has_max ? std::min(v, a.max_value) : v;
  }
}

void act_param_backward(float* dx, const float* dy, const float* x, const float* y, std::int64_t n,
                        const ActParam& a) {
  if (a.kind == ActParamKind::elu) {
    for (std::int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (x[i] > 0.f ? 1.f : y[i] + a.alpha);
    return;
  }
  for (std::int64_t i = 0; i < n; ++i) {
    float d = x[i] >= a.threshold ? 1.f : a.slope;
    if (a.has_max && x[i] >= a.max_value) d = 0.f;
    dx[i] = dy[i] * d;
  }
}

void gaussian_factor(float* m, std::int64_t rows, std::int64_t cols, std::uint64_t seed, std::uint64_t t,
                     float scale, bool add_one) {
  const std::int64_t n = rows * cols;
  const double two_pi = 2.0 * 3.141592653589793;  // np.pi
  // elements 2j and 2j+1 take the four words of Philox block j (indices 4j..4j+3): one call per pair
  for (std::int64_t j = 0; 2 * j < n; ++j) {
    const std::uint64_t blk = std::uint64_t(j);
    const Philox4 r = philox4x32_10(std::uint32_t(blk), std::uint32_t(blk >> 32), std::uint32_t(t),
                                    std::uint32_t(t >> 32), std::uint32_t(seed), std::uint32_t(seed >> 32));
    for (int h = 0; h < 2 && 2 * j + h < n; ++h) {
      const double u1 = (double(r.v[2 * h] >> 8) + 1.0) * (1.0 / 16777216.0);
      const double u2 = double(r.v[2 * h + 1] >> 8) * (1.0 / 16777216.0);
      const float z = float(std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2));
      const float v = scale * z;
      m[2 * j + h] = add_one ? 1.f + v : v;
    }
  }
}

}  // namespace cpu
}  // namespace fusednn
