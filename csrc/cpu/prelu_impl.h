// The PReLU loops (fusednn/cpu_layers.h), included by prelu.cpp (portable x86-64) and
// prelu_avx2.cpp (compiled with -mavx2 -mfma): the same source, so both give the same
// bits. The AVX2 copy matters beyond vector width: right after the AVX2 GEMMs, legacy
// SSE code pays the AVX-SSE transition penalty (~20 ns per element measured in the
// fused trainer, against ~2 ns when called alone).
#pragma once
#include <cstdint>
#include <vector>

namespace fusednn {
namespace cpu {
namespace prelu_impl {
// internal linkage: each including file (portable, AVX2) keeps its own compiled copy
namespace {


// one row: y = x > 0 ? x : a * x, with a per column (a_step 1) or shared (a_step 0)
// Branch-free (max/min and 0/1 masks, which the compiler vectorizes): the branchy
// form mispredicted on half of the elements of fresh data every step, ~20 ns per
// element inside the fused trainer. The results equal the select forms exactly (up to
// the sign of a zero): y = x > 0 ? x : a*x, dx = dy * (x > 0 ? 1 : x < 0 ? a : 0).
inline void forward_row(float* __restrict y, const float* __restrict x, const float* __restrict a,
                        std::int64_t cols, bool shared) {
  if (shared) {
    const float s = a[0];
    for (std::int64_t c = 0; c < cols; ++c) {
      const float v = x[c], pos = v > 0.f ? v : 0.f, neg = v < 0.f ? v : 0.f;
      y[c] = pos + s * neg;
    }
  } else {
    for (std::int64_t c = 0; c < cols; ++c) {
      const float v = x[c], pos = v > 0.f ? v : 0.f, neg = v < 0.f ? v : 0.f;
      y[c] = pos + a[c] * neg;
    }
  }
}

inline void backward_row(float* __restrict dx, double* __restrict acc, const float* __restrict dy,
                         const float* __restrict x, const float* __restrict a, std::int64_t cols, bool shared) {
  for (std::int64_t c = 0; c < cols; ++c) {
    const float v = x[c], g = dy[c];
    const float s = shared ? a[0] : a[c];
    const float neg = v < 0.f ? v : 0.f;                                  // min(x, 0)
    const float d = float(v > 0.f) + s * float(v < 0.f);               // 1, alpha or 0
    acc[c] += double(g) * double(neg);  // a float product is exact in double
    // relu's derivative is 0 at 0 (Keras' and torch's convention)
    dx[c] = g * d;
  }
}

inline void forward(float* y, const float* x, const float* alpha, std::int64_t rows, std::int64_t cols,
                    std::int64_t alpha_n) {
  for (std::int64_t r = 0; r < rows; ++r) forward_row(y + r * cols, x + r * cols, alpha, cols, alpha_n == 1);
}

inline void backward(float* dx, float* dalpha, const float* dy, const float* x, const float* alpha,
                     std::int64_t rows, std::int64_t cols, std::int64_t alpha_n) {
  const bool shared = alpha_n == 1;
  thread_local std::vector<double> acc;  // reused: no allocation per step
  acc.assign(std::size_t(cols), 0.0);
  for (std::int64_t r = 0; r < rows; ++r)
    backward_row(dx + r * cols, acc.data(), dy + r * cols, x + r * cols, alpha, cols, shared);
  if (shared) {
    double total = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) total += acc[std::size_t(c)];
    dalpha[0] = float(total);
  } else {
    for (std::int64_t c = 0; c < cols; ++c) dalpha[c] = float(acc[std::size_t(c)]);
  }
}

}  // namespace
}  // namespace prelu_impl
}  // namespace cpu
}  // namespace fusednn
