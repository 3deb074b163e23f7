// Two data-parallel replicas of the fused CPU training loop (fusednn/cpu_replicas.h).
//
// Step s's rows [lo, hi) of the epoch's order are split at lo + ceil(B/2): replica 0
// takes the first part, replica 1 the rest (empty for a one-row last batch). Replica c
// is the ordinary fused loop (trainer.h) run for one step over its rows, as an MPI rank
// runs it: its own `order`, `row_scale` and `step_starts`, its own batch, activation and
// gradient buffers (replica 0: the trainer's own; replica 1: C++-owned), the parameters
// shared, no weight penalties, and an empty update phase (train_steps_no_update). Once
// both replicas of the step are done, the update runs as two halves of every parameter
// (the optimizer rules and penalties are elementwise): on its half, a half sums the
// replicas' gradients, g = c0 g0 + c1 g1 with c_r = B_r / B (the mean over the whole
// batch), adds the weight penalty's gradient (and sums the penalty), and updates it with
// the trainer's own optimizer kernel. The step's loss is the replicas' losses weighted
// the same way plus both halves' penalties.
//
// Scheduling (replica_schedule.h): each step is two stages, the replicas, then the two
// halves of the update, each task on its own core where two threads run (so a replica's
// buffers and a half's optimizer state stay in one core's cache: when whichever thread
// finished last did the whole update, that moved the Adam state between the cores, and
// the update took 23 us of digits' step). Which thread runs a replica changes nothing in
// the arithmetic; the results differ from one replica's only by float32 rounding
// (another summation order of the batch's rows).
//
// Whether to ask for a helper at all: on a machine with more runnable threads than
// cores a helper is often descheduled in the middle of a replica, and each such wait
// costs a time slice (milliseconds), far more than the halved step saves. So the
// calling thread times its waits for the other participant and, after runs that were
// mostly waiting or slower per step than its runs alone, runs alone for a while
// (ReplicaTiming). This changes only the speed, never the numbers.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "fusednn/cpu.h"
#include "fusednn/cpu_replicas.h"
#include "replica_schedule.h"
#include "threads.h"

