// Keras' weight constraints (keras.constraints) as a projection applied to a
// parameter right after its optimizer update: the per-op path calls it through
// fusednn._cpu.constrain, the fused trainer after each Dense block's update
// (trainer.h), so both paths give the same numbers.
//
// A weight is viewed as rows x cols (a Dense kernel: inputs x units; a bias:
// units x 1). The norm constraints rescale each vector along `axis`
// (ConstraintAxis) by desired / (1e-7 + norm), the norm and factor in double and
// the factor rounded to float before the multiply:
//   max_norm:     desired = clip(norm, 0, max_value)
//   unit_norm:    desired = 1
//   min_max_norm: desired = rate * clip(norm, min_value, max_value) + (1 - rate) * norm
// non_neg is max(w, 0). The float64 NumPy reference is fusednn.constraints.project.
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>

namespace fusednn {

enum class ConstraintKind : int { none = 0, max_norm = 1, non_neg = 2, unit_norm = 3, min_max_norm = 4 };
// rows: one norm per column (Keras axis=0 on a kernel); cols: one per row; all: one norm
enum class ConstraintAxis : int { rows = 0, cols = 1, all = 2 };

struct Constraint {
  ConstraintKind kind = ConstraintKind::none;
  ConstraintAxis axis = ConstraintAxis::rows;
  float min_value = 0.f, max_value = 0.f, rate = 1.f;
};

// Keras' backend.epsilon() in the norm constraints' denominators
constexpr double kConstraintEpsilon = 1e-7;

#if defined(__CUDACC__)
#define FUSEDNN_CONSTRAINT_HD __host__ __device__ inline
#else
#define FUSEDNN_CONSTRAINT_HD inline
#endif

// The rescaling factor of a vector of the given norm (the norm constraints; also the
// CUDA kernels' in csrc/cuda/steps_more.cu).
FUSEDNN_CONSTRAINT_HD float constraint_factor(const Constraint& c, double norm) {
  double desired = 1.0;
  if (c.kind == ConstraintKind::max_norm) {
    desired = norm < double(c.max_value) ? norm : double(c.max_value);
  } else if (c.kind == ConstraintKind::min_max_norm) {
    const double clipped = norm < double(c.min_value) ? double(c.min_value)
                                                      : (norm > double(c.max_value) ? double(c.max_value) : norm);
    desired = double(c.rate) * clipped + (1.0 - double(c.rate)) * norm;
  }
  return float(desired / (kConstraintEpsilon + norm));
}

// Whether a trainer device policy D applies constraints (has D::constrain); a
// policy without it compiles the hook to nothing and its binding refuses them.
template <class D, class = void>
struct has_constrain : std::false_type {};
template <class D>
struct has_constrain<D, std::void_t<decltype(&D::constrain)>> : std::true_type {};

}  // namespace fusednn
