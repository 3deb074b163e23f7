// The shared-memory plan of the persistent MLP trainer (csrc/cuda/persistent_mlp.cu):
// where every parameter, optimizer state and per-step activation lives inside one
// thread block's shared memory, and the size rule that decides whether a model may
// use it. Plain C++ (no CUDA): the binding computes the plan on the host, and the
// CPU tests check the rule without a device.
//
// The rule, in bytes, for layers l = 0..L-1 of widths in_l -> out_l, batch B,
// y_cols target columns (1 for sparse labels, else out_{L-1}) and S optimizer
// state arrays per parameter (Adam 2, SGD with momentum 1, plain SGD 0):
//
//   bytes = kHeaderBytes
//         + 4 * [ sum_l (1 + S) * (in_l * p(out_l) + bias_l * out_l)        parameters + states
//               + B * (p(in_0) + y_cols + 2 * sum_l p(out_l)) ]              batch, targets, A and G
//
// with p(n) = n + 1 for even n, n for odd n: every matrix row in shared memory has
// an odd pitch, so a warp reading down a column (the transposed products) hits 32
// different banks. The model fits when L <= kMaxLayers and bytes <= the device's
// opt-in shared memory per block (227 KB on sm_90, 163 KB on sm_80, 99 KB on
// sm_86/89, 64 KB on sm_75).
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace fusednn {
namespace persistent {

constexpr int kThreads = 512;   // one block of 16 warps runs the whole epoch
constexpr int kWarps = kThreads / 32;
constexpr int kMaxLayers = 8;   // the layer table is a kernel parameter
// Reduction scratch (three doubles per warp: loss, |error|, error^2) and the
// step's optimizer scalars, ahead of the float area (keeps it 16-byte aligned).
constexpr std::size_t kHeaderBytes = 3 * kWarps * sizeof(double) + 16;

inline int pitch(int n) { return n % 2 == 0 ? n + 1 : n; }

struct LayerPlan {
  int in = 0, out = 0;
  bool bias = false;
  int ldw = 0, lda = 0;  // row pitch of W (in x out) and of A/G (batch x out), in floats
  // float offsets from the start of the float area; -1 where absent
  long W = -1, b = -1, W_s1 = -1, W_s2 = -1, b_s1 = -1, b_s2 = -1, A = -1, G = -1;
};

struct Plan {
  std::vector<LayerPlan> layers;
  int batch = 0, y_cols = 0, states = 0;
  int ldx = 0;          // row pitch of the gathered batch
  long x = -1, y = -1;  // float offsets of the gathered batch and targets
  std::size_t floats = 0;
  std::size_t bytes = 0;  // kHeaderBytes + 4 * floats: the dynamic shared memory per launch
};

// The layout for layer widths dims = {in_0, out_0, out_1, ...} (so dims.size() == L + 1),
// bias flags per layer, S = `states`, batch B and y_cols. Throws std::invalid_argument on
// sizes that are not positive.
inline Plan make_plan(const std::vector<int>& dims, const std::vector<bool>& bias, int states, int batch,
                      int y_cols) {
  if (dims.size() < 2 || bias.size() + 1 != dims.size())
    throw std::invalid_argument("persistent plan: need L + 1 widths and L bias flags");
  if (states < 0 || states > 2) throw std::invalid_argument("persistent plan: states must be 0, 1 or 2");
  if (batch < 1 || y_cols < 1) throw std::invalid_argument("persistent plan: batch and y_cols must be >= 1");
  for (int d : dims)
    if (d < 1) throw std::invalid_argument("persistent plan: layer widths must be >= 1");
  Plan p;
  p.batch = batch;
  p.y_cols = y_cols;
  p.states = states;
  std::size_t at = 0;
  auto take = [&](std::size_t n) {
    const long o = long(at);
    at += n;
    return o;
  };
  const std::size_t L = bias.size();
  for (std::size_t l = 0; l < L; ++l) {
    LayerPlan lp;
    lp.in = dims[l];
    lp.out = dims[l + 1];
    lp.bias = bias[l];
    lp.ldw = pitch(lp.out);
    lp.lda = pitch(lp.out);
    const std::size_t nw = std::size_t(lp.in) * lp.ldw, nb = lp.bias ? std::size_t(lp.out) : 0;
    lp.W = take(nw);
    if (lp.bias) lp.b = take(nb);
    if (states >= 1) {
      lp.W_s1 = take(nw);
      if (lp.bias) lp.b_s1 = take(nb);
    }
    if (states >= 2) {
      lp.W_s2 = take(nw);
      if (lp.bias) lp.b_s2 = take(nb);
    }
    p.layers.push_back(lp);
  }
  p.ldx = pitch(dims[0]);
  p.x = take(std::size_t(batch) * p.ldx);
  p.y = take(std::size_t(batch) * y_cols);
  for (LayerPlan& lp : p.layers) {
    lp.A = take(std::size_t(batch) * lp.lda);
    lp.G = take(std::size_t(batch) * lp.lda);
  }
  p.floats = at;
  p.bytes = kHeaderBytes + 4 * at;
  return p;
}

// Why a plan cannot run in one block with `smem_limit` bytes of shared memory
// (empty when it can).
inline std::string why_not(const Plan& p, std::size_t smem_limit) {
  if (p.layers.size() > std::size_t(kMaxLayers))
    return "the persistent trainer takes at most " + std::to_string(kMaxLayers) + " Dense layers, the model has " +
           std::to_string(p.layers.size());
  if (p.bytes > smem_limit)
    return "parameters, optimizer state and batch activations need " + std::to_string(p.bytes) +
           " bytes of shared memory, the device allows " + std::to_string(smem_limit) + " per block";
  return "";
}

}  // namespace persistent
}  // namespace fusednn
