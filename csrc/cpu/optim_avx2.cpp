// AVX2+FMA optimizer updates: the operation order of optim.cpp (Keras 3), eight
// parameters per instruction. On the small models the fused training path runs,
// the Adam update was the largest single cost of a step in the portable build.
#include <immintrin.h>

#include "avx2.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

void adam_update(float* w, const float* g, float* m, float* v, std::size_t n, float alpha, float c1,
                 float c2, float eps) {
  const __m256 va = _mm256_set1_ps(alpha), v1 = _mm256_set1_ps(c1), v2 = _mm256_set1_ps(c2),
               ve = _mm256_set1_ps(eps);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    __m256 mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i);
    mi = _mm256_fmadd_ps(_mm256_sub_ps(gi, mi), v1, mi);               // m + (g - m) * c1
    vi = _mm256_fmadd_ps(_mm256_fmsub_ps(gi, gi, vi), v2, vi);         // v + (g*g - v) * c2
    const __m256 step = _mm256_div_ps(_mm256_mul_ps(mi, va), _mm256_add_ps(_mm256_sqrt_ps(vi), ve));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    _mm256_storeu_ps(w + i, _mm256_sub_ps(_mm256_loadu_ps(w + i), step));
  }
  for (; i < n; ++i) {  // the same arithmetic, one element at a time
    const float gi = g[i];
    const float mi = __builtin_fmaf(gi - m[i], c1, m[i]);
    const float vi = __builtin_fmaf(__builtin_fmaf(gi, gi, -v[i]), c2, v[i]);
    m[i] = mi;
    v[i] = vi;
    w[i] -= (mi * alpha) / (__builtin_sqrtf(vi) + eps);
  }
}

void sgd_update(float* w, const float* g, float* v, std::size_t n, float lr, float momentum,
                bool nesterov) {
  const __m256 vl = _mm256_set1_ps(lr), vm = _mm256_set1_ps(momentum);
  std::size_t i = 0;
  if (momentum == 0.f || v == nullptr) {
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(w + i, _mm256_fnmadd_ps(vl, _mm256_loadu_ps(g + i), _mm256_loadu_ps(w + i)));
    for (; i < n; ++i) w[i] = __builtin_fmaf(-lr, g[i], w[i]);
    return;
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 lg = _mm256_mul_ps(vl, gi);
    const __m256 vi = _mm256_fmsub_ps(vm, _mm256_loadu_ps(v + i), lg);  // momentum*v - lr*g
    _mm256_storeu_ps(v + i, vi);
    const __m256 dw = nesterov ? _mm256_fmsub_ps(vm, vi, lg) : vi;
    _mm256_storeu_ps(w + i, _mm256_add_ps(_mm256_loadu_ps(w + i), dw));
  }
  for (; i < n; ++i) {
    const float lg = lr * g[i];
    const float vi = __builtin_fmaf(momentum, v[i], -lg);
    v[i] = vi;
    w[i] += nesterov ? __builtin_fmaf(momentum, vi, -lg) : vi;
  }
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
