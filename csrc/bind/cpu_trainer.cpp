// fusednn._cpu.MlpTrainer: the fused training loop (fusednn/trainer.h) for
// all-Dense models on the CPU. Every buffer is a NumPy array owned by the
// Python model; the trainer checks them once at construction, keeps them
// alive, and runs whole ranges of steps without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "checks.h"
#include "fusednn/cpu.h"
#include "fusednn/cpu_replicas.h"
#include "trainer_spec.h"
#include "metric_specs.h"
#include "trainer_hook.h"

namespace py = pybind11;
using namespace fusednn;
using namespace fusednn::bind;

namespace {

// scikit-learn's no-improvement rule, applied natively so that a run may span many of its
// small epochs (fusednn.sklearn): after each epoch of `steps` steps, its loss (the steps'
// losses times their row counts `sizes`, summed in step order, over `rows`; into `losses`)
// divided by `ratio` counts as no improvement when it is above best - tol, and the run stops
// after the epoch where that count exceeds `patience` (the caller then stops or lowers its
// learning rate, as it would after one epoch at a time). The products are exact (float32
// losses times integer counts), so the caller's own sum in step order gives the same bits.
class PlateauStop {
 public:
  PlateauStop(const py::object& spec, const float* step_losses, std::int64_t step0, std::int64_t step1)
      : step_losses_(step_losses), step0_(step0) {
    if (spec.is_none()) return;
    const py::dict d = spec.cast<py::dict>();
    for (const char* key : {"steps", "sizes", "rows", "ratio", "tol", "patience", "best", "count", "losses"})
      if (!d.contains(key)) throw py::value_error(std::string("epoch_stop needs '") + key + "'");
    steps_ = d["steps"].cast<std::int64_t>();
    if (steps_ < 1 || (step1 - step0) % steps_ != 0)
      throw py::value_error("epoch_stop: the run's steps must be whole epochs of epoch_stop['steps'] steps");
    sizes_ = as_f64_in(d["sizes"], "epoch_stop['sizes']");
    losses_ = as_f64_out(d["losses"], "epoch_stop['losses']");
    if (sizes_.size() != steps_ || losses_.size() < (step1 - step0) / steps_)
      throw py::value_error("epoch_stop: sizes must hold one row count a step, losses one entry an epoch");
    rows_ = d["rows"].cast<double>();
    ratio_ = d["ratio"].cast<double>();
    tol_ = d["tol"].cast<double>();
    patience_ = d["patience"].cast<double>();
    best_ = d["best"].cast<double>();
    count_ = d["count"].cast<std::int64_t>();
    on_ = true;
  }
  void attach(TrainData& data) {
    if (!on_) return;
    data.after = &PlateauStop::call;
    data.after_ctx = this;
  }

 private:
  static bool call(void* ctx, std::int64_t s) {
    auto* self = static_cast<PlateauStop*>(ctx);
    const std::int64_t k = s - self->step0_ + 1;  // steps done in this run
    if (k % self->steps_ != 0) return true;
    const double* sizes = static_cast<const double*>(self->sizes_.data());
    const float* l = self->step_losses_ + (s + 1 - self->steps_);
    double sum = 0.0;
    for (std::int64_t j = 0; j < self->steps_; ++j) sum += double(l[j]) * sizes[j];
    const double loss = sum / self->rows_;
    static_cast<double*>(self->losses_.mutable_data())[k / self->steps_ - 1] = loss;
    const double v = loss / self->ratio_;
    self->count_ = v > self->best_ - self->tol_ ? self->count_ + 1 : 0;
    if (v < self->best_) self->best_ = v;
    return !(double(self->count_) > self->patience_);
  }
  const float* step_losses_;
  std::int64_t step0_;
  bool on_ = false;
  std::int64_t steps_ = 1, count_ = 0;
  py::array sizes_, losses_;
  double rows_ = 1.0, ratio_ = 1.0, tol_ = 0.0, patience_ = 0.0, best_ = 0.0;
};

class MlpTrainer {
 public:
  MlpTrainer(const py::list& layers, const py::dict& optimizer, const std::string& loss, int batch,
             const py::object& loss_param, const py::object& heads)
      : batch_(batch), loss_param_(bind_common::to_loss_params(loss_param)), loss_(bind_common::to_loss_kind(loss)),
        opt_(bind_common::to_optimizer(optimizer)) {
    if (batch < 1) throw py::value_error("batch must be >= 1, got " + std::to_string(batch));
    layers_ = bind_common::to_layers(
        layers, opt_, batch,
        [&](const py::handle& h, const std::string& name) {
          py::array W = keep(h, name, true);
          check_ndim(W, name.c_str(), 2);
          return std::make_tuple(fptr(W), W.shape(0), W.shape(1));
        },
        [&](const py::handle& h, const std::string& name, std::vector<py::ssize_t> shape) {
          return fptr(keep_shaped(h, name, std::move(shape)));
        },
        /*allow_constraints=*/true, /*allow_prelu=*/true, /*allow_layernorm=*/true, &x_cols_,
        /*allow_step_extras=*/true);
    if (!heads.is_none()) set_heads(heads.cast<py::list>());
  }

