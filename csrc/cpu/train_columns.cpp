// Two replicas of a one-hidden-layer network split by hidden units (fusednn/cpu_replicas.h:
// train_steps_columns), for scikit-learn's default network (64 -> 100 relu -> 10).
//
// Splitting by rows (train_replicas.cpp) sums two gradients of every parameter and moves
// each weight between the cores every step: about 6 us of digits' 48 us step. Here task c
// owns hidden units [c*hc, (c+1)*hc) (hc a multiple of 8: whole vectors, hence the
// narrow-product kernels' tails avoided), their first-layer weights (packed as a D×hc
// copy for the run), biases, second-layer rows and optimizer state, and updates them
// itself: no gradient crosses the cores. The H - 2hc < 16 "tail" units left over are
// split by rows instead, each task taking its half of the batch rows, and updated once
// per step from the two tasks' partial gradients (a few hundred floats).
//
// A step is three stages of two tasks (replica_schedule.h):
//   0 forward: the batch through task c's hidden units (all rows) and the tail units (its
//     rows); P_c = its units' share of the logits;
//   1 loss: for task c's rows, logits = P_0 + P_1 + b2 (that order), the loss and its
//     gradient dZ (scaled for the whole batch's mean);
//   2 backward and update: task c's units' gradients over all rows, their penalties and
//     optimizer update; the tail units' partial gradients over its rows; task 0 also
//     updates b2.
// After the step (on one thread): the tail units' gradient (task 0's part + task 1's),
// penalty and update, and the step's loss. The arithmetic is fixed whichever thread runs a
// task, so results depend on neither timing nor thread availability; they differ from one
// replica's by float32 rounding (the logits summed in two parts, the loss in two halves).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fusednn/cpu.h"
#include "fusednn/cpu_replicas.h"
#include "replica_schedule.h"

namespace fusednn {
namespace cpu {

namespace {

constexpr int kMinUnits = 16;   // the fewest hidden units a task owns
constexpr int kMinInputs = 16;  // the fewest inputs for which the split by units pays

// The optimizer state arrays of a parameter (any may be null: unused by the kind)
struct State {
  float *s1 = nullptr, *s2 = nullptr, *s3 = nullptr, *ema = nullptr;
  State at(std::size_t k) const {
    const auto f = [k](float* p) { return p ? p + k : nullptr; };
    return {f(s1), f(s2), f(s3), f(ema)};
  }
};

struct Task {
  float *xb, *yb, *H, *G, *P, *Ht, *Gt, *Pt;  // batch inputs and targets, hidden units, logits parts
  float *dW1, *db1, *dW2, *db2, *dW1t, *db1t, *dW2t;  // (db2: over its rows)
  float* W1;      // packed D×hc copy of its first-layer columns
  State W1s;      // and of their optimizer state
  double loss = 0.0;   // the data loss summed over its rows (mean × rows)
  float penalty = 0.f; // its parameters' weight penalties of the step
};

struct Run {
  DenseBuffers *l0, *l1;
  const OptimizerConfig* opt;
  LossKind loss;
  const TrainData* data;
  int batch, D, H, O, hc, t, ycols;
  std::int64_t step0;
  bool stop_on_nonfinite;
  Task task[2];
  float *Z, *dZ, *db2;          // shared: the logits and their gradient (batch×O), b2's gradient
  float* W1t;                    // packed D×t tail columns of W1
  State W1ts;
  float *gW1t, *gb1t, *gW2t;     // the tail's summed gradient

