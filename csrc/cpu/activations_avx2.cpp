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

// g * act'(x) from the output v = act(x), for scikit-learn's hidden activations; shared by
// act_backward and hidden_grad so that both round alike
// (function objects, so that each template instance inlines its own derivative)
struct DRelu {
  __m256 operator()(__m256 g, __m256 v) const { return _mm256_and_ps(g, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ)); }
};
struct DSigmoid {
  __m256 operator()(__m256 g, __m256 v) const {
    return _mm256_mul_ps(g, _mm256_mul_ps(v, _mm256_sub_ps(_mm256_set1_ps(1.f), v)));
  }
};
struct DTanh {
  __m256 operator()(__m256 g, __m256 v) const {
    const __m256 one = _mm256_set1_ps(1.f);
    return _mm256_mul_ps(g, _mm256_mul_ps(_mm256_sub_ps(one, v), _mm256_add_ps(one, v)));
  }
};
struct DLinear {
  __m256 operator()(__m256 g, __m256) const { return g; }
};

// the double lanes of x added to a (lo: lanes 0..3) and b (4..7): sum_rows's accumulation
inline void add_pd2(__m256d& a, __m256d& b, __m256 x) {
  a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
  b = _mm256_add_pd(b, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
}
inline void store_pd2(float* out, __m256d a, __m256d b) {
  _mm256_storeu_ps(out, _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(a)), _mm256_cvtpd_ps(b), 1));
}

// hidden_grad for one derivative. wt: the K×cols transpose of w. Strips of 16 (then 8)
// columns over all rows, two rows at a time (wt's strip loaded once for both), so that the
// strip's double column sums stay in registers; each output is dz[r, :]·wt[:, j] summed in
// k order from zero (the tiled GEMM's order, hence its bits), then the derivative. With
// K = 1 the last cols % 8 columns go through a masked load and a scalar copy (a masked
// store costs ~10 cycles on Zen 3, once a row).
template <int R, int W, class F>
inline void hidden_rows(float* dx, const float* dz, const float* wt, int K, const float* y, std::size_t rows,
                        std::size_t cols, std::size_t c, F d, __m256d* a) {
  std::size_t r = 0;
  for (; r + R <= rows; r += R) {  // R rows at a time (wt's strip loaded once for them)
    __m256 p[R][W];
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < W; ++v) p[i][v] = _mm256_setzero_ps();
    const float* z = dz + r * K;
    for (int k = 0; k < K; ++k) {
      __m256 wv[W];
      for (int v = 0; v < W; ++v) wv[v] = _mm256_loadu_ps(wt + std::size_t(k) * cols + c + 8 * v);
      for (int i = 0; i < R; ++i) {
        const __m256 g = _mm256_broadcast_ss(z + i * K + k);
        for (int v = 0; v < W; ++v) p[i][v] = _mm256_fmadd_ps(g, wv[v], p[i][v]);
      }
    }
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < W; ++v) {
        const std::size_t at = (r + i) * cols + c + 8 * v;
        const __m256 x = d(p[i][v], _mm256_loadu_ps(y + at));
        _mm256_storeu_ps(dx + at, x);
        add_pd2(a[2 * v], a[2 * v + 1], x);
      }
  }
  for (; r < rows; ++r) {
    __m256 p[W];
    for (int v = 0; v < W; ++v) p[v] = _mm256_setzero_ps();
    for (int k = 0; k < K; ++k) {
      const __m256 g = _mm256_broadcast_ss(dz + r * K + k);
      for (int v = 0; v < W; ++v) p[v] = _mm256_fmadd_ps(g, _mm256_loadu_ps(wt + std::size_t(k) * cols + c + 8 * v), p[v]);
    }
    for (int v = 0; v < W; ++v) {
      const std::size_t at = r * cols + c + 8 * v;
      const __m256 x = d(p[v], _mm256_loadu_ps(y + at));
      _mm256_storeu_ps(dx + at, x);
      add_pd2(a[2 * v], a[2 * v + 1], x);
    }
  }
}

