// Kernels compiled for AVX2+FMA (the *_avx2.cpp files, built with -mavx2 -mfma).
// Only call them when cpu::use_avx2() is true. The portable files must never
// include <immintrin.h> AVX code of their own: that is what keeps the module
// importable on CPUs without AVX2.
#pragma once
#include <cstddef>

#include "fusednn/activation.h"

namespace fusednn {
namespace cpu {
namespace avx2 {

// C (mr×nr valid, row stride ldc) = epilogue(A·B) for one 6×16 tile: A(i, k) is
// A[i*rsa + k*csa] for all 6 rows, row k of B is the 16 floats at B + k*rsb
// (packed panels: rsa=1, csa=6, rsb=16). With accumulate, C's old values are
// added; with final, bias (nr values, may be null) is added and act applied.
void gemm_ukernel_6x16(int kc, const float* A, long rsa, long csa, const float* B, long rsb,
                       float* C, long ldc, int mr, int nr, bool accumulate, bool final,
                       const float* bias, Act act);

// The same contract for two full 6-row slivers (rows 0-5 from A0, 6-11 from A1,
// both with strides rsa/csa) against one sliver of nr <= 8 columns (12 rows of C).
void gemm_ukernel_12x8(int kc, const float* A0, const float* A1, long rsa, long csa, const float* B, long rsb,
                       float* C, long ldc, int nr, bool accumulate, bool final, const float* bias, Act act);

// Pack a 16-wide sliver of op(B) when B is stored transposed: op(B)(k, j) is
// src[j*ld + k] for j < 16, written k-major as dst[k*16 + j] (kc rows).
void pack_b_transposed_16(float* dst, const float* src, long ld, int kc);

// K == 1 (an outer product: the input gradient of a one-output layer):
// C[i][j] = act(a[i*sa] * b[j] + bias[j]), C row-major M×N, b and bias contiguous.
void gemm_k1(float* C, const float* a, long sa, const float* b, int M, int N, const float* bias, Act act);

// Narrow outputs and the last columns of wider ones (gemm_narrow_avx2.cpp), N <= 12,
// with the bias/activation epilogue.
// Both write N columns of C (row stride ldc). lanes: op(A)(i, k) = A[k*lda + i] (A
// stored transposed, so rows of C sit in the vector lanes) and op(B)(k, j) =
// B[k*rsb + j*csb]. dots: dot products of A's rows (A row-major M×K) with op(B)'s
// columns: op(B)(k, j) = B[j*ldb + k] when tb, else B[k*ldb + j] (transposed into
// scratch first).
void gemm_narrow_lanes(float* C, long ldc, const float* A, long lda, const float* B, long rsb, long csb, int M,
                       int N, int K, const float* bias, Act act);
void gemm_narrow_dots(float* C, long ldc, const float* A, const float* B, long ldb, bool tb, int M, int N, int K,
                      const float* bias, Act act);

// C[M,N] = act(A·op(B) + bias) for K <= 16 and N <= 16, A row-major (row stride lda),
// op(B)(k, j) = B[k*rsb + j*csb], C's rows contiguous (row stride N): four rows of C at
// a time, each in two vectors. A product
// this thin is per-tile set-up and epilogue on the tiled kernels (100×10 with K = 4:
// 1.0 us there). Each output sums its products in k order from zero, as the tiled
// kernels do, so the bits are theirs.
void gemm_small_k(float* C, const float* A, long lda, const float* B, long rsb, long csb, int M, int N, int K,
                  const float* bias, Act act);

// c[M] = op(A)·b for a single output column (N == 1): dot products of A's rows
// with b, or (ta: A stored K×M) a sum of A's rows scaled by b.
void gemm_n1(float* c, const float* A, const float* b, int M, int K, bool ta);

// e[c] = exp(z[c] - shift) for c < cols (about 1 ulp); returns their sum
// (in double). The softmax cross-entropy's exponentials (loss.cpp).
double exp_shifted_sum(float* e, const float* z, std::size_t cols, float shift);

// The binary cross-entropy on logits of n elements (loss.cpp's sigmoid_binary): the sum
// of the per-element losses (not the mean), and with g, scale * (sigmoid(z) - t). The
// linear part in double as the portable loop, log(1 + e^-|z|) and the sigmoid in float
// (exp_ps, log1p_unit_ps, sigmoid_ps: a few ulp from the portable loop's double
// logarithms, which were a tenth of a breast-cancer step), summed in double.
double xent_sigmoid(float* g, const float* z, const float* t, std::size_t n, float scale);

// The softmax cross-entropy of rows r0..r0+7 of z (rows × cols, 2 <= cols <=
// kXentLaneCols), the eight rows in the vector lanes: each row's loss into loss[8]
// and, with g, its gradient (g may not be z). Labels t: rows × cols targets, or with
// sparse one valid class index per row (the caller checks). Every value has the
// bits of loss.cpp's row-at-a-time loop (same exponentials, same double sums in the
// same order), which it replaces where 10 classes made it per-row overhead.
constexpr std::size_t kXentLaneCols = 32;
void xent_softmax_rows8(float* g, const float* z, const float* t, std::size_t cols, bool sparse, float scale,
                        double* loss);

// sum_rows (reduce.cpp) and regularize (regularize.cpp, which returns the penalty)
// with the portable loops' arithmetic: the same bits.
void sum_rows(float* out, const float* x, std::size_t rows, std::size_t cols);
double regularize(float* g, const float* w, std::size_t n, float l1, float l2);
// g = c0 g0 + c1 g1 (two replicas' gradients, each product rounded) and then regularize's
// penalty gradient, in one pass: the bits of the weighted sum followed by regularize.
double weighted_sum_regularize(float* g, const float* g0, const float* g1, float c0, float c1, const float* w,
                               std::size_t n, float l1, float l2);

// false (nothing written) for an activation without an AVX2 version: the
// caller runs the portable loop.
bool act_forward(float* y, const float* x, std::size_t n, Act act);
bool act_backward(float* dx, const float* dy, const float* y, std::size_t n, Act act);
// wt: the k×cols transpose of hidden_grad's w (k = 1: w itself); false for an activation
// without a one-pass version
bool hidden_grad(float* dx, float* db, const float* dz, const float* wt, int k, const float* y, std::size_t rows,
                 std::size_t cols, Act act);
void bias_act_row(float* y, const float* x, const float* b, std::size_t cols, Act act);
void softmax_row(float* y, const float* x, std::size_t cols);

// Adam with the bias-corrected step size alpha and c1 = 1 - beta1, c2 = 1 - beta2
// precomputed by the caller (optim.cpp); SGD with the contract of cpu::sgd_update.
void adam_update(float* w, const float* g, float* m, float* v, std::size_t n, float alpha, float c1,
                 float c2, float eps);
void sgd_update(float* w, const float* g, float* v, std::size_t n, float lr, float momentum,
                bool nesterov);
// cpu::optimizer_update on elements [b, e) with the clipping factor precomputed.
void optimizer_update(int kind, int flags, const float* p, float factor, std::size_t b, std::size_t e,
                      float* w, const float* g, float* s1, float* s2, float* s3, float* ema);
// cpu::sum_squares (the order of optim_keras_impl.h's sum_squares_lanes).
double sum_squares(const float* x, std::size_t n);

}  // namespace avx2
}  // namespace cpu
}  // namespace fusednn
