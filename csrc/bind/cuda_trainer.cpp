// fusednn._cuda.MlpTrainer: the fused training loop (fusednn/trainer.h) for
// all-Dense models on the GPU, the twin of _cpu.MlpTrainer. Every buffer is a
// device array (CuPy, or anything with __cuda_array_interface__) owned by the
// Python model; the trainer checks them once at construction, keeps them
// alive, and queues whole ranges of steps on the caller's stream without the
// GIL and without waiting for the GPU.
//
// The sample order is an int64 device array that is not range-checked here:
// that would cost a device-to-host copy and a wait per call. Instead the
// gather kernel never reads outside x and y: a row whose index is out of range
// becomes NaN, so a bad order shows up as NaN step losses (and the Python
// backend checks an order it is given on the host before copying it over).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda_checks.h"
#include "fusednn/cuda.h"
#include "fusednn/cuda_persistent.h"
#include "trainer_spec.h"
#include "metric_specs.h"
#include "trainer_hook.h"

namespace py = pybind11;
using namespace fusednn;
using namespace fusednn::cuda_bind;
using fusednn::bind::ShardSteps;
using fusednn::bind::StepHook;

namespace {

class MlpTrainer {
 public:
  MlpTrainer(const py::list& layers, const py::dict& optimizer, const std::string& loss, int batch, bool tf32,
             const py::object& loss_param, const std::string& mode)
      : batch_(batch), tf32_(tf32), loss_param_(bind_common::to_loss_params(loss_param)), loss_(bind_common::to_loss_kind(loss)), opt_(bind_common::to_optimizer(optimizer)) {
    if (batch < 1) throw py::value_error("batch must be >= 1, got " + std::to_string(batch));
    mode_ = to_mode(mode);
    check_launch(cu::current_device(&device_), "current_device");
    layers_ = bind_common::to_layers(
        layers, opt_, batch,
        [&](const py::handle& h, const std::string& name) {
          const DevArray W = keep(h, name);
          check_ndim(W, name.c_str(), 2);
          return std::make_tuple(fptr(W), W.dim(0), W.dim(1));
        },
        [&](const py::handle& h, const std::string& name, std::vector<py::ssize_t> shape) {
          return fptr(keep_shaped(h, name, std::move(shape)));
        },
        /*allow_constraints=*/true, /*allow_prelu=*/true, /*allow_layernorm=*/true);
    // layer steps (Dropout/BatchNormalization/Activation, PReLU, LayerNormalization, act_param, Softmax,
    // Gaussian noise), graph blocks and weight constraints on the GPU are opt-in until they have run on a
    // device: fusednn.backends.cuda passes them only with FUSEDNN_CUDA_TRAINER_STEPS=1
    if (mode_ != Mode::ops) {  // the opt-in paths refuse what they cannot do exactly
      const std::string why = fast_path_why_not();
      if (!why.empty()) throw py::value_error("MlpTrainer(mode='" + mode + "'): " + why);
    }
    if (mode_ == Mode::persistent) {  // refuse up front rather than at the first run
      const std::string why =
          persistent::why_not(cu::persistent_plan_for(layers_, opt_, loss_, batch_), cu::persistent_smem_limit());
      if (!why.empty()) throw py::value_error("MlpTrainer(mode='persistent'): " + why);
      for (const DenseBuffers& l : layers_)
        if (l.W_l1 != 0.f || l.W_l2 != 0.f || l.b_l1 != 0.f || l.b_l2 != 0.f)
          throw py::value_error("MlpTrainer(mode='persistent'): the persistent kernel has no weight regularizers");
    }
    if (mode_ == Mode::graph) graphs_ = std::make_unique<cu::StepGraphs>();
  }

