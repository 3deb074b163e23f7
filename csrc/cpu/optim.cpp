// Optimizer updates in the exact operation order of Keras 3, so that the
// cpu, cuda and numpy backends agree to float32 rounding.
#include <cmath>

#include "avx2.h"
#include "fusednn/cpu.h"
#include "threads.h"

namespace fusednn {
namespace cpu {

void sgd_update(float* w, const float* g, float* v, std::size_t n, float lr, float momentum,
                bool nesterov) {
  parallel_chunks(n, [&](std::size_t b, std::size_t e) {
#ifdef FUSEDNN_HAVE_AVX2_TU
    if (use_avx2()) return avx2::sgd_update(w + b, g + b, v ? v + b : nullptr, e - b, lr, momentum, nesterov);
#endif
    if (momentum == 0.f || v == nullptr) {
      for (std::size_t i = b; i < e; ++i) w[i] -= lr * g[i];
    } else if (nesterov) {
      for (std::size_t i = b; i < e; ++i) {
        const float vi = momentum * v[i] - lr * g[i];
        v[i] = vi;
        w[i] += momentum * vi - lr * g[i];
      }
    } else {
      for (std::size_t i = b; i < e; ++i) {
        const float vi = momentum * v[i] - lr * g[i];
        v[i] = vi;
        w[i] += vi;
      }
    }
  });
}

void adam_update(float* w, const float* g, float* m, float* v, std::size_t n, float lr, float beta1,
                 float beta2, float eps, std::int64_t step) {
  const double t = double(step);
  const float alpha =
      float(double(lr) * std::sqrt(1.0 - std::pow(double(beta2), t)) /
            (1.0 - std::pow(double(beta1), t)));
  const float c1 = 1.f - beta1, c2 = 1.f - beta2;
  parallel_chunks(n, [&](std::size_t b, std::size_t e) {
#ifdef FUSEDNN_HAVE_AVX2_TU
    if (use_avx2()) return avx2::adam_update(w + b, g + b, m + b, v + b, e - b, alpha, c1, c2, eps);
#endif
    for (std::size_t i = b; i < e; ++i) {
      const float gi = g[i];
      const float mi = m[i] + (gi - m[i]) * c1;
      const float vi = v[i] + (gi * gi - v[i]) * c2;
      m[i] = mi;
      v[i] = vi;
      w[i] -= (mi * alpha) / (std::sqrt(vi) + eps);
    }
  });
}

}  // namespace cpu
}  // namespace fusednn
