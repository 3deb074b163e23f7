// PReLU on the CPU (fusednn/cpu_layers.h): the per-op layer's kernels and the fused
// trainer's prelu step (layer_steps.h), so both paths give the same bits. The loops
// are in prelu_impl.h; where the CPU has AVX2 the copy compiled for it runs
// (prelu_avx2.cpp), which gives the same bits (elementwise selects and products, and
// per-column double sums in row order: a float product is exact in double, so an FMA
// cannot change it).
#include "fusednn/cpu.h"
#include "fusednn/cpu_layers.h"
#include "prelu_impl.h"

namespace fusednn {
namespace cpu {
namespace avx2 {
void prelu_forward(float* y, const float* x, const float* alpha, std::int64_t rows, std::int64_t cols,
                   std::int64_t alpha_n);
void prelu_backward(float* dx, float* dalpha, const float* dy, const float* x, const float* alpha,
                    std::int64_t rows, std::int64_t cols, std::int64_t alpha_n);
}  // namespace avx2

void prelu_forward(float* y, const float* x, const float* alpha, std::int64_t rows, std::int64_t cols,
                   std::int64_t alpha_n) {
#ifdef FUSEDNN_HAVE_AVX2_TU
  if (use_avx2()) return avx2::prelu_forward(y, x, alpha, rows, cols, alpha_n);
#endif
  prelu_impl::forward(y, x, alpha, rows, cols, alpha_n);
}

void prelu_backward(float* dx, float* dalpha, const float* dy, const float* x, const float* alpha,
                    std::int64_t rows, std::int64_t cols, std::int64_t alpha_n) {
#ifdef FUSEDNN_HAVE_AVX2_TU
  if (use_avx2()) return avx2::prelu_backward(dx, dalpha, dy, x, alpha, rows, cols, alpha_n);
#endif
  prelu_impl::backward(dx, dalpha, dy, x, alpha, rows, cols, alpha_n);
}

}  // namespace cpu
}  // namespace fusednn