  // Queue steps [step0, step1) of the epoch whose sample order is `order` on
  // `stream`. Returns (iterations after the last step, number of steps run);
  // the step losses land in step_losses on the device. stop_on_nonfinite has
  // no effect: the GPU never reads a loss back per step (see cuda::train_steps).
  py::tuple run(const py::object& x_, const py::object& y_, const py::object& order_, const py::object& xb_,
                const py::object& yb_, const py::object& losses_, std::int64_t step0, std::int64_t step1,
                std::int64_t iterations, bool stop_on_nonfinite, const py::object& metrics,
                std::uintptr_t stream, const py::object& ws_, const py::object& weights,
                const py::object& step_params_, const py::object& step_starts_, const py::object& between_,
                const py::object& scalars_) {
    int cur = -1;
    check_launch(cu::current_device(&cur), "current_device");
    if (cur != device_)
      throw py::value_error("the trainer's buffers are on device " + std::to_string(device_) +
                            " but the current device is " + std::to_string(cur));
    const DevArray x = as_dev(x_, "x"), y = as_dev(y_, "y");
    check_ndim(x, "x", 2);
    check_ndim(y, "y", 2);
    const std::int64_t n = x.dim(0);
    const int d_in = layers_.front().in;
    if (x.dim(1) != d_in)
      throw py::value_error("x has shape " + shape_of(x) + " but the first layer takes " + std::to_string(d_in) +
                            " inputs");
    const int y_cols = loss_ == LossKind::xent_sparse ? 1 : layers_.back().out;
    if (y.dim(0) != n || y.dim(1) != y_cols)
      throw py::value_error("y has shape " + shape_of(y) + ", expected (" + std::to_string(n) + ", " +
                            std::to_string(y_cols) + ")");
    const ShardSteps shard(step_starts_, batch_);  // data parallelism: this rank's rows of each step (host)
    const std::int64_t n_order = shard.starts ? shard.rows() : n;
    const DevArray order = as_dev(order_, "order", false, "<i8");
    if (order.ndim() != 1 || order.dim(0) != n_order)
      throw py::value_error("order must be 1-D of length " + std::to_string(n_order) + ", got shape " +
                            shape_of(order));
    const std::int64_t steps = shard.starts ? shard.steps() : (n + batch_ - 1) / batch_;
    if (step0 < 0 || step1 > steps || step0 > step1)
      throw py::value_error("steps [" + std::to_string(step0) + ", " + std::to_string(step1) +
                            ") are outside the epoch's " + std::to_string(steps) + " steps");
    if (iterations < 0) throw py::value_error("iterations must be >= 0");
    const auto [xb_obj, xb] = batch_buffer(xb_, "x_batch", d_in);
    const auto [yb_obj, yb] = batch_buffer(yb_, "y_batch", y_cols);
    const DevArray losses = as_dev(losses_, "step_losses", true);
    if (losses.ndim() != 1 || losses.dim(0) < steps)
      throw py::value_error("step_losses must be 1-D with at least " + std::to_string(steps) + " entries");
    if (ws_.is_none())
      throw py::value_error("MlpTrainer.run: workspace is required: a float64 device array of at least " +
                            std::to_string(workspace_len()) + " elements");
    const DevArray ws = as_dev(ws_, "workspace", true, "<f8");
    if (ws.size < workspace_len())
      throw py::value_error("workspace has " + std::to_string(ws.size) + " elements, needs " +
                            std::to_string(workspace_len()));
    // the step parameters stay on the host: the loop passes each step's row by value
    if (step_params_.is_none() || !py::isinstance<py::array>(step_params_))
      throw py::value_error("step_params is required: a float32 NumPy (step1 - step0, " +
                            std::to_string(kOptParams) + ") array from Optimizer.step_params");
    const py::array params = py::reinterpret_borrow<py::array>(step_params_);
    if (!params.dtype().is(py::dtype::of<float>()) || !(params.flags() & py::array::c_style) ||
        params.ndim() != 2 || params.shape(0) != step1 - step0 || params.shape(1) != kOptParams)
      throw py::value_error("step_params must be a C-contiguous float32 array of shape (" +
                            std::to_string(step1 - step0) + ", " + std::to_string(kOptParams) + ")");
    OptimizerConfig opt = opt_;
    opt.step_params = static_cast<const float*>(params.data());

    TrainData data;
    data.x = fptr(x);
    data.y = fptr(y);
    data.order = static_cast<const std::int64_t*>(order.ptr);
    data.n = n;
    data.x_batch = fptr(xb);
    data.y_batch = fptr(yb);
    data.step_losses = fptr(losses);
    data.y_cols = y_cols;
    data.loss_param = loss_param_;
    std::vector<std::pair<DevArray, const char*>> written = {
        {xb, "x_batch"}, {yb, "y_batch"}, {losses, "step_losses"}, {ws, "workspace"}};
    py::object counts_obj, sums_obj;  // hold the accumulators for the call
    std::vector<py::object> metric_objs;
    std::vector<MetricSpec> metric_specs;
    if (!metrics.is_none()) {  // {"counts": (c, c) float64 or None, "classes", "sparse", "threshold", "sums"}
      const py::dict m = metrics.cast<py::dict>();
      if (!m["counts"].is_none()) {
        counts_obj = m["counts"];
        const DevArray counts = as_dev(counts_obj, "counts", true, "<f8");
        data.classes = m["classes"].cast<int>();
        if (data.classes < 2 || counts.size != std::size_t(data.classes) * std::size_t(data.classes))
          throw py::value_error("counts must hold classes x classes entries (classes >= 2)");
        const int out = layers_.back().out;
        if (out != 1 && out != data.classes)
          throw py::value_error("a model with " + std::to_string(out) + " outputs cannot count " +
                                std::to_string(data.classes) + " classes");
        data.counts = static_cast<double*>(counts.ptr);
        data.sparse_labels = m["sparse"].cast<bool>();
        data.threshold = m["threshold"].cast<float>();
        written.emplace_back(counts, "counts");
      }
      if (!m["sums"].is_none()) {
        sums_obj = m["sums"];
        const DevArray sums = as_dev(sums_obj, "sums", true, "<f8");
        if (sums.size != 2) throw py::value_error("sums must hold 2 entries");
        data.err_sums = static_cast<double*>(sums.ptr);
        written.emplace_back(sums, "sums");
      }
      if (m.contains("extra")) {  // Keras metric objects (metric_specs.h): device accumulators and thresholds
        const auto f64 = [&](const py::handle& h, const std::string& name, bool writeable) {
          metric_objs.push_back(py::reinterpret_borrow<py::object>(h));
          const DevArray a = as_dev(metric_objs.back(), name.c_str(), writeable, "<f8");
          if (writeable) written.emplace_back(a, "a metric accumulator");
          return std::make_pair(static_cast<double*>(a.ptr), a.size);
        };
        const auto host = [](const std::pair<double*, std::size_t>& a) {
          std::vector<double> h(a.second);
          const cudaError_t e = cudaMemcpy(h.data(), a.first, a.second * sizeof(double), cudaMemcpyDeviceToHost);
          if (e != cudaSuccess) throw std::runtime_error(std::string("reading the AUC thresholds: ") + cudaGetErrorString(e));
          return h;
        };
        metric_specs = bind_common::to_metric_specs(m["extra"], layers_.back().out, y_cols, f64, host);
        data.metric_specs = metric_specs.data();
        data.n_metric_specs = int(metric_specs.size());
      }
    }
    py::object row_scale_obj;
    std::vector<float> penalty_scale;  // host copy: read by the host loop, one entry per step
    std::vector<DevArray> weight_read;
    if (!weights.is_none()) {  // {"row_scale": (n,) float32 device array, "penalty_scale": host float32 or None}
      const py::dict w = weights.cast<py::dict>();
      if (w.contains("row_scale") && !w["row_scale"].is_none()) {
        row_scale_obj = w["row_scale"];
        const DevArray rs = as_dev(row_scale_obj, "row_scale");
        if (rs.ndim() != 1 || rs.dim(0) != n_order)
          throw py::value_error("row_scale must be a 1-D device array of " + std::to_string(n_order) +
                                " entries, got shape " + shape_of(rs));
        data.row_scale = fptr(rs);
        weight_read.push_back(rs);
      }
      if (w.contains("penalty_scale") && !w["penalty_scale"].is_none()) {
        penalty_scale = w["penalty_scale"].cast<std::vector<float>>();
        if (std::int64_t(penalty_scale.size()) < steps)
          throw py::value_error("penalty_scale must be a 1-D host array of at least " + std::to_string(steps) +
                                " entries");
        data.penalty_scale = penalty_scale.data();
      }
    }
    for (const DevArray& r : weight_read)
      for (std::size_t i = 0; i < written.size(); ++i) check_no_overlap(written[i].first, written[i].second, r, "row_scale");
    // Nothing the steps write may share memory with anything else they use.
    const std::pair<DevArray, const char*> read[] = {{x, "x"}, {y, "y"}, {order, "order"}};
    for (std::size_t i = 0; i < written.size(); ++i) {
      const auto& [w, wn] = written[i];
      for (std::size_t j = i + 1; j < written.size(); ++j) check_no_overlap(w, wn, written[j].first, written[j].second);
      for (const auto& [r, rn] : read) check_no_overlap(w, wn, r, rn);
      for (const DevArray& k : kept_) check_no_overlap(w, wn, k, "a layer buffer");
    }
    for (const auto& [r, rn] : read)
      for (const DevArray& k : kept_) check_no_overlap(k, "a layer buffer", r, rn);

    data.step_starts = shard.starts;
    StepHook hook(between_);  // e.g. an NCCL allreduce queued on the same stream
    hook.attach(data);
    // The opt-in paths run only what they do exactly (see fast_path_why_not); anything
    // else, and a data-parallel or hooked run, goes to the per-op kernels.
    const std::int64_t count = step1 > step0 ? step1 - step0 : 0;
    Mode mode = mode_;
    if (mode != Mode::ops && (shard.starts || !between_.is_none())) mode = Mode::ops;
    // The persistent kernel has no sample weights.
    if (mode == Mode::persistent && (data.row_scale || data.penalty_scale)) mode = Mode::ops;
    // Nor have the graph and persistent paths the metric objects or the LossFn losses' weights.
    if (data.n_metric_specs || (data.row_scale && int(loss_) >= int(LossKind::loss_fn_base))) mode = Mode::ops;

    float* scalars = nullptr;  // the opt-in modes' device copy of the run's step_params rows
    if (mode != Mode::ops) {
      const std::size_t need = std::size_t(count) * kOptParams;
      if (scalars_.is_none())
        throw py::value_error("MlpTrainer.run: modes 'graph' and 'persistent' need `scalars`, a float32 device array of at least " +
                              std::to_string(need) + " elements");
      const DevArray sc = as_dev(scalars_, "scalars", true);
      if (sc.size < need)
        throw py::value_error("scalars has " + std::to_string(sc.size) + " elements, needs " + std::to_string(need));
      for (const auto& [w, wn] : written) check_no_overlap(sc, "scalars", w, wn);
      for (const auto& [r, rn] : read) check_no_overlap(sc, "scalars", r, rn);
      for (const DevArray& k : kept_) check_no_overlap(sc, "scalars", k, "a layer buffer");
      scalars = fptr(sc);
    }

    std::int64_t done = 0, it = 0;
    {
      py::gil_scoped_release nogil;
      if (mode == Mode::persistent)
        it = cu::train_persistent(layers_, opt, loss_, data, batch_, step0, step1, iterations, &done,
                                  as_stream(stream), scalars);
      else if (mode == Mode::graph)
        it = graphs_->run(layers_, opt, loss_, data, batch_, step0, step1, iterations, &done, as_stream(stream),
                          tf32_, static_cast<double*>(ws.ptr), scalars);
      else
        it = cu::train_steps(layers_, opt, loss_, data, batch_, step0, step1, iterations, stop_on_nonfinite,
                             &done, as_stream(stream), tf32_, static_cast<double*>(ws.ptr));
    }
    hook.rethrow();
    return py::make_tuple(it, done);
  }

