// CPU kernels of the elementwise merges (Add, Subtract, Multiply, Average) of the fused
// trainer's graph blocks (fusednn/trainer.h): row-major matrix blocks with their own
// row strides, so a merge can read a column slice of the packed input batch (a model
// input of a multi-input model) in place. Scalar loops compiled without FMA: one
// rounding per operation, as the NumPy per-op path (fusednn/layers/merging.py) does.
#pragma once
#include <cstdint>

#include "fusednn/merge_op.h"

namespace fusednn {
namespace cpu {

// y[r, c] = a[r, c] op b[r, c] for r < rows, c < cols; ldy/lda/ldb are the row strides
// (in floats, >= cols). y may be a or b (in place), not a partial overlap.
void merge_binary(float* y, int ldy, const float* a, int lda, const float* b, int ldb, int rows, int cols,
                  MergeOp op);

// y[r, c] = x[r, c] * s (float32 product): Average's 1/n, Subtract's -1. y may be x.
void merge_scale(float* y, int ldy, const float* x, int ldx, float s, int rows, int cols);

}  // namespace cpu
}  // namespace fusednn
