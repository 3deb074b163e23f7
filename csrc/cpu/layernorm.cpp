// LayerNormalization kernels on the CPU (see fusednn/cpu_layers.h): the per-op
// path and the fused trainer's layernorm step (fusednn/layer_steps.h) call these,
// so both give the same numbers. Each row is normalised over its columns; the
// row statistics and the parameter-gradient column sums accumulate in double,
// and the float32 steps follow the NumPy reference (fusednn/backends/base.py,
// Backend.layernorm_forward/backward) operation for operation. Memory-bound and
// small next to the GEMMs around them: plain loops.
#include <cmath>
#include <vector>

#include "fusednn/cpu_layers.h"

namespace fusednn {
namespace cpu {

void layernorm_forward(float* y, float* xhat, float* invstd, const float* x, const float* gamma,
                       const float* beta, std::int64_t rows, std::int64_t cols, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    double mean = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) mean += xr[c];
    mean /= double(cols);
    double var = 0.0;  // two passes: no cancellation for large means
    for (std::int64_t c = 0; c < cols; ++c) {
      const double d = double(xr[c]) - mean;
      var += d * d;
    }
    var /= double(cols);
    const float inv = float(1.0 / std::sqrt(var + double(eps)));
    const float m32 = float(mean);
    invstd[r] = inv;
    float* hr = xhat + r * cols;
    float* yr = y + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) {
      const float h = (xr[c] - m32) * inv;
      hr[c] = h;
      const float s = gamma ? h * gamma[c] : h;
      yr[c] = beta ? s + beta[c] : s;
    }
  }
}

void layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                        const float* invstd, const float* gamma, std::int64_t rows, std::int64_t cols) {
  if (dgamma || dbeta) {  // column sums over the rows, in double
    const std::size_t nc = static_cast<std::size_t>(cols);
    std::vector<double> sg(dgamma ? nc : 0, 0.0), sb(dbeta ? nc : 0, 0.0);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) {
        const std::int64_t i = r * cols + c;
        if (dgamma) sg[c] += double(dy[i]) * double(xhat[i]);
        if (dbeta) sb[c] += double(dy[i]);
      }
    for (std::int64_t c = 0; c < cols; ++c) {
      if (dgamma) dgamma[c] = float(sg[c]);
      if (dbeta) dbeta[c] = float(sb[c]);
    }
  }
  if (!dx) return;
  // per row, with g = dy * gamma: dx = invstd * (g - mean(g) - xhat * mean(g * xhat))
  for (std::int64_t r = 0; r < rows; ++r) {
    const float *dyr = dy + r * cols, *hr = xhat + r * cols;
    double sa = 0.0, sb = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) {
      const float g = gamma ? dyr[c] * gamma[c] : dyr[c];
      sa += g;
      sb += double(g) * double(hr[c]);
    }
    const float a = float(sa / double(cols)), b = float(sb / double(cols)), inv = invstd[r];
    float* dxr = dx + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) {
      const float g = gamma ? dyr[c] * gamma[c] : dyr[c];
      dxr[c] = inv * ((g - a) - hr[c] * b);
    }
  }
}

}  // namespace cpu
}  // namespace fusednn