  bool tf32() const { return tf32_; }
  void set_tf32(bool on) { tf32_ = on; }
  // the loss's scratch, then one double for the gradient-clipping norm
  static std::size_t workspace_len() {
    return std::max({cu::mse_workspace_len(), cu::xent_workspace_len(), cu::loss_grad_workspace_len()}) + 1;
  }
  std::string mode() const { return mode_ == Mode::persistent ? "persistent" : mode_ == Mode::graph ? "graph" : "ops"; }
  py::dict graph_stats() const {
    py::dict d;
    d["captures"] = graphs_ ? graphs_->captures() : 0;
    d["replays"] = graphs_ ? graphs_->replays() : 0;
    d["cached"] = graphs_ ? graphs_->cached() : 0;
    d["direct"] = graphs_ ? graphs_->direct() : 0;
    return d;
  }

 private:
  DevArray keep(const py::handle& h, const std::string& name) {
    const py::object obj = py::reinterpret_borrow<py::object>(h);
    DevArray a = as_dev(obj, name.c_str(), true);
    for (const DevArray& k : kept_)
      if (overlaps(a, k)) throw py::value_error(name + " shares memory with another trainer buffer");
    kept_.push_back(a);
    kept_objects_.push_back(obj);
    return a;
  }
  DevArray keep_shaped(const py::handle& h, const std::string& name, std::vector<py::ssize_t> shape) {
    DevArray a = keep(h, name);
    if (a.shape != shape) throw py::value_error(name + " has shape " + shape_of(a) + ", which does not fit the layer");
    return a;
  }
  // The caller's (batch, cols) float32 buffer, checked, or a new CuPy array.
  std::pair<py::object, DevArray> batch_buffer(const py::object& b, const char* name, int cols) const {
    if (b.is_none()) return out_or_new(b, {batch_, cols});
    DevArray a = as_dev(b, name, true);
    if (a.shape != std::vector<py::ssize_t>{batch_, cols})
      throw py::value_error(std::string(name) + " has shape " + shape_of(a) + ", expected (" +
                            std::to_string(batch_) + ", " + std::to_string(cols) + ")");
    return {b, a};
  }