  // Run steps [step0, step1) of the epoch whose sample order is `order`.
  // Returns (iterations after the last step run, number of steps run).
  py::tuple run(const py::object& x_, const py::object& y_, const py::object& order_, const py::object& xb_,
                const py::object& yb_, const py::object& losses_, std::int64_t step0, std::int64_t step1,
                std::int64_t iterations, bool stop_on_nonfinite, const py::object& metrics,
                const py::object& weights, const py::object& step_params_, const py::object& step_starts_,
                const py::object& between_, int replicas, const py::object& head_losses_,
                const py::object& head_metrics, const py::object& epoch_stop) {
    if (replicas != 1 && replicas != 2) throw py::value_error("replicas must be 1 or 2, got " + std::to_string(replicas));
    py::array x = as_f32(x_, "x"), y = as_f32(y_, "y");
    check_ndim(x, "x", 2);
    check_ndim(y, "y", 2);
    const std::int64_t n = x.shape(0);
    if (x.shape(1) != x_cols_)
      throw py::value_error("x has shape " + shape_of(x) + " but the model takes " + std::to_string(x_cols_) +
                            " input columns");
    const int y_cols = has_heads() ? heads_cols_ : loss_ == LossKind::xent_sparse ? 1 : layers_.back().out;
    if (y.shape(0) != n || y.shape(1) != y_cols)
      throw py::value_error("y has shape " + shape_of(y) + ", expected (" + std::to_string(n) + ", " +
                            std::to_string(y_cols) + ")");
    const py::array order = as_array<std::int64_t>(order_, "order");
    const ShardSteps shard(step_starts_, batch_);  // data parallelism: this rank's rows of each step
    const std::int64_t n_order = shard.starts ? shard.rows() : n;
    if (order.ndim() != 1 || order.shape(0) != n_order)
      throw py::value_error("order must be 1-D of length " + std::to_string(n_order) + ", got shape " +
                            shape_of(order));
    const std::int64_t* idx = static_cast<const std::int64_t*>(order.data());
    for (std::int64_t i = 0; i < n_order; ++i)  // never gather outside x and y
      if (idx[i] < 0 || idx[i] >= n)
        throw py::value_error("order[" + std::to_string(i) + "] = " + std::to_string(idx[i]) +
                              " is outside [0, " + std::to_string(n) + ")");
    const std::int64_t steps = shard.starts ? shard.steps() : (n + batch_ - 1) / batch_;
    if (step0 < 0 || step1 > steps || step0 > step1)
      throw py::value_error("steps [" + std::to_string(step0) + ", " + std::to_string(step1) +
                            ") are outside the epoch's " + std::to_string(steps) + " steps");
    py::array xb = out_or_new(xb_, {batch_, x_cols_});
    py::array yb = out_or_new(yb_, {batch_, y_cols});
    py::array losses = as_f32(losses_, "step_losses", true);
    if (losses.ndim() != 1 || losses.shape(0) < steps)
      throw py::value_error("step_losses must be 1-D with at least " + std::to_string(steps) + " entries");
    if (iterations < 0) throw py::value_error("iterations must be >= 0");
    if (step_params_.is_none())
      throw py::value_error("step_params is required: a float32 (step1 - step0, " + std::to_string(kOptParams) +
                            ") array from Optimizer.step_params");
    py::array params = as_f32(step_params_, "step_params");
    if (params.ndim() != 2 || params.shape(0) != step1 - step0 || params.shape(1) != kOptParams)
      throw py::value_error("step_params has shape " + shape_of(params) + ", expected (" +
                            std::to_string(step1 - step0) + ", " + std::to_string(kOptParams) + ")");
    OptimizerConfig opt = opt_;
    opt.step_params = cfptr(params);

    TrainData data;
    data.x = cfptr(x);
    data.x_cols = x_cols_;
    data.y = cfptr(y);
    data.order = idx;
    data.n = n;
    data.x_batch = fptr(xb);
    data.y_batch = fptr(yb);
    data.step_losses = fptr(losses);
    data.y_cols = y_cols;
    data.loss_param = loss_param_;
    py::array head_losses;
    std::vector<py::array> kept_head_arrays;  // the heads' metric accumulators, alive for the run
    const auto head_f64 = [&](const py::handle& h, const std::string& name, bool writeable) {
      kept_head_arrays.push_back(writeable ? as_f64_out(py::reinterpret_borrow<py::object>(h), name.c_str())
                                           : as_f64_in(py::reinterpret_borrow<py::object>(h), name.c_str()));
      const py::array& a = kept_head_arrays.back();
      return std::make_pair(static_cast<double*>(const_cast<void*>(a.data())), std::size_t(a.size()));
    };
    const auto head_host = [](const std::pair<double*, std::size_t>& a) {
      return std::vector<double>(a.first, a.first + a.second);
    };
    if (has_heads()) {  // several outputs (fusednn/heads.h)
      if (!metrics.is_none())
        throw py::value_error("a trainer with heads takes its metrics per head (head_metrics), not metrics");
      heads_.losses = nullptr;
      if (!head_losses_.is_none()) {
        head_losses = as_f32(head_losses_, "head_losses", true);
        if (head_losses.ndim() != 2 || head_losses.shape(0) < steps ||
            head_losses.shape(1) != py::ssize_t(heads_.list.size()))
          throw py::value_error("head_losses must have shape (>= " + std::to_string(steps) + ", " +
                                std::to_string(heads_.list.size()) + "), got " + shape_of(head_losses));
        heads_.losses = fptr(head_losses);
      }
      data.heads = &heads_;
      py::list per_head;
      if (!head_metrics.is_none()) {
        per_head = head_metrics.cast<py::list>();
        if (per_head.size() != heads_.list.size())
          throw py::value_error("head_metrics must hold one entry (a list of metric specs, or None) per head");
      }
      for (std::size_t h = 0; h < heads_.list.size(); ++h) {  // this run's metrics of each head
        Head& hd = heads_.list[h];
        hd.metrics.clear();
        if (head_metrics.is_none() || per_head[h].is_none()) continue;
        const int out = layers_[std::size_t(hd.block)].out;
        hd.metrics = bind_common::to_metric_specs(py::reinterpret_borrow<py::object>(per_head[h]), out, hd.y_cols,
                                                  head_f64, head_host);
      }
    } else if (!head_losses_.is_none() || !head_metrics.is_none()) {
      throw py::value_error("head_losses and head_metrics are only for a trainer made with heads");
    }
    py::array counts, sums;
    std::vector<py::array> kept_metric_arrays;
    std::vector<MetricSpec> metric_specs;
    if (!metrics.is_none()) {  // {"counts": (c, c) float64 or None, "classes", "sparse", "threshold", "sums"}
      const py::dict m = metrics.cast<py::dict>();
      if (!m["counts"].is_none()) {
        counts = as_f64_out(m["counts"], "counts");
        data.classes = m["classes"].cast<int>();
        if (data.classes < 2 || counts.size() != py::ssize_t(data.classes) * data.classes)
          throw py::value_error("counts must hold classes x classes entries (classes >= 2)");
        const int out = layers_.back().out;
        if (out != 1 && out != data.classes)
          throw py::value_error("a model with " + std::to_string(out) + " outputs cannot count " +
                                std::to_string(data.classes) + " classes");
        data.counts = static_cast<double*>(counts.mutable_data());
        data.sparse_labels = m["sparse"].cast<bool>();
        data.threshold = m["threshold"].cast<float>();
      }
      if (!m["sums"].is_none()) {
        sums = as_f64_out(m["sums"], "sums");
        if (sums.size() != 2) throw py::value_error("sums must hold 2 entries");
        data.err_sums = static_cast<double*>(sums.mutable_data());
      }
      if (m.contains("extra")) {  // Keras metric objects: [{"kind", "pre", "acc", ...}] (metric_specs.h)
        const auto f64 = [&](const py::handle& h, const std::string& name, bool writeable) {
          kept_metric_arrays.push_back(writeable ? as_f64_out(py::reinterpret_borrow<py::object>(h), name.c_str())
                                                 : as_f64_in(py::reinterpret_borrow<py::object>(h), name.c_str()));
          const py::array& a = kept_metric_arrays.back();
          return std::make_pair(static_cast<double*>(const_cast<void*>(a.data())), std::size_t(a.size()));
        };
        const auto host = [](const std::pair<double*, std::size_t>& a) {
          return std::vector<double>(a.first, a.first + a.second);
        };
        metric_specs = bind_common::to_metric_specs(m["extra"], layers_.back().out, y_cols, f64, host);
        data.metric_specs = metric_specs.data();
        data.n_metric_specs = int(metric_specs.size());
      }
    }
    py::array row_scale, penalty_scale;
    if (!weights.is_none()) {  // {"row_scale": (n,) float32 or None, "penalty_scale": (>= steps,) float32 or None}
      const py::dict w = weights.cast<py::dict>();
      if (w.contains("row_scale") && !w["row_scale"].is_none()) {
        row_scale = as_f32(w["row_scale"], "row_scale");
        if (row_scale.ndim() != 1 || row_scale.shape(0) != n_order)
          throw py::value_error("row_scale must be 1-D with " + std::to_string(n_order) + " entries, got shape " +
                                shape_of(row_scale));
        data.row_scale = cfptr(row_scale);
      }
      if (w.contains("penalty_scale") && !w["penalty_scale"].is_none()) {
        penalty_scale = as_f32(w["penalty_scale"], "penalty_scale");
        if (penalty_scale.ndim() != 1 || penalty_scale.shape(0) < steps)
          throw py::value_error("penalty_scale must be 1-D with at least " + std::to_string(steps) + " entries");
        data.penalty_scale = cfptr(penalty_scale);
      }
    }
    data.step_starts = shard.starts;
    StepHook hook(between_);
    hook.attach(data);
    PlateauStop plateau(epoch_stop, data.step_losses, step0, step1);
    plateau.attach(data);
    std::int64_t done = 0, it = 0;
    // two replicas where the run allows them (fusednn/cpu_replicas.h), else one
    const bool two = replicas == 2 && !cpu::replicas_ineligible(layers_, opt, loss_, data);
    last_replicas_ = two ? 2 : 1;
    {
      py::gil_scoped_release nogil;
      if (two)
        it = cpu::train_steps_replicated(layers_, opt, loss_, data, batch_, step0, step1, iterations,
                                         stop_on_nonfinite, &done, scratch_);
      else
        it = cpu::train_steps(layers_, opt, loss_, data, batch_, step0, step1, iterations, stop_on_nonfinite,
                              &done);
    }
    hook.rethrow();
    return py::make_tuple(it, done);
  }