  std::int64_t lo(std::int64_t s) const { return data->step_starts ? data->step_starts[s] : s * batch; }
  int rows(std::int64_t s) const {
    return int(data->step_starts ? data->step_starts[s + 1] - lo(s) : std::min<std::int64_t>(batch, data->n - lo(s)));
  }
  // task c's rows of step s: [off, off + count) of the batch (task 0 the first ceil(B/2))
  void share(std::int64_t s, int c, int* off, int* count) const {
    const int B = rows(s), mid = (B + 1) / 2;
    *off = c == 0 ? 0 : mid;
    *count = c == 0 ? mid : B - mid;
  }
  const float* P(std::int64_t s) const { return opt->step_params + (s - step0) * kOptParams; }
  float ps(std::int64_t s) const { return data->penalty_scale ? data->penalty_scale[s] : 1.f; }
  int flags(bool decay) const { return decay ? opt->flags : opt->flags & ~optf::weight_decay; }
};

// p += q over n floats (separate buffers: vectorised)
void add_to(float* __restrict p, const float* __restrict q, std::size_t n) {
  for (std::size_t k = 0; k < n; ++k) p[k] += q[k];
}

void gather(float* dst, const float* src, const std::int64_t* idx, int rows, int cols) {
  for (int r = 0; r < rows; ++r)
    std::memcpy(dst + std::size_t(r) * cols, src + std::size_t(idx[r]) * cols, sizeof(float) * std::size_t(cols));
}

// The weight penalty's gradient and value (where the factors are not zero), then the update.
void update(const Run& R, std::int64_t s, bool decay, float* w, float* g, const State& st, std::size_t n, float l1,
            float l2, float* penalty) {
  if (l1 != 0.f || l2 != 0.f) regularize(g, w, n, R.ps(s) * l1, R.ps(s) * l2, penalty);
  optimizer_update(R.opt->kind, R.flags(decay), R.P(s), w, g, st.s1, st.s2, st.s3, st.ema, n, 0.0);
}

void forward(Run& R, std::int64_t s, int c) {
  Task& T = R.task[c];
  const DenseBuffers &l0 = *R.l0, &l1 = *R.l1;
  const int B = R.rows(s), D = R.D, O = R.O, hc = R.hc, t = R.t;
  int off, n;
  R.share(s, c, &off, &n);
  gather(T.xb, R.data->x, R.data->order + R.lo(s), B, D);
  matmul(T.H, T.xb, T.W1, B, hc, D, false, false, l0.b ? l0.b + c * hc : nullptr, l0.act);
  matmul(T.P, T.H, l1.W + std::size_t(c) * hc * O, B, O, hc, false, false, nullptr, Act::linear);
  if (t > 0 && n > 0) {  // the tail units on its rows, their share added to those rows' logits
    matmul(T.Ht, T.xb + std::size_t(off) * D, R.W1t, n, t, D, false, false, l0.b ? l0.b + 2 * hc : nullptr, l0.act);
    matmul(T.Pt, T.Ht, l1.W + std::size_t(2 * hc) * O, n, O, t, false, false, nullptr, Act::linear);
    add_to(T.P + std::size_t(off) * O, T.Pt, std::size_t(n) * O);
  }
}

void loss(Run& R, std::int64_t s, int c) {
  Task& T = R.task[c];
  const int B = R.rows(s), O = R.O;
  int off, n;
  R.share(s, c, &off, &n);
  T.loss = 0.0;
  if (n == 0) {
    if (R.l1->b) std::fill_n(T.db2, O, 0.f);
    return;
  }
  const float* __restrict P0 = R.task[0].P + std::size_t(off) * O;
  const float* __restrict P1 = R.task[1].P + std::size_t(off) * O;
  const float* __restrict b2 = R.l1->b;
  float* __restrict z = R.Z + std::size_t(off) * O;
  float* g = R.dZ + std::size_t(off) * O;
  for (std::size_t k = 0; k < std::size_t(n) * O; ++k) z[k] = P0[k] + P1[k];
  if (b2)
    for (int r = 0; r < n; ++r)
      for (int j = 0; j < O; ++j) z[std::size_t(r) * O + j] += b2[j];
  gather(T.yb, R.data->y, R.data->order + R.lo(s) + off, n, R.ycols);
  const std::size_t count = std::size_t(n) * O;
  double mean;
  if (R.loss == LossKind::mse) {
    mean = mse(z, T.yb, count);
    mse_grad(g, z, T.yb, count, 2.0f / float(std::size_t(B) * O));
  } else {
    const auto kind = static_cast<XentKind>(int(R.loss) - 1);
    const float scale = kind == XentKind::sigmoid_binary ? 1.0f / float(std::size_t(B) * O) : 1.0f / float(B);
    mean = xent(g, z, T.yb, std::size_t(n), std::size_t(O), kind, scale);
  }
  T.loss = mean * double(n);  // every kind's value is a mean over rows (or rows × O)
  if (b2) sum_rows(T.db2, g, std::size_t(n), std::size_t(O));  // its rows' part of b2's gradient
}

void backward(Run& R, std::int64_t s, int c) {
  Task& T = R.task[c];
  DenseBuffers &l0 = *R.l0, &l1 = *R.l1;
  const int B = R.rows(s), D = R.D, O = R.O, hc = R.hc, t = R.t;
  int off, n;
  R.share(s, c, &off, &n);
  T.penalty = 0.f;
  if (c == 0 && l1.b) {  // b2: one task's, from the two tasks' rows
    const float *g0 = R.task[0].db2, *g1 = R.task[1].db2;
    for (int j = 0; j < O; ++j) R.db2[j] = g0[j] + g1[j];  // (zero for a task without rows)
    update(R, s, l1.b_decay, l1.b, R.db2, State{l1.b_s1, l1.b_s2, l1.b_s3, l1.b_ema}, std::size_t(O), l1.b_l1,
           l1.b_l2, &T.penalty);
  }
  float* W2 = l1.W + std::size_t(c) * hc * O;
  matmul(T.dW2, T.H, R.dZ, hc, O, B, true, false, nullptr, Act::linear);
  hidden_grad(T.G, l0.b ? T.db1 : nullptr, R.dZ, W2, T.H, std::size_t(B), std::size_t(hc), std::size_t(O), l0.act);
  matmul(T.dW1, T.xb, T.G, D, hc, B, true, false, nullptr, Act::linear);
  if (t > 0) {  // the tail units' partial gradients over its rows (summed after the step)
    if (n > 0) {
      const float* dz = R.dZ + std::size_t(off) * O;
      matmul(T.dW2t, T.Ht, dz, t, O, n, true, false, nullptr, Act::linear);
      hidden_grad(T.Gt, l0.b ? T.db1t : nullptr, dz, l1.W + std::size_t(2 * hc) * O, T.Ht, std::size_t(n), std::size_t(t),
                  std::size_t(O), l0.act);
      matmul(T.dW1t, T.xb + std::size_t(off) * D, T.Gt, D, t, n, true, false, nullptr, Act::linear);
    } else {
      std::fill_n(T.dW2t, std::size_t(t) * O, 0.f);
      std::fill_n(T.dW1t, std::size_t(D) * t, 0.f);
      if (l0.b) std::fill_n(T.db1t, t, 0.f);
    }
  }
  // its units' parameters (W2's rows after their use above)
  update(R, s, l0.W_decay, T.W1, T.dW1, T.W1s, std::size_t(D) * hc, l0.W_l1, l0.W_l2, &T.penalty);
  if (l0.b)
    update(R, s, l0.b_decay, l0.b + c * hc, T.db1, State{l0.b_s1, l0.b_s2, l0.b_s3, l0.b_ema}.at(std::size_t(c) * hc),
           std::size_t(hc), l0.b_l1, l0.b_l2, &T.penalty);
  update(R, s, l1.W_decay, W2, T.dW2, State{l1.W_s1, l1.W_s2, l1.W_s3, l1.W_ema}.at(std::size_t(c) * hc * O),
         std::size_t(hc) * O, l1.W_l1, l1.W_l2, &T.penalty);
}

void task(void* ctx, std::int64_t s, int stage, int c) {
  Run& R = *static_cast<Run*>(ctx);
  if (stage == 0)
    forward(R, s, c);
  else if (stage == 1)
    loss(R, s, c);
  else
    backward(R, s, c);
}

// After both tasks of the step: the tail units' update, then the step's loss.
bool step_done(void* ctx, std::int64_t s) {
  Run& R = *static_cast<Run*>(ctx);
  DenseBuffers &l0 = *R.l0, &l1 = *R.l1;
  const int D = R.D, O = R.O, hc = R.hc, t = R.t;
  const Task &T0 = R.task[0], &T1 = R.task[1];
  float penalty = 0.f;
  if (t > 0) {
    const auto add = [](float* __restrict g, const float* __restrict a, const float* __restrict b, std::size_t n) {
      for (std::size_t k = 0; k < n; ++k) g[k] = a[k] + b[k];
    };
    add(R.gW1t, T0.dW1t, T1.dW1t, std::size_t(D) * t);
    add(R.gW2t, T0.dW2t, T1.dW2t, std::size_t(t) * O);
    update(R, s, l0.W_decay, R.W1t, R.gW1t, R.W1ts, std::size_t(D) * t, l0.W_l1, l0.W_l2, &penalty);
    if (l0.b) {
      add(R.gb1t, T0.db1t, T1.db1t, std::size_t(t));
      update(R, s, l0.b_decay, l0.b + 2 * hc, R.gb1t, State{l0.b_s1, l0.b_s2, l0.b_s3, l0.b_ema}.at(std::size_t(2 * hc)),
             std::size_t(t), l0.b_l1, l0.b_l2, &penalty);
    }
    update(R, s, l1.W_decay, l1.W + std::size_t(2 * hc) * O, R.gW2t,
           State{l1.W_s1, l1.W_s2, l1.W_s3, l1.W_ema}.at(std::size_t(2 * hc) * O), std::size_t(t) * O, l1.W_l1,
           l1.W_l2, &penalty);
  }
  const int B = R.rows(s);
  const double data_loss = B > 0 ? (T0.loss + T1.loss) / double(B) : 0.0;
  float* out = R.data->step_losses + s;
  *out = float(data_loss + double(T0.penalty) + double(T1.penalty) + double(penalty));
  if (R.stop_on_nonfinite && !std::isfinite(*out)) return false;
  return !R.data->after || R.data->after(R.data->after_ctx, s);
}

// Columns [j0, j0 + w) of the D×H matrix W into dst (D×w), or back (to_w).
void columns(float* W, int H, float* dst, int D, int j0, int w, bool to_w) {
  if (!W) return;
  for (int d = 0; d < D; ++d) {
    float* row = W + std::size_t(d) * H + j0;
    float* p = dst + std::size_t(d) * w;
    if (to_w)
      std::copy_n(p, w, row);
    else
      std::copy_n(row, w, p);
  }
}

}  // namespace

const char* columns_ineligible(const std::vector<DenseBuffers>& layers, LossKind loss, const TrainData& data) {
  if (layers.size() != 2) return "not one hidden layer";
  const DenseBuffers &l0 = layers[0], &l1 = layers[1];
  if (l0.in != (data.x_cols > 0 ? data.x_cols : l0.in)) return "a graph model's inputs";
  if (l0.out / 2 < kMinUnits) return "too few hidden units";
  // with few inputs the first layer's products are small beside the loss and the three
  // hand-offs a step: the rows split was faster (8 and 10 inputs: 43 against 45 ms and 7.4
  // against 7.6 ms a fit; 30 inputs: 13.6 against 13.1, 64: 52 against 49)
  if (l0.in < kMinInputs) return "too few inputs";
  if (l0.Z || act_backward_needs_input(l0.act)) return "a hidden activation whose derivative needs its input";
  if (l1.act != Act::linear || l1.Z) return "an output activation";
  for (const DenseBuffers& l : layers)
    if (l.A_l1 != 0.f || l.A_l2 != 0.f || !l.post.empty() || l.frozen || !l.W) return "layer steps or penalties";
  if (!replica_loss(loss)) return "a loss other than mse or a cross-entropy";
  if (data.row_scale) return "sample weights";
  return nullptr;
}

std::int64_t train_steps_columns(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss_kind,
                                 const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                                 std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done,
                                 ReplicaScratch& scratch) {
  Run R;
  R.l0 = &layers[0];
  R.l1 = &layers[1];
  R.opt = &opt;
  R.loss = loss_kind;
  R.data = &data;
  R.batch = batch;
  R.D = R.l0->in;
  R.H = R.l0->out;
  R.O = R.l1->out;
  R.hc = R.H / 2 / 8 * 8;
  R.t = R.H - 2 * R.hc;
  R.ycols = data.y_cols;
  R.step0 = step0;
  R.stop_on_nonfinite = stop_on_nonfinite;
  const std::size_t B = std::size_t(batch), D = R.D, O = R.O, hc = R.hc, t = R.t;
  // the largest step: a caller's step_starts may hold more rows than `batch`
  std::size_t most = B;
  if (data.step_starts)
    for (std::int64_t s = step0; s < step1; ++s) most = std::max<std::size_t>(most, std::size_t(R.rows(s)));
  const std::size_t mh = (most + 1) / 2;
  const DenseBuffers& l0 = *R.l0;
  const int states = (l0.W_s1 != nullptr) + (l0.W_s2 != nullptr) + (l0.W_s3 != nullptr) + (l0.W_ema != nullptr);
  const std::size_t per_task[] = {most * D, mh * std::size_t(R.ycols), most * hc, most * hc, most * O, mh * t, mh * t,
                                  mh * O, D * hc, hc, hc * O, O, D * t, t, t * O};
  std::size_t need = 0;
  for (std::size_t n : per_task) need += 2 * aligned_floats_needed(n);
  need += std::size_t(2 + 2 * states) * aligned_floats_needed(D * hc);
  need += 2 * aligned_floats_needed(most * O) + aligned_floats_needed(O);
  need += std::size_t(2 + states) * aligned_floats_needed(D * t) + aligned_floats_needed(t) + aligned_floats_needed(t * O);
  if (scratch.storage.size() < need) scratch.storage.assign(need, 0.f);
  std::size_t at = 0;
  const auto take = [&](std::size_t n) { return aligned_take(scratch.storage, at, n); };
  const auto take_state = [&](std::size_t n) {
    State st;
    if (l0.W_s1) st.s1 = take(n);
    if (l0.W_s2) st.s2 = take(n);
    if (l0.W_s3) st.s3 = take(n);
    if (l0.W_ema) st.ema = take(n);
    return st;
  };
  for (Task& T : R.task) {
    T.xb = take(most * D);
    T.yb = take(mh * std::size_t(R.ycols));
    T.H = take(most * hc);
    T.G = take(most * hc);
    T.P = take(most * O);
    T.Ht = take(mh * t);
    T.Gt = take(mh * t);
    T.Pt = take(mh * O);
    T.dW1 = take(D * hc);
    T.db1 = take(hc);
    T.dW2 = take(hc * O);
    T.db2 = take(O);
    T.dW1t = take(D * t);
    T.db1t = take(t);
    T.dW2t = take(t * O);
    T.W1 = take(D * hc);
    T.W1s = take_state(D * hc);
  }
  R.Z = take(most * O);
  R.dZ = take(most * O);
  R.db2 = take(O);
  R.W1t = take(D * t);
  R.W1ts = take_state(D * t);
  R.gW1t = take(D * t);
  R.gb1t = take(t);
  R.gW2t = take(t * O);

  // the first layer's columns of each task and of the tail, with their optimizer state,
  // packed for the run and written back after it (also when it fails)
  const State W1s{l0.W_s1, l0.W_s2, l0.W_s3, l0.W_ema};
  const auto pack = [&](bool back) {
    const auto part = [&](float* W, const State& st, int j0, int w) {
      columns(l0.W, R.H, W, R.D, j0, w, back);
      columns(W1s.s1, R.H, st.s1, R.D, j0, w, back);
      columns(W1s.s2, R.H, st.s2, R.D, j0, w, back);
      columns(W1s.s3, R.H, st.s3, R.D, j0, w, back);
      columns(W1s.ema, R.H, st.ema, R.D, j0, w, back);
    };
    for (int c = 0; c < 2; ++c) part(R.task[c].W1, R.task[c].W1s, c * R.hc, R.hc);
    if (R.t > 0) part(R.W1t, R.W1ts, 2 * R.hc, R.t);
  };
  pack(false);
  scratch.last_split = "columns";
  ReplicaSchedule S;
  S.stages = 3;
  S.step0 = step0;
  S.step1 = step1;
  S.ctx = &R;
  S.task = &task;
  S.step_done = &step_done;
  try {
    *steps_done = run_timed(S, scratch);
  } catch (...) {
    pack(true);
    throw;
  }
  pack(true);
  return iterations + *steps_done;
}

}  // namespace cpu
}  // namespace fusednn