  enum class Mode { ops, graph, persistent };
  static Mode to_mode(const std::string& m) {
    if (m == "ops") return Mode::ops;
    if (m == "graph") return Mode::graph;
    if (m == "persistent") return Mode::persistent;
    throw py::value_error("MlpTrainer: unknown mode '" + m + "' (ops, graph, persistent)");
  }
  // What the graph and persistent paths do exactly: SGD (momentum, Nesterov) or
  // plain Adam, no clipping, weight decay or EMA; mse or a cross-entropy on
  // logits; linear, relu, sigmoid or tanh layers. '' when the model is one of those.
  std::string fast_path_why_not() const {
    const int f = opt_.flags;
    if (opt_.kind == OptKind::sgd ? (f & ~(optf::momentum | optf::nesterov)) != 0
                                  : (opt_.kind != OptKind::adam || f != 0))
      return "only SGD (momentum, nesterov) and Adam without clipping, weight decay, amsgrad or EMA";
    if (int(loss_) >= int(LossKind::loss_fn_base)) return "only mse and the cross-entropies";
    for (const DenseBuffers& l : layers_) {
      if (int(l.act) > int(Act::tanh)) return "only the activations linear, relu, sigmoid and tanh";
      if (!l.post.empty()) return "only Dense layers (no Dropout, BatchNormalization or activation steps)";
      // a captured graph would replay the merges' copies fine, but nothing has checked that on a device
      if (!l.src.empty()) return "only Sequential chains (no layer graphs with merges)";
      if (l.W_con.kind != ConstraintKind::none || l.b_con.kind != ConstraintKind::none)
        return "no weight constraints";
    }
    return "";
  }

