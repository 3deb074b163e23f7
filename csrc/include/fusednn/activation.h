// Activation kinds shared by the CPU and CUDA kernels and the bindings.
#pragma once

namespace fusednn {

// The integer values are part of the binding ABI (Python passes them).
enum class Act : int { linear = 0, relu = 1, sigmoid = 2, tanh = 3 };

inline bool act_is_valid(int a) { return a >= 0 && a <= 3; }

// Cross-entropy losses computed on logits (see cpu::xent / cuda::xent).
enum class XentKind : int { sigmoid_binary = 0, softmax_categorical = 1, softmax_sparse = 2 };

inline bool xent_kind_is_valid(int k) { return k >= 0 && k <= 2; }

}  // namespace fusednn
