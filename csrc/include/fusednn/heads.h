// The losses of a model with several outputs ("heads") in the fused trainer
// (fusednn/trainer.h): each head is a graph block's output with a loss of its own
// and a loss weight, as Keras' compile(loss=[...], loss_weights=[...]).
//
// The targets arrive packed side by side (y_batch: batch x y_cols, each head's
// columns at y_off); each head's columns are copied into its own contiguous Y,
// its loss value and gradient computed by the same kernel as a one-output model's
// (into the head block's G, the logits' gradient when the cross-entropy is folded
// into a sigmoid/softmax head), the gradient scaled by the head's weight, and the
// step's loss is sum_h weight_h * loss_h accumulated in float32 in head order:
// exactly the per-op path's OutputLosses (python/fusednn/functional.py), so both
// give the same numbers. A head block that also feeds another block is marked as
// holding its first gradient contribution, so block_input_backward adds the
// others to it (the per-op path's grads[j] + d).
//
// Templates over the device policy, the layer vector and the step data, so this
// header needs nothing from trainer.h (which includes it) but the names it uses.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "fusednn/activation.h"
#include "fusednn/layer_steps.h"
#include "fusednn/metric_math.h"

namespace fusednn {

struct Head {
  int block = 0;         // the Dense block (trainer layer) whose output (after its steps) is this head
  int loss = 0;          // a LossKind code (trainer.h): 0 mse, 1..3 cross-entropy on logits, 16+ LossFn
  LossParams param;      // the LossFn losses' constants (Huber's delta, focal alpha/gamma)
  float weight = 1.f;    // the head's loss weight
  int y_off = 0;         // the head's first column in the packed targets
  int y_cols = 0;        // its number of target columns (1 for a sparse cross-entropy)
  float* Y = nullptr;    // batch x y_cols: the head's targets, gathered contiguously
  // this run's compiled metrics of the output (Keras metric objects, metric_math.h), updated
  // after its loss (weighted by the sample weights when there are some)
  std::vector<MetricSpec> metrics;
};

// Devices that run heads: the CPU's (graph blocks plus `scale`; the loss values are
// written to host memory). The CUDA policy runs graph blocks but no heads yet.
template <class D, class = void>
struct has_heads : std::false_type {};
template <class D>
struct has_heads<D, std::void_t<decltype(&D::scale), decltype(&D::copy_cols)>> : std::true_type {};

struct Heads {
  std::vector<Head> list;
  // steps x list.size() (host memory, or null): each step's unweighted loss per head,
  // for the history's <output>_loss entries
  float* losses = nullptr;
};

// Loss values and gradients of every head for step s (after the forward pass, B rows
// in data.y_batch, the first at position lo of the epoch's order): writes
// data.step_losses[s] (the weighted sum) and each head block's G; then the caller's
// penalties add to step_losses[s]. Sample weights (data.row_scale) weigh each head's
// loss as a one-output model's (its weighted-mean kernel, accumulated in double: the
// per-op path sums rows in float32, so the recorded losses agree to float32 rounding)
// and scale its gradient's rows after the loss weight (the same bits as the per-op
// path's (w * g) * sample_weight).
template <class D, class Layers, class Data>
void heads_loss(const D& dev, Layers& layers, const Heads& heads, const Data& data, int B, std::int64_t lo,
                std::int64_t s) {
  const std::size_t H = heads.list.size();
  float total = 0.f;
  for (std::size_t h = 0; h < H; ++h) {
    const Head& hd = heads.list[h];
    auto& l = layers[std::size_t(hd.block)];
    // the block's output after its steps (a folded softmax/sigmoid step is left out by the caller)
    const float* A = post_output(l.post, l.A);
    float* G = post_grad(l.post, l.G);
    dev.copy_cols(hd.Y, hd.y_cols, 0, data.y_batch, data.y_cols, hd.y_off, hd.y_cols, B);
    const std::int64_t count = std::int64_t(B) * l.out;
    float value = 0.f;
    if (hd.loss == 0) {  // mse
      dev.mse(A, hd.Y, count, &value);
      dev.mse_grad(G, A, hd.Y, count, 2.0f / float(count));
    } else if (hd.loss >= 16) {  // LossKind::loss_fn_base + LossFn
      dev.loss_grad(G, A, hd.Y, B, l.out, static_cast<LossFn>(hd.loss - 16), hd.param, &value);
    } else {  // a cross-entropy on the head's logits (XentKind + 1)
      const auto kind = static_cast<XentKind>(hd.loss - 1);
      const float scale = kind == XentKind::sigmoid_binary ? 1.0f / float(count) : 1.0f / float(B);
      dev.xent(G, A, hd.Y, B, l.out, kind, scale, &value);
    }
    if (hd.weight != 1.f) dev.scale(G, hd.weight, count);  // the per-op path's w * g (float32)
    if (data.row_scale) {
      const float* rs = data.row_scale + lo;
      if (hd.loss >= 16)
        dev.weighted_loss_fn(A, hd.Y, rs, B, l.out, static_cast<LossFn>(hd.loss - 16), hd.param, &value);
      else
        dev.weighted_loss(A, hd.Y, rs, B, l.out, hd.loss - 1, &value);
      dev.scale_rows(G, rs, B, l.out);
    }
    for (const MetricSpec& m : hd.metrics)
      dev.metric_update(m, A, hd.Y, data.row_scale ? data.row_scale + lo : nullptr, B, l.out);
    const float weighted = hd.weight * value;  // rounded before the sum, as NumPy's total += w * value
    // (train.cpp is built without FMA, so the compiler cannot contract the two)
    total = total + weighted;
    if (heads.losses) heads.losses[s * std::int64_t(H) + std::int64_t(h)] = value;
  }
  data.step_losses[s] = total;
}

// Mark each head block as holding its first gradient contribution (its loss
// gradient), so that the blocks reading it add theirs (block_input_backward).
inline void heads_seed(const Heads& heads, std::vector<int>& grads_seen) {
  for (const Head& hd : heads.list) grads_seen[std::size_t(hd.block)] = 1;
}

}  // namespace fusednn
