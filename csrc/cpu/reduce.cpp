#include <algorithm>

#include "avx2.h"
#include "fusednn/cpu.h"

namespace fusednn {
namespace cpu {

void sum_rows(float* out, const float* x, std::size_t rows, std::size_t cols) {
#ifdef FUSEDNN_HAVE_AVX2_TU
  if (use_avx2()) {
    avx2::sum_rows(out, x, rows, cols);
    return;
  }
#endif
  // Accumulate in double, a strip of columns at a time so the accumulators
  // stay on the stack (no allocation) and in L1.
  constexpr std::size_t kStrip = 512;
  double acc[kStrip];
  for (std::size_t c0 = 0; c0 < cols; c0 += kStrip) {
    const std::size_t w = std::min(kStrip, cols - c0);
    for (std::size_t c = 0; c < w; ++c) acc[c] = 0.0;
    for (std::size_t r = 0; r < rows; ++r) {
      const float* xr = x + r * cols + c0;
      for (std::size_t c = 0; c < w; ++c) acc[c] += double(xr[c]);
    }
    for (std::size_t c = 0; c < w; ++c) out[c0 + c] = float(acc[c]);
  }
}

}  // namespace cpu
}  // namespace fusednn
