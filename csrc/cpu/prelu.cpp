// PReLU on the CPU (fusednn/cpu_layers.h): the per-op layer's kernels and the fused
// trainer's prelu step (layer_steps.h), so both paths give the same bits.
#include <vector>

#include "fusednn/cpu_layers.h"

namespace fusednn {
namespace cpu {

void prelu_forward(float* y, const float* x, const float* alpha, std::int64_t rows, std::int64_t cols,
                   std::int64_t alpha_n) {
  const bool shared = alpha_n == 1;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) {
      const float v = xr[c];
      yr[c] = v > 0.f ? v : (shared ? alpha[0] : alpha[c]) * v;
    }
  }
}

void prelu_backward(float* dx, float* dalpha, const float* dy, const float* x, const float* alpha,
                    std::int64_t rows, std::int64_t cols, std::int64_t alpha_n) {
  const bool shared = alpha_n == 1;
  thread_local std::vector<double> acc;  // reused: no allocation per step
  acc.assign(std::size_t(cols), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const float* gr = dy + r * cols;
    float* dr = dx + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) {
      const float v = xr[c], g = gr[c];  // read dy before dx (they may alias)
      const float a = shared ? alpha[0] : alpha[c];
      if (v < 0.f) acc[std::size_t(c)] += double(g) * double(v);
      // relu's derivative is 0 at 0 (Keras' and torch's convention)
      dr[c] = v > 0.f ? g : (v < 0.f ? g * a : 0.f);
    }
  }
  if (shared) {
    double total = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) total += acc[std::size_t(c)];
    dalpha[0] = float(total);
  } else {
    for (std::int64_t c = 0; c < cols; ++c) dalpha[c] = float(acc[std::size_t(c)]);
  }
}

}  // namespace cpu
}  // namespace fusednn
