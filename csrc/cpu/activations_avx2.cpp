// AVX2+FMA activations: one pass, no temporaries; the tail (n % 8) goes
// through a masked load/store so it uses the same arithmetic as the body.
#include <immintrin.h>

#include "avx2.h"
#include "simd_math_avx2.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

namespace {

inline __m256i tail_mask(std::size_t r) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(r)), idx);
}

template <class F>
inline void map1(float* y, const float* x, std::size_t n, F f) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    _mm256_storeu_ps(y + i, f(a));
    _mm256_storeu_ps(y + i + 8, f(b));
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(y + i, m, f(_mm256_maskload_ps(x + i, m)));
  }
}

template <class F>
inline void map2(float* z, const float* x, const float* y, std::size_t n, F f) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(z + i, f(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(z + i, m, f(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m)));
  }
}

}  // namespace

void act_forward(float* y, const float* x, std::size_t n, Act act) {
  switch (act) {
    case Act::relu: return map1(y, x, n, [](__m256 v) { return act_ps(v, Act::relu); });
    case Act::sigmoid: return map1(y, x, n, [](__m256 v) { return sigmoid_ps(v); });
    case Act::tanh: return map1(y, x, n, [](__m256 v) { return tanh_ps(v); });
    default:
      if (y != x) map1(y, x, n, [](__m256 v) { return v; });
  }
}

void act_backward(float* dx, const float* dy, const float* y, std::size_t n, Act act) {
  const __m256 one = _mm256_set1_ps(1.f);
  switch (act) {
    case Act::relu:
      return map2(dx, dy, y, n, [](__m256 g, __m256 v) {
        return _mm256_and_ps(g, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
      });
    case Act::sigmoid:
      return map2(dx, dy, y, n, [one](__m256 g, __m256 v) {
        return _mm256_mul_ps(g, _mm256_mul_ps(v, _mm256_sub_ps(one, v)));
      });
    case Act::tanh:
      return map2(dx, dy, y, n, [one](__m256 g, __m256 v) {
        return _mm256_mul_ps(g, _mm256_mul_ps(_mm256_sub_ps(one, v), _mm256_add_ps(one, v)));
      });
    default:
      if (dx != dy) map1(dx, dy, n, [](__m256 v) { return v; });
  }
}

void bias_act_row(float* y, const float* x, const float* b, std::size_t cols, Act act) {
  map2(y, x, b, cols, [act](__m256 v, __m256 bb) { return act_ps(_mm256_add_ps(v, bb), act); });
}

void softmax_row(float* y, const float* x, std::size_t cols) {
  // max of the row, exp(x - max) stored in y, then one scaling pass
  __m256 vmax = _mm256_set1_ps(x[0]);
  std::size_t i = 0;
  for (; i + 8 <= cols; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  float mx = x[0];
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  for (float v : lanes) mx = v > mx ? v : mx;
  for (; i < cols; ++i) mx = x[i] > mx ? x[i] : mx;
  const __m256 shift = _mm256_set1_ps(mx);
  __m256 vsum = _mm256_setzero_ps();
  map1(y, x, cols, [&](__m256 v) {
    const __m256 e = exp_ps(_mm256_sub_ps(v, shift));
    return e;
  });
  double sum = 0.0;
  i = 0;
  for (; i + 8 <= cols; i += 8) vsum = _mm256_add_ps(vsum, _mm256_loadu_ps(y + i));
  _mm256_store_ps(lanes, vsum);
  for (float v : lanes) sum += v;
  for (; i < cols; ++i) sum += y[i];
  const __m256 inv = _mm256_set1_ps(float(1.0 / sum));
  map1(y, y, cols, [inv](__m256 v) { return _mm256_mul_ps(v, inv); });
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
