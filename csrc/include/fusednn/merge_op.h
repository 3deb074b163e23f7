// The binary elementwise operations of the merge layers' kernels (fusednn/cpu_merge.h,
// used by the graph blocks of fusednn/trainer.h): y = a + b, a - b, a * b.
#pragma once

namespace fusednn {
enum class MergeOp : int { add = 0, sub = 1, mul = 2 };
}  // namespace fusednn