template <class F>
void hidden_backward(float* dx, float* db, const float* dz, const float* wt, int K, const float* y, std::size_t rows,
                     std::size_t cols, F d) {
  std::size_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    if (K == 1)
      hidden_rows<2, 2>(dx, dz, wt, K, y, rows, cols, c, d, a);
    else
      hidden_rows<4, 2>(dx, dz, wt, K, y, rows, cols, c, d, a);
    if (db) {
      store_pd2(db + c, a[0], a[1]);
      store_pd2(db + c + 8, a[2], a[3]);
    }
  }
  if (c + 8 <= cols) {
    __m256d a[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    hidden_rows<4, 1>(dx, dz, wt, K, y, rows, cols, c, d, a);
    if (db) store_pd2(db + c, a[0], a[1]);
    c += 8;
  }
  if (c < cols) {  // (K = 1 only: see hidden_grad)
    const std::size_t t = cols - c;
    const __m256i m = tail_mask(t);
    const __m256 w0 = _mm256_maskload_ps(wt + c, m);
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    alignas(32) float tmp[8];
    for (std::size_t r = 0; r < rows; ++r) {
      const std::size_t at = r * cols + c;
      const __m256 x0 = d(_mm256_mul_ps(_mm256_broadcast_ss(dz + r), w0), _mm256_maskload_ps(y + at, m));
      _mm256_store_ps(tmp, x0);
      for (std::size_t k = 0; k < t; ++k) dx[at + k] = tmp[k];
      add_pd2(a0, a1, x0);
    }
    if (db) {
      alignas(32) double s[8];
      _mm256_store_pd(s, a0);
      _mm256_store_pd(s + 4, a1);
      for (std::size_t k = 0; k < t; ++k) db[c + k] = float(s[k]);
    }
  }
}

}  // namespace

bool act_forward(float* y, const float* x, std::size_t n, Act act) {
  using namespace act_const;
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f);
  switch (act) {
    case Act::relu: map1(y, x, n, [](__m256 v) { return act_ps(v, Act::relu); }); return true;
    case Act::sigmoid: map1(y, x, n, [](__m256 v) { return sigmoid_ps(v); }); return true;
    case Act::tanh: map1(y, x, n, [](__m256 v) { return tanh_ps(v); }); return true;
    case Act::linear:
      if (y != x) map1(y, x, n, [](__m256 v) { return v; });
      return true;
    case Act::elu:
      map1(y, x, n, [zero](__m256 v) {
        return _mm256_blendv_ps(v, expm1_ps(v), _mm256_cmp_ps(v, zero, _CMP_LE_OQ));
      });
      return true;
    case Act::selu:
      map1(y, x, n, [zero](__m256 v) {
        const __m256 neg = _mm256_mul_ps(_mm256_set1_ps(kSeluAlpha), expm1_ps(v));
        return _mm256_mul_ps(_mm256_set1_ps(kSeluScale), _mm256_blendv_ps(v, neg, _mm256_cmp_ps(v, zero, _CMP_LE_OQ)));
      });
      return true;
    case Act::leaky_relu:
      map1(y, x, n, [zero](__m256 v) {
        return _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(kLeakySlope)), _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
      });
      return true;
    case Act::gelu_tanh:
      map1(y, x, n, [](__m256 v) {
        const __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
        const __m256 u = _mm256_mul_ps(_mm256_set1_ps(2.f * kGeluTanhC), _mm256_fmadd_ps(_mm256_set1_ps(kGeluTanhK), v3, v));
        return _mm256_mul_ps(v, sigmoid_ps(u));  // x (1 + tanh(u/2)) / 2 = x sigmoid(u)
      });
      return true;
    case Act::swish: map1(y, x, n, [](__m256 v) { return _mm256_mul_ps(v, sigmoid_ps(v)); }); return true;
    case Act::softsign:
      map1(y, x, n, [one](__m256 v) {
        return _mm256_div_ps(v, _mm256_add_ps(one, _mm256_andnot_ps(_mm256_set1_ps(-0.f), v)));
      });
      return true;
    case Act::hard_sigmoid:
      map1(y, x, n, [zero, one](__m256 v) {
        // (x + 3) / 6: x + 3 is exact near -3, where x/6 + 0.5 would cancel
        const __m256 h = _mm256_div_ps(_mm256_add_ps(v, _mm256_set1_ps(3.f)), _mm256_set1_ps(6.f));
        return keep_nan(_mm256_min_ps(_mm256_max_ps(h, zero), one), v);
      });
      return true;
    case Act::hard_swish:
      map1(y, x, n, [zero](__m256 v) {
        const __m256 r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, _mm256_set1_ps(3.f)), zero), _mm256_set1_ps(6.f));
        return keep_nan(_mm256_div_ps(_mm256_mul_ps(v, r), _mm256_set1_ps(6.f)), v);
      });
      return true;
    case Act::relu6:
      map1(y, x, n, [zero](__m256 v) {
        return keep_nan(_mm256_min_ps(_mm256_max_ps(v, zero), _mm256_set1_ps(6.f)), v);
      });
      return true;
    case Act::mish:
      map1(y, x, n, [](__m256 v) {
        // tanh(log(1 + e)) = n / (n + 2) with n = e (e + 2): no cancellation anywhere
        const __m256 e = exp_ps(_mm256_min_ps(v, _mm256_set1_ps(20.f)));
        const __m256 nn = _mm256_mul_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.f)));
        return keep_nan(_mm256_mul_ps(v, _mm256_div_ps(nn, _mm256_add_ps(nn, _mm256_set1_ps(2.f)))), v);
      });
      return true;
    case Act::exponential:
      map1(y, x, n, [](__m256 v) {  // exp_ps saturates; e^x overflows to inf like the C library
        const __m256 inf = _mm256_set1_ps(__builtin_inff());
        return keep_nan(_mm256_blendv_ps(exp_ps(v), inf, _mm256_cmp_ps(v, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ)), v);
      });
      return true;
    case Act::gelu:
      map1(y, x, n, [](__m256 v) { return keep_nan(_mm256_mul_ps(v, normal_cdf_ps(v)), v); });
      return true;
    case Act::softplus:
      map1(y, x, n, [zero](__m256 v) {  // max(x, 0) + log1p(e^-|x|)
        const __m256 e = exp_ps(_mm256_sub_ps(zero, _mm256_andnot_ps(_mm256_set1_ps(-0.f), v)));
        return keep_nan(_mm256_add_ps(_mm256_max_ps(v, zero), log1p_unit_ps(e)), v);
      });
      return true;
    default: return false;
  }
}