namespace fusednn {
namespace cpu {

namespace {

constexpr int kReplicas = 2;

struct Replica {
  std::vector<DenseBuffers> layers;
  TrainData data;
  std::vector<std::int64_t> order, starts;
  std::vector<float> row_scale;
};

struct Run {
  const OptimizerConfig* opt;
  LossKind loss;
  int batch;
  std::int64_t step0;
  bool stop_on_nonfinite;
  bool (*after)(void*, std::int64_t) = nullptr;  // the caller's TrainData::after
  void* after_ctx = nullptr;
  Replica rep[kReplicas];
  const std::vector<DenseBuffers>* layers;  // the trainer's (the replicas' copies have no penalties)
  float penalty[kReplicas] = {};      // each update half's weight penalty of the step
};

// Half h's share [a, e) of a parameter of n floats: the first half (rounded up to whole
// cache lines, so the halves never write the same line; a small bias all of it) for h = 0.
inline void half(int h, std::int64_t n, std::int64_t* a, std::int64_t* e) {
  const std::int64_t mid = std::min<std::int64_t>(n, (n / 2 + kAlignFloats - 1) / kAlignFloats * kAlignFloats);
  *a = h == 0 ? 0 : mid;
  *e = h == 0 ? mid : n;
}

// Half h of step s's update, after both replicas: the batch's gradient on that half of
// every parameter, its weight penalty (the replicas leave the penalties out, so they are
// computed once), then its update with the trainer's own optimizer kernel (the rules are
// elementwise, so the halves are independent). The sum goes to the gradient buffer of
// replica h, which the same thread ran (so it is in this core's cache: writing the other
// core's lines made half 1 of digits' update 4x slower than a local one).
void reduce_and_update(Run& R, std::int64_t s, int h) {
  Replica &r0 = R.rep[0], &r1 = R.rep[1];
  const std::int64_t B0 = r0.starts[std::size_t(s) + 1] - r0.starts[std::size_t(s)];
  const std::int64_t B1 = r1.starts[std::size_t(s) + 1] - r1.starts[std::size_t(s)];
  // with B1 = 0 replica 0's gradient is already the batch's (replica 1's is stale)
  const bool two = B1 > 0;
  const double total = double(B0 + B1);
  const float c0 = float(double(B0) / total), c1 = float(double(B1) / total);
  const OptimizerConfig& opt = *R.opt;
  const float* P = opt.step_params + (s - R.step0) * kOptParams;
  const float ps = r0.data.penalty_scale ? r0.data.penalty_scale[s] : 1.f;
  const int no_wd = opt.flags & ~optf::weight_decay;
  float penalty = 0.f;
  const auto update = [&](int flags, float* w, float* g0, float* g1, float* s1, float* s2, float* s3, float* ema,
                          std::int64_t n, float l1, float l2) {
    std::int64_t a, e;
    half(h, n, &a, &e);
    if (e <= a) return;
    float* g = two && h == 1 ? g1 : g0;
    const std::size_t m = std::size_t(e - a);
    if (l1 != 0.f || l2 != 0.f) {  // the sum and the penalty in one pass
      if (two)
        weighted_sum_regularize(g + a, g0 + a, g1 + a, c0, c1, w + a, m, ps * l1, ps * l2, &penalty);
      else
        regularize(g + a, w + a, m, ps * l1, ps * l2, &penalty);
    } else if (two) {
      for (std::int64_t i = a; i < e; ++i) g[i] = c0 * g0[i] + c1 * g1[i];
    }
    const auto at = [a](float* p) { return p ? p + a : nullptr; };
    optimizer_update(opt.kind, flags, P, w + a, g + a, at(s1), at(s2), at(s3), at(ema), std::size_t(e - a), 0.0);
  };
  for (std::size_t li = 0; li < r0.layers.size(); ++li) {
    const DenseBuffers &l = (*R.layers)[li], &m = r1.layers[li];
    update(l.W_decay ? opt.flags : no_wd, l.W, l.dW, m.dW, l.W_s1, l.W_s2, l.W_s3, l.W_ema,
           std::int64_t(l.in) * l.out, l.W_l1, l.W_l2);
    if (l.b)
      update(l.b_decay ? opt.flags : no_wd, l.b, l.db, m.db, l.b_s1, l.b_s2, l.b_s3, l.b_ema, l.out, l.b_l1, l.b_l2);
  }
  R.penalty[h] = penalty;
}

// The step's loss, once both halves are done: the replicas' data losses weighted by
// their rows, then the two halves' penalties.
void step_loss(Run& R, std::int64_t s) {
  const Replica &r0 = R.rep[0], &r1 = R.rep[1];
  const std::int64_t B0 = r0.starts[std::size_t(s) + 1] - r0.starts[std::size_t(s)];
  const std::int64_t B1 = r1.starts[std::size_t(s) + 1] - r1.starts[std::size_t(s)];
  float* L0 = r0.data.step_losses + s;
  double loss = *L0;
  if (B1 > 0) {
    const double total = double(B0 + B1);
    loss = double(float(double(B0) / total)) * loss + double(float(double(B1) / total)) * double(r1.data.step_losses[s]);
  }
  *L0 = float(loss + double(R.penalty[0]) + double(R.penalty[1]));
}

// Stage 0: replica c's forward and backward (an empty replica contributes nothing);
// stage 1: half c of the update.
void task(void* ctx, std::int64_t s, int stage, int c) {
  Run& R = *static_cast<Run*>(ctx);
  if (stage == 1) {
    reduce_and_update(R, s, c);
  } else if (R.rep[c].starts[std::size_t(s) + 1] > R.rep[c].starts[std::size_t(s)]) {
    std::int64_t done = 0;
    train_steps_no_update(R.rep[c].layers, *R.opt, R.loss, R.rep[c].data, R.batch, s, s + 1, 0, false, &done);
  }
}

bool step_done(void* ctx, std::int64_t s) {
  Run& R = *static_cast<Run*>(ctx);
  step_loss(R, s);
  if (R.stop_on_nonfinite && !std::isfinite(R.rep[0].data.step_losses[s])) return false;
  return !R.after || R.after(R.after_ctx, s);
}

}  // namespace

bool ReplicaTiming::next_helper() {
  if (alone_left == 0) return true;
  --alone_left;
  return false;
}

void ReplicaTiming::record(bool helper, double seconds_per_step, double wait_share) {
  if (!helper) {
    alone = alone > 0.0 ? 0.5 * alone + 0.5 * seconds_per_step : seconds_per_step;
    return;
  }
  if (wait_share <= kMaxWaitShare && (alone == 0.0 || seconds_per_step < alone)) {
    alone_next = 1;
    return;
  }
  alone_left = alone_next;
  alone_next = std::min(2 * alone_next, kMaxAlone);
}

const char* replicas_ineligible(const std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                                const TrainData& data) {
  if (layers.empty()) return "no layers";
  for (const DenseBuffers& l : layers) {
    if (!l.W || l.frozen) return "a frozen or weightless block";
    if (!l.src.empty() || l.merge) return "a graph block";
    if (!l.post.empty()) return "a layer step after a Dense";
    if (l.W_con.kind != ConstraintKind::none || l.b_con.kind != ConstraintKind::none) return "a weight constraint";
  }
  if (!replica_loss(loss)) return "a loss other than mse or a cross-entropy";
  if (opt.flags & (optf::clip_norm | optf::clip_global)) return "gradient norm clipping";
  if (data.counts || data.err_sums || data.n_metric_specs) return "metric accumulators";
  if (data.between) return "the caller's data parallelism";
  return nullptr;
}

std::int64_t train_steps_replicated(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                                    const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                                    std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done,
                                    ReplicaScratch& scratch) {
  if (!columns_ineligible(layers, loss, data))
    return train_steps_columns(layers, opt, loss, data, batch, step0, step1, iterations, stop_on_nonfinite,
                               steps_done, scratch);
  const int h = (batch + 1) / 2;  // replica 0's rows of a full batch (replica 1 has at most as many)
  const int d_in = data.x_cols > 0 ? data.x_cols : layers.front().in;
  // replica 1's buffers: batch rows, activations and gradients for h rows, dW and db
  // (each of the 2 + 5 per layer buffers padded by under 2 cache lines)
  std::size_t need = std::size_t(h) * (std::size_t(d_in) + std::size_t(data.y_cols)) + 4 * kAlignFloats;
  for (const DenseBuffers& l : layers)
    need += std::size_t(h) * l.out * 3 + std::size_t(l.in) * l.out + std::size_t(l.out) + 10 * kAlignFloats;
  if (scratch.storage.size() < need) scratch.storage.assign(need, 0.f);
  // the steps' rows: the caller's step_starts (several epochs in one run, each with its
  // own short last batch), else whole batches of the order
  const std::int64_t n = data.n, steps = data.step_starts ? step1 : (n + batch - 1) / batch;
  scratch.losses.assign(std::size_t(std::max<std::int64_t>(steps, 1)), 0.f);

  Run R;
  R.opt = &opt;
  R.layers = &layers;
  R.loss = loss;
  R.batch = batch;
  R.step0 = step0;
  R.stop_on_nonfinite = stop_on_nonfinite;
  R.after = data.after;
  R.after_ctx = data.after_ctx;
  for (int r = 0; r < kReplicas; ++r) {
    Replica& rep = R.rep[r];
    rep.order.reserve(std::size_t(n / 2 + steps));
    rep.starts.assign(std::size_t(steps) + 1, 0);
    if (data.row_scale) rep.row_scale.reserve(rep.order.capacity());
    for (std::int64_t s = 0; s < steps; ++s) {
      const std::int64_t lo = data.step_starts ? data.step_starts[s] : s * batch;
      const std::int64_t hi = data.step_starts ? data.step_starts[s + 1] : std::min<std::int64_t>(n, lo + batch);
      const std::int64_t mid = lo + (hi - lo + 1) / 2;
      const std::int64_t a = r == 0 ? lo : mid, e = r == 0 ? mid : hi;
      rep.order.insert(rep.order.end(), data.order + a, data.order + e);
      if (data.row_scale) rep.row_scale.insert(rep.row_scale.end(), data.row_scale + a, data.row_scale + e);
      rep.starts[std::size_t(s) + 1] = std::int64_t(rep.order.size());
    }
    rep.data = data;
    rep.data.after = nullptr;  // (called once a step, by step_done)
    rep.data.order = rep.order.data();
    rep.data.step_starts = rep.starts.data();
    rep.data.row_scale = data.row_scale ? rep.row_scale.data() : nullptr;
    rep.layers = layers;  // W, b and the optimizer state are shared; replica 1 gets its own buffers below
    for (DenseBuffers& l : rep.layers) l.W_l1 = l.W_l2 = l.b_l1 = l.b_l2 = 0.f;  // added once, by the update halves
  }
  Replica& r1 = R.rep[1];
  std::size_t at = 0;
  r1.data.x_batch = aligned_take(scratch.storage, at, std::size_t(h) * d_in);
  r1.data.y_batch = aligned_take(scratch.storage, at, std::size_t(h) * data.y_cols);
  r1.data.step_losses = scratch.losses.data();
  for (DenseBuffers& l : r1.layers) {
    l.A = aligned_take(scratch.storage, at, std::size_t(h) * l.out);
    l.G = aligned_take(scratch.storage, at, std::size_t(h) * l.out);
    float* z = aligned_take(scratch.storage, at, std::size_t(h) * l.out);
    l.Z = l.Z ? z : nullptr;  // only where the activation's backward needs it
    l.dW = aligned_take(scratch.storage, at, std::size_t(l.in) * l.out);
    float* db = aligned_take(scratch.storage, at, std::size_t(l.out));
    l.db = l.b ? db : nullptr;
  }
  scratch.last_split = "rows";
  ReplicaSchedule S;
  S.stages = 2;
  S.step0 = step0;
  S.step1 = step1;
  S.ctx = &R;
  S.task = &task;
  S.step_done = &step_done;
  *steps_done = run_timed(S, scratch);
  return iterations + *steps_done;
}

}  // namespace cpu
}  // namespace fusednn
