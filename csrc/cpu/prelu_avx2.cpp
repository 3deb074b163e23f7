// PReLU's loops (prelu_impl.h) compiled with -mavx2 -mfma; called by prelu.cpp only
// where the CPU has AVX2.
#include "fusednn/cpu_layers.h"
#include "prelu_impl.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

void prelu_forward(float* y, const float* x, const float* alpha, std::int64_t rows, std::int64_t cols,
                   std::int64_t alpha_n) {
  prelu_impl::forward(y, x, alpha, rows, cols, alpha_n);
}

void prelu_backward(float* dx, float* dalpha, const float* dy, const float* x, const float* alpha,
                    std::int64_t rows, std::int64_t cols, std::int64_t alpha_n) {
  prelu_impl::backward(dx, dalpha, dy, x, alpha, rows, cols, alpha_n);
}

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
