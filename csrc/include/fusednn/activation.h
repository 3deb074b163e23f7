// Activation kinds shared by the CPU and CUDA kernels and the bindings.
#pragma once

namespace fusednn {

// The integer values are part of the binding ABI (Python passes them; the
// name table is fusednn.backends.base.ACTIVATIONS). Keras 3's formulas and
// default constants: elu alpha = 1, leaky_relu negative_slope = 0.2, selu's
// fixed scale/alpha, gelu exact (erf; Keras' default for 'gelu') and
// gelu_tanh (approximate=True), hard_sigmoid = relu6(x + 3) / 6,
// hard_swish = x * hard_sigmoid(x), mish = x * tanh(softplus(x)).
enum class Act : int {
  linear = 0, relu = 1, sigmoid = 2, tanh = 3,
  elu = 4, selu = 5, leaky_relu = 6, gelu = 7, gelu_tanh = 8, swish = 9, softplus = 10,
  softsign = 11, hard_sigmoid = 12, hard_swish = 13, relu6 = 14, mish = 15, exponential = 16,
};

inline bool act_is_valid(int a) { return a >= 0 && a <= 16; }

// The backward kernels take one saved array besides dy: the forward OUTPUT for
// most activations (no extra memory), but the forward INPUT (pre-activation)
// for these, whose derivative cannot be recovered from the output (gelu,
// swish, mish and hard_swish are not monotonic; softsign's 1 - |y| cancels).
inline bool act_backward_needs_input(Act a) {
  return a == Act::gelu || a == Act::gelu_tanh || a == Act::swish || a == Act::mish ||
         a == Act::hard_swish || a == Act::softsign;
}

// The activations the GEMM epilogues apply themselves; matmul applies any
// other one in a second elementwise pass over C.
inline bool act_in_gemm_epilogue(Act a) { return int(a) <= 3; }

namespace act_const {
constexpr float kLeakySlope = 0.2f;
constexpr float kSeluAlpha = 1.67326324235437728481f;
constexpr float kSeluScale = 1.05070098735548049342f;
constexpr float kGeluTanhC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluTanhK = 0.044715f;
}  // namespace act_const

// Cross-entropy losses computed on logits (see cpu::xent / cuda::xent).
enum class XentKind : int { sigmoid_binary = 0, softmax_categorical = 1, softmax_sparse = 2 };

inline bool xent_kind_is_valid(int k) { return k >= 0 && k <= 2; }

// The other Keras losses, as fused value + gradient kernels (cpu::loss_grad,
// cuda::loss_grad); the name table is fusednn.backends.base.LOSS_FNS. All use
// Keras' default reduction: elementwise kinds average over every element,
// row kinds (categorical_hinge, kl_divergence, cosine_similarity) over rows.
enum class LossFn : int {
  mae = 0, mape = 1, msle = 2, huber = 3, log_cosh = 4, hinge = 5, squared_hinge = 6,
  categorical_hinge = 7, kl_divergence = 8, poisson = 9, cosine_similarity = 10,
  binary_focal_crossentropy = 11, categorical_focal_crossentropy = 12,
};

inline bool loss_fn_is_valid(int k) { return k >= 0 && k <= 12; }
inline bool loss_fn_is_rowwise(LossFn k) {
  return k == LossFn::categorical_hinge || k == LossFn::kl_divergence || k == LossFn::cosine_similarity ||
         k == LossFn::categorical_focal_crossentropy;
}

// LossParams::flags bits (the focal losses)
namespace loss_flags {
constexpr int from_logits = 1;      // pred holds logits: sigmoid (binary) / softmax (categorical) first
constexpr int class_balancing = 2;  // binary focal: weight alpha for class 1, 1 - alpha for class 0
}  // namespace loss_flags

// The constants of a LossFn loss. One float (Huber's delta) converts to it, so the
// losses with one parameter pass just that; the focal losses use all of it.
struct LossParams {
  float param = 0.f;      // Huber's delta; the focal losses' gamma
  float alpha = 0.f;      // the focal losses' alpha
  float smoothing = 0.f;  // the focal losses' label_smoothing (applied to the targets in the kernel)
  int flags = 0;          // loss_flags bits
#ifdef __CUDACC__
  __host__ __device__
#endif
  constexpr LossParams(float p = 0.f, float a = 0.f, float s = 0.f, int f = 0)  // NOLINT: implicit from a float
      : param(p), alpha(a), smoothing(s), flags(f) {}
};

}  // namespace fusednn
