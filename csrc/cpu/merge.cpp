// The elementwise merge kernels of fusednn/cpu_merge.h. A contiguous block (every row
// stride equal to cols) runs as one flat loop the compiler vectorizes; a strided one
// row by row. No FMA here (this file is compiled without -mfma): each result is one
// float32 operation, as NumPy's.
#include "fusednn/cpu_merge.h"

#include <cstddef>

namespace fusednn {
namespace cpu {

namespace {
template <class Op>
void rows_of(float* y, int ldy, const float* a, int lda, const float* b, int ldb, int rows, int cols, Op op) {
  if (ldy == cols && lda == cols && ldb == cols) {
    const std::int64_t n = std::int64_t(rows) * cols;
    for (std::int64_t k = 0; k < n; ++k) y[k] = op(a[k], b[k]);
    return;
  }
  for (int r = 0; r < rows; ++r) {
    float* yr = y + std::size_t(r) * ldy;
    const float* ar = a + std::size_t(r) * lda;
    const float* br = b + std::size_t(r) * ldb;
    for (int c = 0; c < cols; ++c) yr[c] = op(ar[c], br[c]);
  }
}
}  // namespace

void merge_binary(float* y, int ldy, const float* a, int lda, const float* b, int ldb, int rows, int cols,
                  MergeOp op) {
  switch (op) {
    case MergeOp::add:
      rows_of(y, ldy, a, lda, b, ldb, rows, cols, [](float u, float v) { return u + v; });
      break;
    case MergeOp::sub:
      rows_of(y, ldy, a, lda, b, ldb, rows, cols, [](float u, float v) { return u - v; });
      break;
    case MergeOp::mul:
      rows_of(y, ldy, a, lda, b, ldb, rows, cols, [](float u, float v) { return u * v; });
      break;
  }
}

void merge_scale(float* y, int ldy, const float* x, int ldx, float s, int rows, int cols) {
  rows_of(y, ldy, x, ldx, x, ldx, rows, cols, [s](float u, float) { return u * s; });
}

}  // namespace cpu
}  // namespace fusednn
