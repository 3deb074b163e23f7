#include <algorithm>
#include <cmath>
#include <vector>

#include "avx2.h"
#include "fusednn/cpu.h"
#include "threads.h"

namespace fusednn {
namespace cpu {

double mse(const float* p, const float* t, std::size_t n) {
  if (n == 0) return 0.0;
  // Fixed-size blocks summed in a fixed order: the result does not depend on
  // the number of threads. Eight independent double accumulators per block
  // keep the loop from being latency-bound on the additions.
  constexpr std::size_t kBlock = 4096;
  const std::size_t nblocks = (n + kBlock - 1) / kBlock;
  double total = 0.0;
  auto block_sum = [&](std::size_t blk) {
    const std::size_t b = blk * kBlock, e = std::min(n, b + kBlock);
    double acc[8] = {};
    std::size_t i = b;
    for (; i + 8 <= e; i += 8)
      for (int j = 0; j < 8; ++j) {
        const double d = double(p[i + j]) - double(t[i + j]);
        acc[j] += d * d;
      }
    for (; i < e; ++i) {
      const double d = double(p[i]) - double(t[i]);
      acc[0] += d * d;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  };
  if (nblocks == 1) return block_sum(0) / double(n);
  std::vector<double> partial(nblocks);
  const int nt = n >= kParallelMinElems ? num_threads() : 1;
  parallel_for(nt, [&](int t) {
    for (std::size_t blk = nblocks * t / nt; blk < nblocks * (t + 1) / nt; ++blk) partial[blk] = block_sum(blk);
  });
  for (double s : partial) total += s;
  return total / double(n);
}

void mse_grad(float* g, const float* p, const float* t, std::size_t n, float scale) {
  parallel_chunks(n, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) g[i] = scale * (p[i] - t[i]);
  });
}

namespace {

// log(1 + e^-|z|) + max(z, 0) - z t: the binary cross-entropy of sigmoid(z)
// against t, with no overflow for any z.
inline double bce_logit(float z, float t) {
  const double zd = z;
  return (zd > 0 ? zd : 0.0) - zd * t + std::log1p(std::exp(-std::fabs(zd)));
}

inline float sigmoid(float z) {
  if (z < 0.f) {
    const float e = std::exp(z);
    return e / (1.f + e);
  }
  return 1.f / (1.f + std::exp(-z));
}

}  // namespace

double xent(float* g, const float* z, const float* t, std::size_t rows, std::size_t cols, XentKind kind,
            float scale) {
  double total = 0.0;
  if (kind == XentKind::sigmoid_binary) {
    const std::size_t n = rows * cols;
#ifdef FUSEDNN_HAVE_AVX2_TU
    if (use_avx2()) return n ? avx2::xent_sigmoid(g, z, t, n, scale) / double(n) : 0.0;
#endif
    for (std::size_t i = 0; i < n; ++i) {
      total += bce_logit(z[i], t[i]);
      if (g) g[i] = scale * (sigmoid(z[i]) - t[i]);
    }
    return n ? total / double(n) : 0.0;
  }
  const bool sparse = kind == XentKind::softmax_sparse;
  for (std::size_t r = 0; r < rows; ++r) {
#ifdef FUSEDNN_HAVE_AVX2_TU
    // a few classes: eight rows at a time in the vector lanes, the same values
    if (r + 8 <= rows && cols >= 2 && cols <= avx2::kXentLaneCols && g != z && use_avx2()) {
      bool ok = true;
      for (std::size_t i = 0; sparse && i < 8; ++i) {
        const float label = t[r + i];
        ok = ok && label >= 0.f && label < float(cols) && label == std::floor(label);
      }
      if (ok) {
        double loss[8];
        avx2::xent_softmax_rows8(g ? g + r * cols : nullptr, z + r * cols, sparse ? t + r : t + r * cols, cols,
                                 sparse, scale, loss);
        for (double l : loss) total += l;
        r += 7;
        continue;
      }
    }
#endif
    const float* zr = z + r * cols;
    float mx = zr[0];
    for (std::size_t c = 1; c < cols; ++c) mx = zr[c] > mx ? zr[c] : mx;
    float* gr = g ? g + r * cols : nullptr;
    // Each exponential is taken once, in float (vectorized where the CPU has
    // AVX2), and kept in the gradient buffer for the probabilities below; the
    // exp calls were most of this kernel's time in small-batch training. The
    // value alone takes the same exponentials in the same 256-wide chunks (into
    // a scratch row), so it has the same bits as the value with the gradient.
    // Only a gradient written over its own logits takes the double path.
    const bool once = gr != zr;
    double sum = 0.0;
    if (once) {
      constexpr std::size_t kChunk = 256;
      float scratch[kChunk];
      for (std::size_t c0 = 0; c0 < cols; c0 += kChunk) {
        const std::size_t w = std::min(kChunk, cols - c0);
        float* e = gr ? gr + c0 : scratch;
#ifdef FUSEDNN_HAVE_AVX2_TU
        if (use_avx2()) {
          sum += avx2::exp_shifted_sum(e, zr + c0, w, mx);
          continue;
        }
#endif
        double part = 0.0;
        for (std::size_t c = 0; c < w; ++c) {
          e[c] = float(std::exp(double(zr[c0 + c]) - double(mx)));
          part += double(e[c]);
        }
        sum += part;
      }
    } else {
      for (std::size_t c = 0; c < cols; ++c) sum += std::exp(double(zr[c] - mx));
    }
    const double lse = double(mx) + std::log(sum);
    const double inv_sum = 1.0 / sum;
    if (sparse) {
      const float label = t[r];
      // range first: converting NaN or a label beyond long's range is undefined behaviour
      const bool ok = label >= 0.f && label < float(cols) && label == std::floor(label);
      const long k = ok ? long(label) : 0;
      if (!ok || k >= long(cols)) {  // bad index: NaN, no gradient
        total = std::nan("");
        if (gr)
          for (std::size_t c = 0; c < cols; ++c) gr[c] = 0.f;
        continue;
      }
      total += lse - zr[k];
      if (once && gr)
        for (std::size_t c = 0; c < cols; ++c)
          gr[c] = scale * (float(double(gr[c]) * inv_sum) - (long(c) == k ? 1.f : 0.f));
      else if (gr)
        for (std::size_t c = 0; c < cols; ++c)
          gr[c] = scale * (float(std::exp(double(zr[c]) - lse)) - (long(c) == k ? 1.f : 0.f));
    } else {
      const float* tr = t + r * cols;
      double row = 0.0;  // a local sum: `total` lived on the stack, a store-forwarding chain per element
      for (std::size_t c = 0; c < cols; ++c) {
        row += double(tr[c]) * (lse - zr[c]);
        if (once && gr)
          gr[c] = scale * (float(double(gr[c]) * inv_sum) - tr[c]);
        else if (gr)
          gr[c] = scale * (float(std::exp(double(zr[c]) - lse)) - tr[c]);
      }
      total += row;
    }
  }
  return rows ? total / double(rows) : 0.0;
}

}  // namespace cpu
}  // namespace fusednn