  int last_replicas() const { return last_replicas_; }
  // how the latest replicated run split its steps: "rows" or "columns" (None before one)
  py::object last_split() const {
    return scratch_.last_split ? py::object(py::str(scratch_.last_split)) : py::object(py::none());
  }
  // whether the latest replicated run asked a pool worker to help (-1: none yet)
  int last_helper() const { return scratch_.last_helper; }

  // Why run(replicas=2) would run one replica on this trainer (None: it would not),
  // with no metrics, sample weights or data parallelism (those allow replicas too,
  // except metrics and the caller's step_starts/between).
  py::object replicas_ineligible() const {
    const char* why = cpu::replicas_ineligible(layers_, opt_, loss_, TrainData{});
    return why ? py::object(py::str(why)) : py::object(py::none());
  }


 private:
  bool has_heads() const { return !heads_.list.empty(); }

  // heads: [{"block", "loss", "param", "weight", "y_cols", "Y"}] in the packed targets' order
  void set_heads(const py::list& specs) {
    if (specs.size() < 1) throw py::value_error("heads must name at least one head");
    int at = 0;
    for (std::size_t h = 0; h < specs.size(); ++h) {
      const py::dict d = specs[h].cast<py::dict>();
      const std::string where = "head " + std::to_string(h) + ": ";
      Head hd;
      hd.block = d["block"].cast<int>();
      if (hd.block < 0 || hd.block >= int(layers_.size()))
        throw py::value_error(where + "block " + std::to_string(hd.block) + " is not a layer of the trainer");
      const DenseBuffers& l = layers_[std::size_t(hd.block)];
      if (!l.W) throw py::value_error(where + "a head must be a Dense block's output (after its steps)");
      for (const Head& other : heads_.list)
        if (other.block == hd.block) throw py::value_error(where + "two heads on one block");
      const LossKind kind = bind_common::to_loss_kind(d["loss"].cast<std::string>());
      hd.loss = int(kind);
      hd.param = bind_common::to_loss_params(d["param"]);
      hd.weight = d["weight"].cast<float>();
      if (!std::isfinite(hd.weight)) throw py::value_error(where + "the loss weight must be finite");
      hd.y_cols = d["y_cols"].cast<int>();
      if (hd.y_cols != (kind == LossKind::xent_sparse ? 1 : l.out))
        throw py::value_error(where + "y_cols " + std::to_string(hd.y_cols) + " does not fit its loss and " +
                              std::to_string(l.out) + " outputs");
      hd.y_off = at;
      at += hd.y_cols;
      hd.Y = fptr(keep_shaped(d["Y"], where + "Y", {py::ssize_t(batch_), py::ssize_t(hd.y_cols)}));
      heads_.list.push_back(hd);
    }
    heads_cols_ = at;
  }

