// The fused training loop for all-Dense models: a run of optimizer steps
// (gather batch, forward, loss, backward, update) with no Python in between.
//
// It is written once, over a device object D that supplies the kernels
// (the policies in csrc/cpu/train.cpp and csrc/cuda/train.cu; the CUDA one
// carries the stream, the TF32 setting and the loss's scratch space),
// and it calls exactly the kernels, in exactly the order, that the per-op
// Python path calls, so both paths give the same numbers. It owns no memory:
// every buffer is allocated by the Python backend (NumPy or CuPy) and handed
// over as a pointer, so on the GPU nothing is allocated behind CuPy's back
// and on the CPU `get_weights` sees the live parameters.
#pragma once
#include <algorithm>
#include <stdexcept>
#include <cstdint>
#include <vector>

#include "fusednn/activation.h"
#include "fusednn/constraint.h"
#include "fusednn/heads.h"
#include "fusednn/layer_steps.h"
#include "fusednn/merge_op.h"
#include "fusednn/metric_math.h"
#include "fusednn/optim_update.h"

namespace fusednn {

// mse on the outputs, or a cross-entropy on the last layer's logits (XentKind + 1),
// or a LossFn loss on the outputs (LossFn + loss_fn_base; TrainData::loss_param)
enum class LossKind : int { mse = 0, xent_binary = 1, xent_categorical = 2, xent_sparse = 3, loss_fn_base = 16 };

struct DenseBuffers {
  int in = 0, out = 0;
  Act act = Act::linear;
  float* W = nullptr;   // in×out
  float* b = nullptr;   // out, or null without bias
  float* A = nullptr;   // batch×out: the layer's output
  float* Z = nullptr;   // batch×out: the pre-activation, only where act_backward_needs_input(act)
  float* G = nullptr;   // batch×out: gradient w.r.t. the output, then the pre-activation
  float* dW = nullptr;  // in×out
  float* db = nullptr;  // out (null without bias)
  // optimizer state (fusednn/optim_update.h says which kind uses which; null when unused)
  // and the exponential moving average of the parameter (null without use_ema)
  float* W_s1 = nullptr;
  float* W_s2 = nullptr;
  float* W_s3 = nullptr;
  float* W_ema = nullptr;
  float* b_s1 = nullptr;
  float* b_s2 = nullptr;
  float* b_s3 = nullptr;
  float* b_ema = nullptr;
  bool W_decay = true, b_decay = true;  // weight decay applies (exclude_from_weight_decay)
  // a frozen block (Keras' layer.trainable = False): its W and b get no gradient, no
  // update and no optimizer state; its input gradient still flows to the block below
  bool frozen = false;
  // graph models (a functional model with merges; CPU only, see has_merges): where the
  // block's input comes from. Empty src: the previous block's output (the batch for the
  // first). Else block indices (< this one; -1 - j: model input j, the batch's columns
  // [src_col[n], src_col[n] + its width) for src[n]): merge 0 takes src[0] itself (a
  // column slice of a wider batch is copied into X), 1 concatenates them along the
  // columns into X, 2 adds them, 3 subtracts the second from the first, 4 multiplies
  // them, 5 averages them into X (MergeKind); dX (batch×in) holds the gradient w.r.t.
  // the input before it is split to the sources.
  // A merge block has no W (and is frozen): its output A is a copy of the merged input X,
  // followed by its steps; its input gradient is G (and dX is its scratch).
  std::vector<int> src;
  std::vector<int> src_col, src_width;
  int merge = 0;
  float* X = nullptr;
  float* dX = nullptr;
  // Keras L1/L2 regularizer factors of the kernel and the bias (0: none), and of the
  // block's Dense output A (activity_regularizer: Keras 3 adds reg(A) / rows to the loss)
  float W_l1 = 0.f, W_l2 = 0.f, b_l1 = 0.f, b_l2 = 0.f, A_l1 = 0.f, A_l2 = 0.f;
  // Keras kernel_constraint/bias_constraint, projected after the update (constraint.h)
  Constraint W_con, b_con;
  // the steps after the dense GEMM (batch-norm, activation, dropout): layer_steps.h
  std::vector<LayerStep> post;
};

struct OptimizerConfig {
  OptKind kind = OptKind::sgd;
  int flags = 0;  // optf bits
  // Row k (kOptParams floats) holds the parameters of step step0 + k of a run:
  // the learning rate of the schedule, bias corrections and the like, computed
  // by the Python optimizer for the run's steps (set per run by the binding).
  const float* step_params = nullptr;
};

// DenseBuffers::merge: how a graph block combines its sources
enum MergeKind : int { merge_one = 0, merge_concat = 1, merge_add = 2, merge_sub = 3, merge_mul = 4, merge_avg = 5 };

struct TrainData {
  const float* x = nullptr;          // n×x_cols: layer 0's input, or a graph model's inputs side by side
  int x_cols = 0;                    // 0: layer 0's in
  const float* y = nullptr;          // n×y_cols: like the last layer's output, or one class index per row
  int y_cols = 0;
  const std::int64_t* order = nullptr;  // the epoch's sample permutation (n entries)
  std::int64_t n = 0;
  float* x_batch = nullptr;          // batch×in: gathered inputs
  float* y_batch = nullptr;          // batch×out: gathered targets
  float* step_losses = nullptr;      // one loss per step of the epoch
  // metric accumulators (null when no compiled metric needs them): see cpu::confusion_update
  double* counts = nullptr;
  int classes = 0;
  bool sparse_labels = false;
  float threshold = 0.5f;
  double* err_sums = nullptr;
  LossParams loss_param;             // Huber's delta, the focal losses' constants (LossFn kinds)
  // sample weights (null: none): row_scale[i] multiplies the loss and gradient of the
  // row at position i of the epoch's order (device memory); penalty_scale[step]
  // multiplies that step's regularizer factors (host memory)
  const float* row_scale = nullptr;
  const float* penalty_scale = nullptr;
  // Keras metric objects (metric_math.h) updated after each step's loss, weighted by
  // row_scale when it is given (n_metric_specs entries, host memory)
  const MetricSpec* metric_specs = nullptr;
  int n_metric_specs = 0;
  // Data parallelism (all null in one process). step_starts (host memory, steps + 1
  // entries) says where each step's rows start in `order`: this rank's share of every
  // global batch, which may be empty for a short last batch. between(ctx, step, rows)
  // runs after the step's gradients (and weight penalties) and before its update: it
  // reduces the gradients over the ranks, and returns false to stop the run before the
  // update (a peer failed).
  const std::int64_t* step_starts = nullptr;
  bool (*between)(void* ctx, std::int64_t step, int rows) = nullptr;
  void* between_ctx = nullptr;
  // a model with several outputs (graph models, fusednn/heads.h; null: one output, the
  // last block's, with `loss`): each head's loss and weight; y_cols is then the packed width
  const Heads* heads = nullptr;
  // after(ctx, step) runs once each step is complete (updated, its loss final; null: never):
  // false ends the run after that step (an epoch-level stopping rule on the host's losses)
  bool (*after)(void* ctx, std::int64_t step) = nullptr;
  void* after_ctx = nullptr;
};

// Run steps [step0, step1) of an epoch of ceil(n / batch) steps. `iterations`
// is the optimizer's update counter before the first of these steps; the
// return value is the counter after the last. Stops early after a step whose
// loss is not finite when stop_on_nonfinite is set (the caller sees it in
// step_losses) — only on devices where reading the loss is free (the CPU).
// Devices that run graph blocks (copy_cols, add_cols; Add through add): the CPU's and CUDA's.
template <class D, class = void>
struct has_merges : std::false_type {};
template <class D>
struct has_merges<D, std::void_t<decltype(&D::copy_cols), decltype(&D::add_cols)>> : std::true_type {};
// Devices whose graph blocks also run the strided elementwise merges (Subtract, Multiply,
// Average, and an Add that reads model inputs in place): merge_binary, merge_scale (the CPU's and CUDA's).
template <class D, class = void>
struct has_merge_ops : std::false_type {};
template <class D>
struct has_merge_ops<D, std::void_t<decltype(&D::merge_binary), decltype(&D::merge_scale)>> : std::true_type {};

// Devices with hidden_grad (the CPU's): a layer's input gradient from the layer above,
// through its activation, with its bias gradient (one pass where that pays).
template <class D, class = void>
struct has_hidden_grad : std::false_type {};
template <class D>
struct has_hidden_grad<D, std::void_t<decltype(&D::hidden_grad)>> : std::true_type {};

// Source n of graph block l: its values, their row stride (a model input is a column
// slice of the batch x, whose rows are x_cols wide) and their width.
struct BlockSource {
  const float* v;
  int ld, width;
};
inline BlockSource block_source(std::vector<DenseBuffers>& layers, const DenseBuffers& l, std::size_t n,
                                const float* x, int x_cols) {
  const int k = l.src[n];
  if (k < 0) return {x + l.src_col[n], x_cols, l.src_width[n]};
  DenseBuffers& s = layers[std::size_t(k)];
  return {post_output(s.post, s.A), s.out, s.out};
}

// The input of block i (graph models): the batch, a source block's output, or the merge
// of several assembled into the block's X (in the per-op path's operation order).
template <class D>
const float* block_input(const D& dev, std::vector<DenseBuffers>& layers, std::size_t i, const float* x, int B,
                         int x_cols) {
  DenseBuffers& l = layers[i];
  if (l.src.empty()) return i > 0 ? post_output(layers[i - 1].post, layers[i - 1].A) : x;
  const BlockSource first = block_source(layers, l, 0, x, x_cols);
  if (l.merge == merge_one && first.ld == l.in) return first.v;  // whole rows: read in place
  if constexpr (has_merges<D>::value) {
    if (l.merge == merge_one) {  // a model input that is a column slice of the batch
      dev.copy_cols(l.X, l.in, 0, first.v, first.ld, 0, l.in, B);
    } else if (l.merge == merge_concat) {
      int at = 0;
      for (std::size_t n = 0; n < l.src.size(); ++n) {
        const BlockSource s = block_source(layers, l, n, x, x_cols);
        dev.copy_cols(l.X, l.in, at, s.v, s.ld, 0, s.width, B);
        at += s.width;
      }
    } else if constexpr (has_merge_ops<D>::value) {  // elementwise, left to right as the per-op layers
      const MergeOp op = l.merge == merge_sub ? MergeOp::sub : l.merge == merge_mul ? MergeOp::mul : MergeOp::add;
      const BlockSource second = block_source(layers, l, 1, x, x_cols);
      dev.merge_binary(l.X, l.in, first.v, first.ld, second.v, second.ld, B, l.in, op);
      for (std::size_t n = 2; n < l.src.size(); ++n) {
        const BlockSource s = block_source(layers, l, n, x, x_cols);
        dev.merge_binary(l.X, l.in, l.X, l.in, s.v, s.ld, B, l.in, op);
      }
      if (l.merge == merge_avg)  // Keras/NumPy: the sum times float32(1 / n)
        dev.merge_scale(l.X, l.in, l.X, l.in, float(1.0 / double(l.src.size())), B, l.in);
    } else {  // Add of whole rows only (the Python side sends nothing else to such a device)
      if (l.merge != merge_add) throw std::runtime_error("this device's fused trainer runs no Subtract/Multiply/Average");
      for (std::size_t n = 0; n < l.src.size(); ++n)
        if (block_source(layers, l, n, x, x_cols).ld != l.in)
          throw std::runtime_error("this device's fused trainer adds no model input that is a slice of the batch");
      dev.add(l.X, first.v, block_source(layers, l, 1, x, x_cols).v, std::int64_t(B) * l.in);
      for (std::size_t n = 2; n < l.src.size(); ++n)
        dev.add(l.X, l.X, block_source(layers, l, n, x, x_cols).v, std::int64_t(B) * l.in);
    }
  }
  return l.X;
}

// Backward of block i's input (graph models): the input gradient (G_i W_i^T, or G_i for
// a merge block) goes to the source blocks' output gradients through the merge (a column
// slice for concatenate, negated for Subtract's second input, times the other inputs for
// Multiply, times 1/n for Average); the first contribution to a source is written, later
// ones added (count: contributions so far this step), in the per-op path's order. Model
// inputs get no gradient.
template <class D>
void block_input_backward(const D& dev, std::vector<DenseBuffers>& layers, std::size_t i, const float* x, int B,
                          int x_cols, std::vector<int>& count) {
  DenseBuffers& l = layers[i];
  bool any = false;
  for (int k : l.src) any = any || k >= 0;
  if (!any) return;
  const auto grad_of = [&](int k) { return post_grad(layers[std::size_t(k)].post, layers[std::size_t(k)].G); };
  if (l.W && l.merge == merge_one && count[std::size_t(l.src[0])] == 0) {  // straight into the source's gradient
    dev.matmul(grad_of(l.src[0]), l.G, l.W, B, l.in, l.out, false, true, nullptr, Act::linear);
    ++count[std::size_t(l.src[0])];
    return;
  }
  const float* dX = l.dX;
  if (l.W)
    dev.matmul(l.dX, l.G, l.W, B, l.in, l.out, false, true, nullptr, Act::linear);
  else
    dX = l.G;  // a merge block: the identity from X to A
  if constexpr (has_merges<D>::value) {
    if constexpr (!has_merge_ops<D>::value) {
      if (l.merge > merge_add) throw std::runtime_error("this device's fused trainer runs no Subtract/Multiply/Average");
    }
    float* tmp = l.W ? nullptr : l.dX;  // a merge block's scratch (its dX is not otherwise used)
    const int n_src = int(l.src.size());
    if constexpr (has_merge_ops<D>::value) {
      if (l.merge == merge_avg)  // one scaled gradient for every input, as the per-op layer
        dev.merge_scale(tmp, l.in, dX, l.in, float(1.0 / double(n_src)), B, l.in);
    }
    int at = 0;
    for (int n = 0; n < n_src; ++n) {
      const int k = l.src[std::size_t(n)];
      const int w = block_source(layers, l, std::size_t(n), x, x_cols).width;
      const int off = l.merge == merge_concat ? at : 0;
      at += w;
      if (k < 0) continue;
      const float* d = dX;
      if constexpr (has_merge_ops<D>::value) {
        if (l.merge == merge_avg) {
          d = tmp;
        } else if (l.merge == merge_sub && n == 1) {
          dev.merge_scale(tmp, l.in, dX, l.in, -1.f, B, l.in);
          d = tmp;
        } else if (l.merge == merge_mul) {  // dy times the other inputs, left to right
          bool started = false;
          for (int m = 0; m < n_src; ++m) {
            if (m == n) continue;
            const BlockSource s = block_source(layers, l, std::size_t(m), x, x_cols);
            dev.merge_binary(tmp, l.in, started ? tmp : dX, l.in, s.v, s.ld, B, l.in, MergeOp::mul);
            started = true;
          }
          d = tmp;
        }
      }
      if (count[std::size_t(k)]++ == 0)
        dev.copy_cols(grad_of(k), w, 0, d, l.in, off, w, B);
      else
        dev.add_cols(grad_of(k), w, 0, d, l.in, off, w, B);
    }
  }
}

template <class D>
std::int64_t train_steps(const D& dev, std::vector<DenseBuffers>& layers, const OptimizerConfig& opt,
                         LossKind loss, const TrainData& data, int batch, std::int64_t step0,
                         std::int64_t step1, std::int64_t iterations, bool stop_on_nonfinite,
                         std::int64_t* steps_done) {
  const int L = int(layers.size());
  const int d_in = data.x_cols > 0 ? data.x_cols : layers.front().in, d_out = layers.back().out;
  bool graph = false;
  for (const DenseBuffers& l : layers) graph = graph || !l.src.empty();
  if (graph && !has_merges<D>::value) throw std::runtime_error("this device's fused trainer runs no graph blocks");
  if (data.heads && !has_heads<D>::value) throw std::runtime_error("this device's fused trainer runs no heads");
  std::vector<int> grads_seen(layers.size(), 0);
  std::vector<const float*> block_in(graph ? layers.size() : 0);  // each graph block's input this step
  std::int64_t s = step0;
  for (; s < step1; ++s) {
    const std::int64_t lo = data.step_starts ? data.step_starts[s] : s * batch;
    const int B = int(data.step_starts ? data.step_starts[s + 1] - lo : std::min<std::int64_t>(batch, data.n - lo));
    if (B > 0) {  // (not indented, to keep the diff small) a rank may hold no row of a short last batch
    dev.gather_rows(data.x_batch, data.x, data.order + lo, B, d_in);
    dev.gather_rows(data.y_batch, data.y, data.order + lo, B, data.y_cols);
    // forward: A_l = act(A_{l-1} W_l + b_l), one fused kernel per layer
    const float* a_prev = data.x_batch;
    for (std::size_t li = 0; li < layers.size(); ++li) {
      DenseBuffers& l = layers[li];
      if (graph) a_prev = block_in[li] = block_input(dev, layers, li, data.x_batch, B, d_in);
      if (!l.W) {  // a merge block: its output is the merged input
        if constexpr (has_merges<D>::value) dev.copy_cols(l.A, l.out, 0, a_prev, l.in, 0, l.in, B);
      } else if (l.Z) {  // keep the pre-activation for the backward pass
        dev.matmul(l.Z, a_prev, l.W, B, l.out, l.in, false, false, l.b, Act::linear);
        dev.act_forward(l.A, l.Z, std::int64_t(B) * l.out, l.act);
      } else {
        dev.matmul(l.A, a_prev, l.W, B, l.out, l.in, false, false, l.b, l.act);
      }
      a_prev = post_forward(dev, l.post, l.A, B);
    }
    if constexpr (has_heads<D>::value) {  // several outputs (heads.h; the CPU only)
      if (data.heads) heads_loss(dev, layers, *data.heads, data, B, lo, s);
    }
    if (!data.heads) {  // (not indented, to keep the diff small) one output: the last block's
    DenseBuffers& last = layers.back();
    // loss value (for the epoch's record) and its gradient w.r.t. the output
    // (the logits, for a cross-entropy), then the metric accumulators. The output is
    // that of the last block's steps, if it has any (e.g. Dense then Activation('sigmoid')
    // with mse; a softmax/sigmoid step a cross-entropy folds is left out by the caller).
    const float* out = post_output(last.post, last.A);
    float* gout = post_grad(last.post, last.G);
    const std::int64_t count = std::int64_t(B) * d_out;
    if (loss == LossKind::mse) {
      dev.mse(out, data.y_batch, count, data.step_losses + s);
      dev.mse_grad(gout, out, data.y_batch, count, 2.0f / float(count));
    } else if (int(loss) >= int(LossKind::loss_fn_base)) {
      const auto fn = static_cast<LossFn>(int(loss) - int(LossKind::loss_fn_base));
      dev.loss_grad(gout, out, data.y_batch, B, d_out, fn, data.loss_param, data.step_losses + s);
    } else {
      const auto kind = static_cast<XentKind>(int(loss) - 1);
      const float scale = kind == XentKind::sigmoid_binary ? 1.0f / float(count) : 1.0f / float(B);
      dev.xent(gout, out, data.y_batch, B, d_out, kind, scale, data.step_losses + s);
    }
    if (data.row_scale) {  // sample weights: the weighted mean loss, the rows' gradients scaled
      const float* rs = data.row_scale + lo;
      if (int(loss) >= int(LossKind::loss_fn_base))
        dev.weighted_loss_fn(out, data.y_batch, rs, B, d_out,
                             static_cast<LossFn>(int(loss) - int(LossKind::loss_fn_base)), data.loss_param,
                             data.step_losses + s);
      else
        dev.weighted_loss(out, data.y_batch, rs, B, d_out, int(loss) - 1, data.step_losses + s);
      dev.scale_rows(gout, rs, B, d_out);
    }
    if (data.counts)
      dev.confusion_update(data.counts, out, data.y_batch, B, d_out, data.classes, data.sparse_labels,
                           data.threshold);
    if (data.err_sums) dev.error_sums_update(data.err_sums, out, data.y_batch, count);
    for (int m = 0; m < data.n_metric_specs; ++m)
      dev.metric_update(data.metric_specs[m], out, data.y_batch, data.row_scale ? data.row_scale + lo : nullptr,
                        B, d_out);
    }  // one output
    // backward, last layer first; each W is used for dX before it is updated
    if (graph) std::fill(grads_seen.begin(), grads_seen.end(), 0);
    if (data.heads) heads_seed(*data.heads, grads_seen);
    bool act_done = false;  // layer i's activation derivative and bias gradient came with its G (hidden_grad)
    for (int i = L - 1; i >= 0; --i) {
      DenseBuffers& l = layers[i];
      const std::int64_t size = std::int64_t(B) * l.out;
      if (!act_done) {
        if (!l.post.empty()) post_backward(dev, l.post, l.A, l.G, B);
        if (l.A_l1 != 0.f || l.A_l2 != 0.f)  // the activity penalty, as the per-op Dense.backward adds it
          dev.regularize(l.G, l.A, size, float(double(l.A_l1) / B), float(double(l.A_l2) / B), data.step_losses + s);
        if (l.act != Act::linear) dev.act_backward(l.G, l.G, l.Z ? l.Z : l.A, size, l.act);
      }
      const float* a_in = graph ? block_in[std::size_t(i)]
                                : i > 0 ? post_output(layers[i - 1].post, layers[i - 1].A) : data.x_batch;
      if (!l.frozen) {
        dev.matmul(l.dW, a_in, l.G, l.in, l.out, B, true, false, nullptr, Act::linear);
        if (l.b && !act_done) dev.sum_rows(l.db, l.G, B, l.out);
      }
      act_done = false;
      if (graph) {
        block_input_backward(dev, layers, std::size_t(i), data.x_batch, B, d_in, grads_seen);
      } else if (i > 0) {
        DenseBuffers& p = layers[i - 1];
        if constexpr (has_hidden_grad<D>::value) {
          // a plain layer below: its G, activation derivative and bias gradient at once (one
          // pass under a few units, as a binary classifier's or regressor's), the same bits
          act_done = p.post.empty() && p.A_l1 == 0.f && p.A_l2 == 0.f;
          if (act_done)
            dev.hidden_grad(p.G, p.b && !p.frozen ? p.db : nullptr, l.G, l.W, p.Z ? p.Z : p.A, B, p.out, l.out, p.act);
        }
        if (!act_done)
          dev.matmul(post_grad(p.post, p.G), l.G, l.W, B, l.in, l.out, false, true, nullptr, Act::linear);
      }
    }
    }  // B > 0
    // weight penalties (kernel/bias regularizers), in layer order as the per-op path:
    // added to this step's loss and to the gradients before the update
    const float ps = data.penalty_scale ? data.penalty_scale[s] : 1.f;
    for (DenseBuffers& l : layers) {
      if (l.W_l1 != 0.f || l.W_l2 != 0.f)
        dev.regularize(l.dW, l.W, std::int64_t(l.in) * l.out, ps * l.W_l1, ps * l.W_l2, data.step_losses + s);
      if (l.b && (l.b_l1 != 0.f || l.b_l2 != 0.f))
        dev.regularize(l.db, l.b, l.out, ps * l.b_l1, ps * l.b_l2, data.step_losses + s);
      if (!l.post.empty()) post_regularize(dev, l.post, ps, data.step_losses + s);  // the block's steps next
    }
    // data parallelism: every rank adds the whole penalty, and the hook's rows / global_rows
    // scaling makes the sum over ranks count it once
    if (data.between && !data.between(data.between_ctx, s, B)) break;  // gradient phase -> update phase
    // optimizer update of every parameter with the same step count and the
    // step's row of parameters (Keras: clip the gradients, decay, update, EMA)
    const std::int64_t t = iterations + 1;
    const float* P = opt.step_params + (s - step0) * kOptParams;
    if (opt.flags & optf::clip_global) {  // one norm over all of the step's gradients
      dev.norm_reset();
      for (DenseBuffers& l : layers) {
        if (!l.frozen) {
          dev.norm_add(l.dW, std::int64_t(l.in) * l.out);
          if (l.b) dev.norm_add(l.db, l.out);
        }
        if (!l.post.empty()) post_norm_add(dev, l.post);  // in model order, as the per-op path
      }
    }
    for (DenseBuffers& l : layers) {
      const std::int64_t nw = std::int64_t(l.in) * l.out;
      if (l.frozen) {  // the steps after it (batch-norm) may still train
        if (!l.post.empty()) {
          post_update(dev, l.post, opt, P);
          post_constrain(dev, l.post);
        }
        continue;
      }
      if (opt.flags & optf::clip_norm) {
        dev.norm_reset();
        dev.norm_add(l.dW, nw);
      }
      const int no_wd = opt.flags & ~optf::weight_decay;
      dev.opt_update(opt.kind, l.W_decay ? opt.flags : no_wd, P, l.W, l.dW, l.W_s1, l.W_s2, l.W_s3, l.W_ema, nw);
      if (l.b) {
        if (opt.flags & optf::clip_norm) {
          dev.norm_reset();
          dev.norm_add(l.db, l.out);
        }
        dev.opt_update(opt.kind, l.b_decay ? opt.flags : no_wd, P, l.b, l.db, l.b_s1, l.b_s2, l.b_s3, l.b_ema,
                       l.out);
      }
      if (!l.post.empty()) post_update(dev, l.post, opt, P);
      if constexpr (has_constrain<D>::value) {  // Keras: constraints after the update
        if (l.W_con.kind != ConstraintKind::none) dev.constrain(l.W, l.in, l.out, l.W_con);
        if (l.b && l.b_con.kind != ConstraintKind::none) dev.constrain(l.b, l.out, 1, l.b_con);
      }
      if (!l.post.empty()) post_constrain(dev, l.post);
    }
    iterations = t;
    if ((stop_on_nonfinite && !dev.is_finite(data.step_losses + s)) || (data.after && !data.after(data.after_ctx, s))) {
      ++s;
      break;
    }
  }
  *steps_done = s - step0;
  return iterations;
}

}  // namespace fusednn
