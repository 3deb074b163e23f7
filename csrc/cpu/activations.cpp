// Elementwise activations: dispatch to the AVX2 versions when the CPU has
// them, else portable loops that use the C library's exp/tanh.
#include <algorithm>
#include <cmath>
#include <vector>

#include "fusednn/act_ext.h"
#include "avx2.h"
#include "fusednn/cpu.h"
#include "threads.h"

namespace fusednn {
namespace cpu {

namespace {

inline float sigmoid1(float v) {
  // e^x / (1 + e^x) for negative x keeps precision and never overflows.
  if (v < 0.f) {
    const float e = std::exp(v);
    return e / (1.f + e);
  }
  return 1.f / (1.f + std::exp(-v));
}

void forward_portable(float* y, const float* x, std::size_t n, Act act) {
  switch (act) {
    case Act::relu:
      for (std::size_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : x[i];
      break;
    case Act::sigmoid:
      for (std::size_t i = 0; i < n; ++i) y[i] = sigmoid1(x[i]);
      break;
    case Act::tanh:
      for (std::size_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      break;
    case Act::linear:
      if (y != x)
        for (std::size_t i = 0; i < n; ++i) y[i] = x[i];
      break;
    default:
      for (std::size_t i = 0; i < n; ++i) y[i] = act_ext::act_fwd(x[i], act);
  }
}

void backward_portable(float* dx, const float* dy, const float* y, std::size_t n, Act act) {
  switch (act) {
    case Act::relu:
      for (std::size_t i = 0; i < n; ++i) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
      break;
    case Act::sigmoid:
      for (std::size_t i = 0; i < n; ++i) dx[i] = dy[i] * (y[i] * (1.f - y[i]));
      break;
    case Act::tanh:
      // (1-y)(1+y) rather than 1-y*y: no cancellation when |y| is close to 1
      for (std::size_t i = 0; i < n; ++i) dx[i] = dy[i] * ((1.f - y[i]) * (1.f + y[i]));
      break;
    case Act::linear:
      if (dx != dy)
        for (std::size_t i = 0; i < n; ++i) dx[i] = dy[i];
      break;
    default:  // y is the saved input for act_backward_needs_input(act)
      for (std::size_t i = 0; i < n; ++i) dx[i] = act_ext::act_bwd(dy[i], y[i], act);
  }
}

}  // namespace

void act_forward(float* y, const float* x, std::size_t n, Act act) {
  parallel_chunks(n, [&](std::size_t b, std::size_t e) {
#ifdef FUSEDNN_HAVE_AVX2_TU
    if (use_avx2() && avx2::act_forward(y + b, x + b, e - b, act)) return;
#endif
    forward_portable(y + b, x + b, e - b, act);
  });
}

void act_backward(float* dx, const float* dy, const float* y, std::size_t n, Act act) {
  parallel_chunks(n, [&](std::size_t b, std::size_t e) {
#ifdef FUSEDNN_HAVE_AVX2_TU
    if (use_avx2() && avx2::act_backward(dx + b, dy + b, y + b, e - b, act)) return;
#endif
    backward_portable(dx + b, dy + b, y + b, e - b, act);
  });
}

void hidden_grad(float* dx, float* db, const float* dz, const float* w, const float* y, std::size_t rows,
                 std::size_t cols, std::size_t k, Act act) {
  if (rows == 0 && db) std::fill_n(db, cols, 0.f);  // (sum_rows of no rows)
  if (rows == 0 || cols == 0) return;
#ifdef FUSEDNN_HAVE_AVX2_TU
  // One pass where matmul's own sum is each output's k-ordered sum from zero (its K = 1
  // product, and its tiles for K under 16 and whole 8-wide column vectors; its narrow
  // kernels for the other shapes sum in another order).
  if (use_avx2() && k >= 1 && (k == 1 || (k < 16 && cols % 8 == 0))) {
    const float* wt = w;
    thread_local std::vector<float> transposed;
    if (k > 1) {
      transposed.resize(k * cols);
      for (std::size_t j = 0; j < cols; ++j)
        for (std::size_t i = 0; i < k; ++i) transposed[i * cols + j] = w[j * k + i];
      wt = transposed.data();
    }
    if (avx2::hidden_grad(dx, db, dz, wt, int(k), y, rows, cols, act)) return;
  }
#endif
  matmul(dx, dz, w, int(rows), int(cols), int(k), false, true, nullptr, Act::linear);
  act_backward(dx, dx, y, rows * cols, act);
  if (db) sum_rows(db, dx, rows, cols);
}

void bias_act(float* y, const float* x, const float* b, std::size_t rows, std::size_t cols,
              Act act) {
  if (!act_in_gemm_epilogue(act)) {  // the bias pass, then the activation's own kernel
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) y[r * cols + c] = x[r * cols + c] + b[c];
    act_forward(y, y, rows * cols, act);
    return;
  }
#ifdef FUSEDNN_HAVE_AVX2_TU
  if (use_avx2()) {
    for (std::size_t r = 0; r < rows; ++r) avx2::bias_act_row(y + r * cols, x + r * cols, b, cols, act);
    return;
  }
#endif
  for (std::size_t r = 0; r < rows; ++r) {
    float* yr = y + r * cols;
    const float* xr = x + r * cols;
    for (std::size_t c = 0; c < cols; ++c) yr[c] = xr[c] + b[c];
    forward_portable(yr, yr, cols, act);
  }
}

void softmax(float* y, const float* x, std::size_t rows, std::size_t cols) {
  if (cols == 0) return;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
#ifdef FUSEDNN_HAVE_AVX2_TU
    if (use_avx2()) {
      avx2::softmax_row(yr, xr, cols);
      continue;
    }
#endif
    float mx = xr[0];
    for (std::size_t c = 1; c < cols; ++c) mx = xr[c] > mx ? xr[c] : mx;
    double sum = 0.0;
    for (std::size_t c = 0; c < cols; ++c) {
      yr[c] = std::exp(xr[c] - mx);
      sum += yr[c];
    }
    const float inv = float(1.0 / sum);
    for (std::size_t c = 0; c < cols; ++c) yr[c] *= inv;
  }
}

void softmax_backward(float* dx, const float* dy, const float* y, std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float *dyr = dy + r * cols, *yr = y + r * cols;
    double dot = 0.0;
    for (std::size_t c = 0; c < cols; ++c) dot += double(dyr[c]) * yr[c];
    const float d = float(dot);
    float* dxr = dx + r * cols;
    for (std::size_t c = 0; c < cols; ++c) dxr[c] = yr[c] * (dyr[c] - d);
  }
}

}  // namespace cpu
}  // namespace fusednn

namespace fusednn {
namespace cpu {

void log_softmax(float* y, const float* x, std::size_t rows, std::size_t cols) {
  if (cols == 0) return;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float mx = xr[0];
    for (std::size_t c = 1; c < cols; ++c) mx = xr[c] > mx ? xr[c] : mx;
    double sum = 0.0;
    for (std::size_t c = 0; c < cols; ++c) sum += std::exp(double(xr[c]) - double(mx));
    const double shift = double(mx) + std::log(sum);
    for (std::size_t c = 0; c < cols; ++c) yr[c] = float(double(xr[c]) - shift);
  }
}

void log_softmax_backward(float* dx, const float* dy, const float* y, std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float *dyr = dy + r * cols, *yr = y + r * cols;
    double sum = 0.0;
    for (std::size_t c = 0; c < cols; ++c) sum += dyr[c];
    float* dxr = dx + r * cols;
    for (std::size_t c = 0; c < cols; ++c) dxr[c] = float(double(dyr[c]) - std::exp(double(yr[c])) * sum);
  }
}

}  // namespace cpu
}  // namespace fusednn