  py::array keep(const py::handle& h, const std::string& name, bool writeable) {
    py::array a = as_f32(py::reinterpret_borrow<py::object>(h), name.c_str(), writeable);
    for (const py::array& k : kept_)
      if (overlaps(a, k)) throw py::value_error(name + " shares memory with another trainer buffer");
    kept_.push_back(a);
    return a;
  }
  py::array keep_shaped(const py::handle& h, const std::string& name, std::vector<py::ssize_t> shape) {
    py::array a = keep(h, name, true);
    bool same = a.ndim() == py::ssize_t(shape.size());
    for (std::size_t i = 0; same && i < shape.size(); ++i) same = a.shape(i) == shape[i];
    if (!same) throw py::value_error(name + " has shape " + shape_of(a) + ", which does not fit the layer");
    return a;
  }

  int batch_;
  int last_replicas_ = 0;           // replicas of the latest run (0: none yet)
  cpu::ReplicaScratch scratch_;     // the second replica's buffers (replicas=2)
  int x_cols_ = 0;  // the batch's width: layer 0's input, or a graph model's inputs side by side
  LossParams loss_param_;
  LossKind loss_;
  OptimizerConfig opt_;
  std::vector<DenseBuffers> layers_;
  std::vector<py::array> kept_;  // keeps every buffer alive while the trainer exists
  Heads heads_;                  // several outputs (empty: one, the last layer's)
  int heads_cols_ = 0;           // the packed targets' width with heads
};

}  // namespace

