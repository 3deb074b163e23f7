// Dropout and BatchNormalization kernels on the CPU (see fusednn/cpu_layers.h).
// They are memory-bound and small next to the GEMMs of the layers around them,
// so they are plain loops the compiler vectorises; statistics accumulate in double.
#include <cmath>
#include <vector>

#include "fusednn/cpu.h"
#include "fusednn/cpu_layers.h"
#include "fusednn/philox.h"

namespace fusednn {
namespace cpu {
namespace avx2 {
void dropout_mask_blocks(float* m, std::uint64_t groups, float rate, std::uint64_t seed, std::uint64_t t);
}  // namespace avx2

void dropout_mask(float* m, std::int64_t rows, std::int64_t cols, float rate, std::uint64_t seed,
                  std::uint64_t t, bool row_b, bool col_b) {
  const float scale = 1.0f / (1.0f - rate);
  if (!row_b && !col_b) {  // one Philox call gives four consecutive elements
    const std::uint64_t n = std::uint64_t(rows) * std::uint64_t(cols);
    std::uint64_t start = 0;
#ifdef FUSEDNN_HAVE_AVX2_TU
    if (use_avx2()) {  // whole groups of 32 elements (8 Philox blocks) with AVX2
      avx2::dropout_mask_blocks(m, n / 32, rate, seed, t);
      start = n / 32 * 32;
    }
#endif
    for (std::uint64_t e = start; e < n; e += 4) {
      const std::uint64_t blk = e >> 2;
      const Philox4 r = philox4x32_10(std::uint32_t(blk), std::uint32_t(blk >> 32), std::uint32_t(t),
                                      std::uint32_t(t >> 32), std::uint32_t(seed), std::uint32_t(seed >> 32));
      for (int k = 0; k < 4 && e + k < n; ++k) {
        const float u = float(r.v[k] >> 8) * (1.0f / 16777216.0f);
        m[e + k] = u >= rate ? scale : 0.0f;
      }
    }
    return;
  }
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const float u = philox_uniform(seed, t, noise_index(r, c, cols, row_b, col_b));
      m[r * cols + c] = u >= rate ? scale : 0.0f;
    }
}

void mul(float* y, const float* a, const float* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void batchnorm_train(float* y, float* xhat, float* invstd, const float* x, const float* gamma,
                     const float* beta, std::int64_t rows, std::int64_t cols, float eps, float* moving_mean,
                     float* moving_var, float momentum) {
  std::vector<double> mean(static_cast<std::size_t>(cols), 0.0), var(static_cast<std::size_t>(cols), 0.0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) mean[c] += x[r * cols + c];
  for (std::int64_t c = 0; c < cols; ++c) mean[c] /= double(rows);
  for (std::int64_t r = 0; r < rows; ++r)  // two passes: no cancellation for large means
    for (std::int64_t c = 0; c < cols; ++c) {
      const double d = x[r * cols + c] - mean[c];
      var[c] += d * d;
    }
  std::vector<float> m32(static_cast<std::size_t>(cols));
  for (std::int64_t c = 0; c < cols; ++c) {
    var[c] /= double(rows);
    invstd[c] = float(1.0 / std::sqrt(var[c] + double(eps)));
    m32[c] = float(mean[c]);
    if (moving_mean) moving_mean[c] = moving_mean[c] * momentum + float(mean[c]) * (1.0f - momentum);
    if (moving_var) moving_var[c] = moving_var[c] * momentum + float(var[c]) * (1.0f - momentum);
  }
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::int64_t i = r * cols + c;
      const float h = (x[i] - m32[c]) * invstd[c];
      xhat[i] = h;
      y[i] = (gamma ? gamma[c] * h : h) + (beta ? beta[c] : 0.0f);
    }
}

void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* xhat,
                        const float* invstd, const float* gamma, std::int64_t rows, std::int64_t cols) {
  std::vector<double> sdy(static_cast<std::size_t>(cols), 0.0), sdyx(static_cast<std::size_t>(cols), 0.0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::int64_t i = r * cols + c;
      sdy[c] += dy[i];
      sdyx[c] += double(dy[i]) * xhat[i];
    }
  const std::size_t nc = static_cast<std::size_t>(cols);
  std::vector<float> k(nc), a(nc), b(nc);
  const double n = double(rows);
  for (std::int64_t c = 0; c < cols; ++c) {
    if (dgamma) dgamma[c] = float(sdyx[c]);
    if (dbeta) dbeta[c] = float(sdy[c]);
    // dx = k * (dy - mean(dy) - xhat * mean(dy*xhat)), k = gamma * invstd
    k[c] = (gamma ? gamma[c] : 1.0f) * invstd[c];
    a[c] = float(sdy[c] / n);
    b[c] = float(sdyx[c] / n);
  }
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::int64_t i = r * cols + c;
      dx[i] = k[c] * (dy[i] - a[c] - xhat[i] * b[c]);
    }
}

void batchnorm_infer(float* y, const float* x, const float* gamma, const float* beta, const float* mean,
                     const float* var, std::int64_t rows, std::int64_t cols, float eps) {
  const std::size_t nc = static_cast<std::size_t>(cols);
  std::vector<float> scale(nc), shift(nc);
  for (std::int64_t c = 0; c < cols; ++c) {
    const float inv = float(1.0 / std::sqrt(double(var[c]) + double(eps)));
    scale[c] = (gamma ? gamma[c] : 1.0f) * inv;
    shift[c] = (beta ? beta[c] : 0.0f) - mean[c] * scale[c];
  }
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) y[r * cols + c] = x[r * cols + c] * scale[c] + shift[c];
}

}  // namespace cpu
}  // namespace fusednn