  int batch_;
  bool tf32_;
  LossParams loss_param_;
  Mode mode_ = Mode::ops;
  std::unique_ptr<cu::StepGraphs> graphs_;
  int device_ = -1;
  LossKind loss_;
  OptimizerConfig opt_;
  std::vector<DenseBuffers> layers_;
  std::vector<DevArray> kept_;
  std::vector<py::object> kept_objects_;  // keeps every buffer alive while the trainer exists
};

}  // namespace

void register_trainer(py::module_& m) {
  py::class_<MlpTrainer>(m, "MlpTrainer",
                         "Fused training loop for all-Dense models over caller-owned device buffers.")
      .def(py::init<const py::list&, const py::dict&, const std::string&, int, bool, const py::object&,
                    const std::string&>(),
           py::arg("layers"), py::arg("optimizer"), py::arg("loss"), py::arg("batch"), py::arg("tf32") = false,
           py::arg("loss_param") = 0.0f, py::arg("mode") = "ops",
           "mode: 'ops' (one kernel per operation, the default), 'graph' (step ranges captured in CUDA "
           "graphs and replayed) or 'persistent' (one block runs the steps in shared memory; ValueError "
           "when the model does not fit, see persistent_plan). Both opt-in paths run only SGD/Adam "
           "without clipping, weight decay or EMA, mse and the cross-entropies and the activations "
           "linear/relu/sigmoid/tanh; other runs take the per-op kernels.")
      .def("run", &MlpTrainer::run, py::arg("x"), py::arg("y"), py::arg("order"), py::arg("x_batch"),
           py::arg("y_batch"), py::arg("step_losses"), py::arg("step0"), py::arg("step1"),
           py::arg("iterations"), py::arg("stop_on_nonfinite") = false, py::arg("metrics") = py::none(),
           py::arg("stream") = 0, py::arg("workspace") = py::none(), py::arg("weights") = py::none(),
           py::arg("step_params") = py::none(), py::arg("step_starts") = py::none(), py::arg("between") = py::none(),
           py::arg("scalars") = py::none(),
           "Queue steps [step0, step1) on `stream`; returns (iterations, steps run) without waiting "
           "for the GPU. `workspace` (required) is a float64 device array of workspace_len() elements.")
      .def_property("tf32", &MlpTrainer::tf32, &MlpTrainer::set_tf32)
      .def_property_readonly("mode", &MlpTrainer::mode)
      .def("graph_stats", &MlpTrainer::graph_stats, "Graph mode: {'captures', 'replays', 'direct', 'cached'} so far.")
      .def_static("workspace_len", &MlpTrainer::workspace_len,
                  "Length (float64 elements) of the device workspace run needs.");
}