void register_trainer(py::module_& m) {
  py::class_<MlpTrainer>(m, "MlpTrainer",
                         "Fused training loop for all-Dense models over caller-owned NumPy buffers.")
      .def(py::init<const py::list&, const py::dict&, const std::string&, int, const py::object&,
                    const py::object&>(),
           py::arg("layers"), py::arg("optimizer"), py::arg("loss"), py::arg("batch"),
           py::arg("loss_param") = 0.0f, py::arg("heads") = py::none())
      .def("run", &MlpTrainer::run, py::arg("x"), py::arg("y"), py::arg("order"), py::arg("x_batch"),
           py::arg("y_batch"), py::arg("step_losses"), py::arg("step0"), py::arg("step1"),
           py::arg("iterations"), py::arg("stop_on_nonfinite") = true, py::arg("metrics") = py::none(),
           py::arg("weights") = py::none(), py::arg("step_params") = py::none(), py::arg("step_starts") = py::none(),
           py::arg("between") = py::none(), py::arg("replicas") = 1, py::arg("head_losses") = py::none(),
           py::arg("head_metrics") = py::none(), py::arg("epoch_stop") = py::none(),
           "Run steps [step0, step1). replicas=2 splits each step in two replicas (its rows, or a "
           "one-hidden-layer model's hidden units), run on two pool threads when one is free "
           "(fusednn/cpu_replicas.h), where the model and run allow it; last_replicas and last_split say "
           "what the run used. epoch_stop: {'steps', 'sizes', 'rows', 'ratio', 'tol', 'patience', 'best', "
           "'count', 'losses'}: scikit-learn's no-improvement rule after each epoch of 'steps' steps (the run "
           "ends after the epoch where the count exceeds 'patience'; each epoch's loss into 'losses').")
      .def_property_readonly("last_replicas", &MlpTrainer::last_replicas,
                             "Replicas the latest run used (1 or 2; 0 before the first run).")
      .def_property_readonly("last_split", &MlpTrainer::last_split,
                             "How the latest run with replicas split its steps: 'rows' (data parallel) or "
                             "'columns' (the hidden units, one-hidden-layer models); None before one.")
      .def_property_readonly("last_helper", &MlpTrainer::last_helper,
                             "Whether the latest run with replicas asked a pool worker to help (1) or "
                             "ran both on the calling thread (0), as timing chose; -1 before one.")
      .def("replicas_ineligible", &MlpTrainer::replicas_ineligible,
           "Why this trainer's model cannot run replicas (None: it can).");
}
