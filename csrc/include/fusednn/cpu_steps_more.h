// CPU kernels of the parameterised activation layers (LeakyReLU, ELU, ReLU with
// max_value/negative_slope/threshold) and of the Gaussian noise layers
// (GaussianNoise, GaussianDropout): used by the per-op bindings and by the fused
// trainer's steps (fusednn/layer_steps.h), so both paths give the same numbers.
// They are scalar loops compiled without FMA (one rounding per operation, as the
// NumPy formulas of fusednn/layers/activation_layers.py and regularization.py).
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fusednn {

// The parameterised activation: kind relu (ReLU/LeakyReLU) uses slope, max_value
// (+inf: none) and threshold: y = x >= thr ? x : slope * (x - thr), then min(y, max);
// kind elu uses alpha: y = x > 0 ? x : alpha * expm1(x).
enum class ActParamKind : int { relu = 0, elu = 1 };
struct ActParam {
  ActParamKind kind = ActParamKind::relu;
  float slope = 0.f, alpha = 1.f, max_value = 0.f, threshold = 0.f;
  bool has_max = false;
};

// A checked ActParam (std::invalid_argument, a ValueError in Python, names `where`):
// relu kind: slope >= 0, a finite threshold, max_value >= 0 when given; elu kind: a finite alpha.
inline ActParam make_act_param(int kind, float slope, float alpha, float max_value, bool has_max, float threshold,
                               const std::string& where) {
  ActParam a;
  if (kind == int(ActParamKind::relu)) {
    if (!(slope >= 0.f) || !std::isfinite(slope))
      throw std::invalid_argument(where + "negative_slope must be a finite number >= 0");
    if (!std::isfinite(threshold)) throw std::invalid_argument(where + "threshold must be finite");
    if (has_max && !(max_value >= 0.f)) throw std::invalid_argument(where + "max_value must be >= 0");
  } else if (kind == int(ActParamKind::elu)) {
    if (!std::isfinite(alpha)) throw std::invalid_argument(where + "alpha must be finite");
  } else {
    throw std::invalid_argument(where + "unknown parameterised activation kind " + std::to_string(kind) +
                                " (0 relu, 1 elu)");
  }
  a.kind = static_cast<ActParamKind>(kind);
  a.slope = slope;
  a.alpha = alpha;
  a.max_value = max_value;
  a.has_max = has_max;
  a.threshold = threshold;
  return a;
}

namespace cpu {

void act_param_forward(float* y, const float* x, std::int64_t n, const ActParam& a);
// dx = dy * f'(x) from the input x and the output y: relu kind: x >= max ? 0 : x >= thr ? 1 : slope;
// elu kind: x > 0 ? 1 : y + alpha.
void act_param_backward(float* dx, const float* dy, const float* x, const float* y, std::int64_t n,
                        const ActParam& a);
// The Gaussian noise factor of a rows×cols draw at step t (Box-Muller over Philox,
// fusednn/layers/philox.py's normal(): element e uses the uniforms of indices 2e and
// 2e+1, the transcendental part in double): m = scale * z, plus 1 when add_one
// (GaussianDropout's factor; GaussianNoise's noise without).
void gaussian_factor(float* m, std::int64_t rows, std::int64_t cols, std::uint64_t seed, std::uint64_t t,
                     float scale, bool add_one);

}  // namespace cpu
}  // namespace fusednn