bool act_backward(float* dx, const float* dy, const float* y, std::size_t n, Act act) {
  using namespace act_const;
  const __m256 one = _mm256_set1_ps(1.f), zero = _mm256_setzero_ps();
  switch (act) {
    case Act::relu:
      map2(dx, dy, y, n, DRelu{});
      return true;
    case Act::sigmoid:
      map2(dx, dy, y, n, DSigmoid{});
      return true;
    case Act::tanh:
      map2(dx, dy, y, n, DTanh{});
      return true;
    case Act::linear:
      if (dx != dy) map1(dx, dy, n, [](__m256 v) { return v; });
      return true;
    case Act::elu:  // from y: 1 for y > 0, else y + 1 = e^x
      map2(dx, dy, y, n, [one, zero](__m256 g, __m256 v) {
        return _mm256_mul_ps(g, _mm256_blendv_ps(_mm256_add_ps(v, one), one, _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
      });
      return true;
    case Act::selu:
      map2(dx, dy, y, n, [zero](__m256 g, __m256 v) {
        const __m256 neg = _mm256_add_ps(v, _mm256_set1_ps(kSeluScale * kSeluAlpha));
        return _mm256_mul_ps(g, _mm256_blendv_ps(neg, _mm256_set1_ps(kSeluScale), _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
      });
      return true;
    case Act::leaky_relu:
      map2(dx, dy, y, n, [zero](__m256 g, __m256 v) {
        return _mm256_blendv_ps(_mm256_mul_ps(g, _mm256_set1_ps(kLeakySlope)), g, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
      });
      return true;
    case Act::swish:  // from x: s (1 + x (1 - s))
      map2(dx, dy, y, n, [one](__m256 g, __m256 v) {
        const __m256 s = sigmoid_ps(v);
        return _mm256_mul_ps(g, _mm256_mul_ps(s, _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one)));
      });
      return true;
    case Act::gelu_tanh:  // from x: s + 2 x s (1 - s) c (1 + 3 k x^2), s = sigmoid(2u)
      map2(dx, dy, y, n, [one](__m256 g, __m256 v) {
        const __m256 v2 = _mm256_mul_ps(v, v);
        const __m256 u2 = _mm256_mul_ps(_mm256_set1_ps(2.f * kGeluTanhC),
                                        _mm256_fmadd_ps(_mm256_set1_ps(kGeluTanhK), _mm256_mul_ps(v2, v), v));
        const __m256 s = sigmoid_ps(u2);
        const __m256 du = _mm256_mul_ps(_mm256_set1_ps(2.f * kGeluTanhC),
                                        _mm256_fmadd_ps(_mm256_set1_ps(3.f * kGeluTanhK), v2, one));
        const __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(v, _mm256_mul_ps(s, _mm256_sub_ps(one, s))), du, s);
        return _mm256_mul_ps(g, d);
      });
      return true;
    case Act::softsign:  // from x: 1 / (1 + |x|)^2
      map2(dx, dy, y, n, [one](__m256 g, __m256 v) {
        const __m256 q = _mm256_add_ps(one, _mm256_andnot_ps(_mm256_set1_ps(-0.f), v));
        return _mm256_div_ps(g, _mm256_mul_ps(q, q));
      });
      return true;
    case Act::hard_sigmoid:  // from y: 1/6 inside (0, 1)
      map2(dx, dy, y, n, [one, zero](__m256 g, __m256 v) {
        const __m256 in = _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), _mm256_cmp_ps(v, one, _CMP_LT_OQ));
        return _mm256_and_ps(_mm256_mul_ps(g, _mm256_set1_ps(float(1.0 / 6.0))), in);
      });
      return true;
    case Act::hard_swish:  // from x: 0 below -3, 1 above 3, (2x + 3)/6 between
      map2(dx, dy, y, n, [one](__m256 g, __m256 v) {
        __m256 d = _mm256_div_ps(_mm256_fmadd_ps(_mm256_set1_ps(2.f), v, _mm256_set1_ps(3.f)), _mm256_set1_ps(6.f));
        d = _mm256_blendv_ps(d, one, _mm256_cmp_ps(v, _mm256_set1_ps(3.f), _CMP_GT_OQ));
        d = _mm256_and_ps(d, _mm256_cmp_ps(v, _mm256_set1_ps(-3.f), _CMP_GE_OQ));
        return _mm256_mul_ps(g, d);
      });
      return true;
    case Act::relu6:  // from y: inside (0, 6)
      map2(dx, dy, y, n, [zero](__m256 g, __m256 v) {
        const __m256 in = _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), _mm256_cmp_ps(v, _mm256_set1_ps(6.f), _CMP_LT_OQ));
        return _mm256_and_ps(g, in);
      });
      return true;
    case Act::exponential:
      map2(dx, dy, y, n, [](__m256 g, __m256 v) { return _mm256_mul_ps(g, v); });
      return true;
    case Act::gelu:  // from x: Phi(x) + x phi(x)
      map2(dx, dy, y, n, [](__m256 g, __m256 v) {
        const __m256 pdf = _mm256_mul_ps(_mm256_set1_ps(0.39894228040143268f),
                                         exp_ps(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(v, v))));
        return _mm256_mul_ps(g, _mm256_fmadd_ps(v, pdf, normal_cdf_ps(v)));
      });
      return true;
    case Act::softplus:  // from y: sigmoid(x) = 1 - e^-y
      map2(dx, dy, y, n, [](__m256 g, __m256 v) {
        return _mm256_mul_ps(g, _mm256_sub_ps(_mm256_setzero_ps(), expm1_ps(_mm256_sub_ps(_mm256_setzero_ps(), v))));
      });
      return true;
    case Act::mish:  // from x: tanh(sp) + x sech^2(sp) sigmoid(x), all from e = e^x
      map2(dx, dy, y, n, [one](__m256 g, __m256 v) {
        const __m256 two = _mm256_set1_ps(2.f);
        const __m256 e = exp_ps(_mm256_min_ps(v, _mm256_set1_ps(20.f)));
        const __m256 nn = _mm256_mul_ps(e, _mm256_add_ps(e, two));
        const __m256 d2 = _mm256_add_ps(nn, two);
        const __m256 t = _mm256_div_ps(nn, d2);
        const __m256 sech2 = _mm256_div_ps(_mm256_mul_ps(_mm256_set1_ps(4.f), _mm256_add_ps(nn, one)), _mm256_mul_ps(d2, d2));
        const __m256 sg = _mm256_div_ps(e, _mm256_add_ps(one, e));
        __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(v, sech2), sg, t);
        d = _mm256_blendv_ps(d, one, _mm256_cmp_ps(v, _mm256_set1_ps(20.f), _CMP_GT_OQ));
        return _mm256_mul_ps(g, d);
      });
      return true;
    default: return false;
  }
}

bool hidden_grad(float* dx, float* db, const float* dz, const float* wt, int k, const float* y, std::size_t rows,
                 std::size_t cols, Act act) {
  switch (act) {
    case Act::relu: hidden_backward(dx, db, dz, wt, k, y, rows, cols, DRelu{}); return true;
    case Act::sigmoid: hidden_backward(dx, db, dz, wt, k, y, rows, cols, DSigmoid{}); return true;
    case Act::tanh: hidden_backward(dx, db, dz, wt, k, y, rows, cols, DTanh{}); return true;
    case Act::linear: hidden_backward(dx, db, dz, wt, k, y, rows, cols, DLinear{}); return true;
    default: return false;
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
