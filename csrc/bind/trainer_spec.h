// What _cpu.MlpTrainer and _cuda.MlpTrainer read from Python, shared by both
// bindings: the loss and optimizer settings and the per-layer buffers. The
// array checks differ by device, so each binding passes its own `matrix`
// (any 2-D float32 buffer: its pointer and shape) and `shaped` (a float32
// buffer that must have the given shape: its pointer) callbacks, which also
// keep the arrays alive and reject buffers that overlap.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "fusednn/activation.h"
#include "fusednn/trainer.h"

namespace fusednn {
namespace bind_common {

namespace py = pybind11;

inline Act to_act(int a) {
  if (!fusednn::act_is_valid(a))
    throw py::value_error("unknown activation code " + std::to_string(a) +
                          " (0..16, see fusednn::Act)");
  return static_cast<Act>(a);
}

inline int to_int_dim(py::ssize_t d, const char* what) {
  if (d > py::ssize_t(INT32_MAX))
    throw py::value_error(std::string(what) + " is too large for the kernel (> 2^31 - 1)");
  return int(d);
}

// fusednn::LossFn by name, in code order (the table Python's LOSS_FNS is held to).
constexpr int kLossFnCount = 13;
inline const char* const kLossFnNames[kLossFnCount] = {"mae", "mape", "msle", "huber", "log_cosh", "hinge",
                                                       "squared_hinge", "categorical_hinge", "kl_divergence",
                                                       "poisson", "cosine_similarity", "binary_focal_crossentropy",
                                                       "categorical_focal_crossentropy"};

// A LossFn loss's constants from Python: a number (Huber's delta) or a sequence
// (param, alpha, label_smoothing, flags) as fusednn.backends.base.loss_params makes it.
inline LossParams to_loss_params(const py::handle& h) {
  if (py::isinstance<py::float_>(h) || py::isinstance<py::int_>(h)) return LossParams(h.cast<float>());
  if (!py::isinstance<py::sequence>(h) || py::isinstance<py::str>(h))
    throw py::type_error("loss parameters must be a number or a sequence (param, alpha, label_smoothing, flags)");
  const auto s = h.cast<py::sequence>();
  if (s.size() != 4)
    throw py::value_error("loss parameters must be (param, alpha, label_smoothing, flags), got " +
                          std::to_string(s.size()) + " values");
  const int flags = s[3].cast<int>();
  if (flags & ~(loss_flags::from_logits | loss_flags::class_balancing))
    throw py::value_error("unknown loss flag bits " + std::to_string(flags));
  return LossParams(s[0].cast<float>(), s[1].cast<float>(), s[2].cast<float>(), flags);
}
// fusednn::Act by name, in code order.
constexpr int kActCount = 17;
inline const char* const kActNames[kActCount] = {"linear", "relu", "sigmoid", "tanh", "elu", "selu",
                                                 "leaky_relu", "gelu", "gelu_tanh", "swish", "softplus",
                                                 "softsign", "hard_sigmoid", "hard_swish", "relu6", "mish",
                                                 "exponential"};

inline LossKind to_loss_kind(const std::string& loss) {
  if (loss == "mse") return LossKind::mse;
  if (loss == "binary") return LossKind::xent_binary;
  if (loss == "categorical") return LossKind::xent_categorical;
  if (loss == "sparse") return LossKind::xent_sparse;
  for (int k = 0; k < kLossFnCount; ++k)
    if (loss == kLossFnNames[k]) return static_cast<LossKind>(int(LossKind::loss_fn_base) + k);
  throw py::value_error("MlpTrainer: unsupported loss '" + loss +
                        "' (mse, binary, categorical, sparse, or a fusednn::LossFn name)");
}

// The kernels' integer codes as module attributes (ACTIVATION_CODES, XENT_CODES,
// TRAINER_LOSSES, TRAINER_OPTIMIZERS: name -> code, built from the C++ enums), so
// that a test can hold Python's tables (fusednn.backends.base) to them.
inline void add_codes(py::module_& m) {
  static_assert(kActCount == int(Act::exponential) + 1, "kActNames must name every fusednn::Act");
  static_assert(kLossFnCount == int(LossFn::categorical_focal_crossentropy) + 1, "kLossFnNames must name every LossFn");
  py::dict acts;
  for (int a = 0; a < kActCount; ++a) acts[kActNames[a]] = a;
  m.attr("ACTIVATION_CODES") = acts;
  py::dict loss_fns;
  for (int k = 0; k < kLossFnCount; ++k) loss_fns[kLossFnNames[k]] = k;
  m.attr("LOSS_FN_CODES") = loss_fns;
  py::dict xent;
  xent["binary"] = int(XentKind::sigmoid_binary);
  xent["categorical"] = int(XentKind::softmax_categorical);
  xent["sparse"] = int(XentKind::softmax_sparse);
  m.attr("XENT_CODES") = xent;
  py::dict losses;
  for (const char* name : {"mse", "binary", "categorical", "sparse"}) losses[name] = int(to_loss_kind(name));
  for (const char* name : kLossFnNames) losses[name] = int(to_loss_kind(name));
  m.attr("TRAINER_LOSSES") = losses;
  py::dict opts;  // every optimizer kind runs in the trainer (fusednn/optim_update.h)
  opts["sgd"] = int(OptKind::sgd);
  opts["adam"] = int(OptKind::adam);
  opts["rmsprop"] = int(OptKind::rmsprop);
  opts["adagrad"] = int(OptKind::adagrad);
  opts["adadelta"] = int(OptKind::adadelta);
  opts["adamax"] = int(OptKind::adamax);
  opts["nadam"] = int(OptKind::nadam);
  opts["lion"] = int(OptKind::lion);
  m.attr("TRAINER_OPTIMIZERS") = opts;
  m.attr("OPTIMIZER_FLAGS") = int(optf::all);
  m.attr("OPTIMIZER_PARAMS") = int(kOptParams);
}

// {"kind": int (fusednn::OptKind), "flags": int (optf bits)}: what
// fusednn.optimizers.Optimizer.kernel_spec() gives.
inline OptimizerConfig to_optimizer(const py::dict& o) {
  OptimizerConfig opt;
  const int kind = o["kind"].cast<int>();
  if (kind < 0 || kind >= kOptKinds)
    throw py::value_error("MlpTrainer: unknown optimizer kind " + std::to_string(kind));
  const int flags = o["flags"].cast<int>();
  if (flags & ~optf::all) throw py::value_error("MlpTrainer: unknown optimizer flags " + std::to_string(flags));
  opt.kind = static_cast<OptKind>(kind);
  opt.flags = flags;
  return opt;
}

// The step parameters of a run of `steps` steps: a C-contiguous float32
// (steps, kOptParams) array, checked by the caller's `rows(steps)`.

// The layer steps after a dense block (layer_steps.h), from the block's "post" list:
//   {"kind": "activation", "act", "Y", "G"}
//   {"kind": "dropout", "rate", "seed", "counter" (1-element int64 host array, kept
//    alive by the caller), "row_b", "col_b", "M", "Y", "G"}
//   {"kind": "batchnorm", "gamma", "beta" (None without scale/center), "dgamma", "dbeta",
//    "moving_mean", "moving_var", "xhat", "invstd", "scratch" (3*cols), "eps", "momentum", the optimizer
//    state "gamma_s1".."gamma_s3", "beta_s1".."beta_s3", "gamma_ema", "beta_ema" the optimizer uses,
//    optionally "gamma_decay"/"beta_decay", and "Y", "G"}
//   {"kind": "prelu", "alpha" ((cols,) or (1,)), "dalpha", the optimizer state "alpha_s1".."alpha_s3",
//    "alpha_ema" the optimizer uses, optionally "alpha_decay", and "Y", "G"} (only with allow_prelu)
//   {"kind": "layernorm", "gamma", "beta", "dgamma", "dbeta" and their optimizer state as batchnorm's,
//    "xhat" (batch×cols), "invstd" (batch,), "eps", and "Y", "G"} (only with allow_layernorm)
//   {"kind": "act_param", "act_kind" (0 relu, 1 elu), "slope", "alpha", "max_value" (None: none),
//    "threshold", "Y", "G"}, {"kind": "softmax", "Y", "G"}, {"kind": "gaussian_noise" / "gaussian_dropout",
//    "scale", "seed", "counter" (as dropout's), "M", "Y", "G"} (only with allow_prelu: the CPU's steps)
inline Constraint to_constraint(const py::handle& h, const std::string& where);

// A step's optional regularizer factors ("gamma_l1", "gamma_l2", "beta_l1", "beta_l2",
// "alpha_l1", "alpha_l2") and constraints ("gamma_constraint", "beta_constraint",
// "alpha_constraint": fusednn.constraints kernel_spec of the 1-D weight); only a trainer
// built with allow_step_extras takes them, and only on a step that has that weight.
inline void step_penalties(const py::dict& d, LayerStep& st, const std::string& at, bool allow) {
  const bool norm = st.kind == StepKind::batchnorm || st.kind == StepKind::layernorm;
  struct Entry {
    const char* name;
    bool has;
    float *l1, *l2;
    Constraint* con;
  };
  const Entry entries[3] = {{"gamma", norm && st.gamma, &st.gamma_l1, &st.gamma_l2, &st.gamma_con},
                            {"beta", norm && st.beta, &st.beta_l1, &st.beta_l2, &st.beta_con},
                            {"alpha", st.kind == StepKind::prelu, &st.alpha_l1, &st.alpha_l2, &st.alpha_con}};
  for (const Entry& e : entries) {
    const std::string name = e.name;
    for (const std::string& key : {name + "_l1", name + "_l2", name + "_constraint"}) {
      if (!d.contains(key.c_str()) || d[key.c_str()].is_none()) continue;
      if (!allow)
        throw py::value_error(at + key + ": this device's fused trainer does not regularize or constrain step weights");
      if (!e.has || st.frozen) throw py::value_error(at + "has " + key + " but no trainable " + name);
      if (key == name + "_constraint") {
        *e.con = to_constraint(d[key.c_str()], at + key + " ");
        e.con->axis = ConstraintAxis::all;  // a 1-D weight is one vector
      } else {
        const float f = d[key.c_str()].cast<float>();
        if (!(f >= 0.f) || !std::isfinite(f)) throw py::value_error(at + key + " must be a finite number >= 0");
        *(key == name + "_l1" ? e.l1 : e.l2) = f;
      }
    }
  }
}

template <class Shaped>
std::vector<LayerStep> to_steps(const py::list& steps, const OptimizerConfig& opt, int batch, int cols,
                                const std::string& where, Shaped&& shaped, bool allow_prelu = false,
                                bool allow_layernorm = false, bool allow_step_extras = false) {
  std::vector<LayerStep> out;
  bool use[3];
  opt_state_use(opt.kind, opt.flags, &use[0], &use[1], &use[2]);
  for (py::size_t k = 0; k < steps.size(); ++k) {
    const py::dict d = steps[k].cast<py::dict>();
    const std::string at = where + "step " + std::to_string(k) + " ";
    LayerStep st;
    st.cols = cols;
    st.Y = shaped(d["Y"], at + "Y", {batch, cols});
    st.G = shaped(d["G"], at + "G", {batch, cols});
    const std::string kind = d["kind"].cast<std::string>();
    if (kind == "activation") {
      st.kind = StepKind::activation;
      st.act = to_act(d["act"].cast<int>());
    } else if (kind == "dropout") {
      st.kind = StepKind::dropout;
      st.rate = d["rate"].cast<float>();
      if (!(st.rate >= 0.f && st.rate < 1.f)) throw py::value_error(at + "rate must be in [0, 1)");
      st.seed = d["seed"].cast<std::uint64_t>();
      st.row_b = d["row_b"].cast<bool>();
      st.col_b = d["col_b"].cast<bool>();
      st.M = shaped(d["M"], at + "M", {batch, cols});
      py::array c = py::reinterpret_borrow<py::array>(d["counter"]);
      if (!py::isinstance<py::array_t<std::int64_t>>(d["counter"]) || c.size() != 1 || !c.writeable() ||
          !(c.flags() & py::array::c_style))
        throw py::value_error(at + "counter must be a writeable 1-element int64 array");
      st.counter = static_cast<std::int64_t*>(c.mutable_data());
    } else if (kind == "batchnorm" || kind == "layernorm") {
      st.eps = d["eps"].cast<float>();
      if (kind == "layernorm") {  // per-row statistics, no moving ones; gamma/beta as batchnorm's (below)
        if (!allow_layernorm)
          throw py::value_error(at + "is a layernorm step, which this device's fused trainer does not run");
        if (!(st.eps > 0.f)) throw py::value_error(at + "eps must be > 0");
        st.kind = StepKind::layernorm;
        st.xhat = shaped(d["xhat"], at + "xhat", {batch, cols});
        st.invstd = shaped(d["invstd"], at + "invstd", {batch});
      } else {
        st.kind = StepKind::batchnorm;
        st.momentum = d["momentum"].cast<float>();
        st.moving_mean = shaped(d["moving_mean"], at + "moving_mean", {cols});
        st.moving_var = shaped(d["moving_var"], at + "moving_var", {cols});
        st.xhat = shaped(d["xhat"], at + "xhat", {batch, cols});
        st.invstd = shaped(d["invstd"], at + "invstd", {cols});
        st.scratch = shaped(d["scratch"], at + "scratch", {3 * cols});
        st.frozen = d.contains("frozen") && d["frozen"].cast<bool>();
        if (st.frozen) {  // inference mode: gamma and beta as constants, no gradient, state or update
          st.zeros = shaped(d["zeros"], at + "zeros", {cols});
          if (!d["gamma"].is_none()) st.gamma = shaped(d["gamma"], at + "gamma", {cols});
          if (!d["beta"].is_none()) st.beta = shaped(d["beta"], at + "beta", {cols});
          step_penalties(d, st, at, allow_step_extras);  // (rejects any: a frozen step has no trainable weight)
          out.push_back(st);
          continue;
        }
      }
      struct Param {
        const char* name;
        float **w, **g, **s, **ema;
        bool* decay;
      };
      const Param params[2] = {{"gamma", &st.gamma, &st.dgamma, st.gamma_s, &st.gamma_ema, &st.gamma_decay},
                               {"beta", &st.beta, &st.dbeta, st.beta_s, &st.beta_ema, &st.beta_decay}};
      for (const Param& q : params) {
        const std::string name = q.name;
        if (d[name.c_str()].is_none()) continue;
        *q.w = shaped(d[name.c_str()], at + name, {cols});
        *q.g = shaped(d[("d" + name).c_str()], at + "d" + name, {cols});
        for (int k = 0; k < 3; ++k) {
          if (!use[k]) continue;
          const std::string slot = name + "_s" + std::to_string(k + 1);
          q.s[k] = shaped(d[slot.c_str()], at + slot, {cols});
        }
        if (opt.flags & optf::ema) *q.ema = shaped(d[(name + "_ema").c_str()], at + name + "_ema", {cols});
        if (d.contains((name + "_decay").c_str())) *q.decay = d[(name + "_decay").c_str()].cast<bool>();
      }
    } else if (kind == "prelu") {
      if (!allow_prelu) throw py::value_error(at + "is a prelu step, which this device's fused trainer does not run");
      st.kind = StepKind::prelu;
      const py::ssize_t n =
          py::isinstance<py::array>(d["alpha"]) ? py::reinterpret_borrow<py::array>(d["alpha"]).size() : -1;
      if (n != 1 && n != cols) throw py::value_error(at + "alpha must hold 1 or " + std::to_string(cols) + " values");
      st.alpha_n = int(n);
      st.alpha = shaped(d["alpha"], at + "alpha", {n});
      st.dalpha = shaped(d["dalpha"], at + "dalpha", {n});
      for (int k = 0; k < 3; ++k) {
        if (!use[k]) continue;
        const std::string slot = "alpha_s" + std::to_string(k + 1);
        st.alpha_s[k] = shaped(d[slot.c_str()], at + slot, {n});
      }
      if (opt.flags & optf::ema) st.alpha_ema = shaped(d["alpha_ema"], at + "alpha_ema", {n});
      if (d.contains("alpha_decay")) st.alpha_decay = d["alpha_decay"].cast<bool>();
    } else if (kind == "act_param" || kind == "softmax" || kind == "log_softmax" || kind == "gaussian_noise" ||
               kind == "gaussian_dropout") {
      // the steps of cpu_steps_more.h: a device that runs prelu steps (the CPU) runs these too
      if (!allow_prelu)
        throw py::value_error(at + "is a " + kind + " step, which this device's fused trainer does not run");
      if (kind == "act_param") {
        st.kind = StepKind::act_param;
        const bool has_max = !d["max_value"].is_none();
        try {
          st.aparam = make_act_param(d["act_kind"].cast<int>(), d["slope"].cast<float>(), d["alpha"].cast<float>(),
                                     has_max ? d["max_value"].cast<float>() : 0.f, has_max,
                                     d["threshold"].cast<float>(), at);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      } else if (kind == "softmax") {
        st.kind = StepKind::softmax;
      } else if (kind == "log_softmax") {
        if (!allow_step_extras)
          throw py::value_error(at + "is a log_softmax step, which this device's fused trainer does not run");
        st.kind = StepKind::log_softmax;
      } else {
        st.kind = kind == "gaussian_noise" ? StepKind::gaussian_noise : StepKind::gaussian_dropout;
        st.noise_scale = d["scale"].cast<float>();
        if (!(st.noise_scale >= 0.f) || !std::isfinite(st.noise_scale))
          throw py::value_error(at + "scale must be a finite number >= 0");
        st.seed = d["seed"].cast<std::uint64_t>();
        st.M = shaped(d["M"], at + "M", {batch, cols});
        py::array c = py::reinterpret_borrow<py::array>(d["counter"]);
        if (!py::isinstance<py::array_t<std::int64_t>>(d["counter"]) || c.size() != 1 || !c.writeable() ||
            !(c.flags() & py::array::c_style))
          throw py::value_error(at + "counter must be a writeable 1-element int64 array");
        st.counter = static_cast<std::int64_t*>(c.mutable_data());
      }
    } else {
      throw py::value_error(at + "has unknown kind '" + kind +
                            "' (activation, dropout, batchnorm, prelu, layernorm, act_param, softmax, "
                            "log_softmax, gaussian_noise, gaussian_dropout)");
    }
    step_penalties(d, st, at, allow_step_extras);
    out.push_back(st);
  }
  return out;
}

// The layers of MlpTrainer(layers=[{"W", "b", "act", "A", "G", "dW", "db", and
// the optimizer state "W_s1".."W_s3", "b_s1".."b_s3", "W_ema", "b_ema" that the
// optimizer uses, and optionally "W_decay"/"b_decay": False where weight decay is
// excluded}, ...]).
//   matrix(handle, name) -> std::tuple<float*, py::ssize_t rows, py::ssize_t cols>
//   shaped(handle, name, std::vector<py::ssize_t> shape) -> float*
// Optional per layer: "W_constraint"/"b_constraint": {"kind", "axis", "min_value", "max_value", "rate"}
// (fusednn.constraints kernel_spec); only a trainer built with allow_constraints takes them.
inline Constraint to_constraint(const py::handle& h, const std::string& where) {
  const py::dict d = h.cast<py::dict>();
  Constraint c;
  const int kind = d["kind"].cast<int>(), axis = d["axis"].cast<int>();
  if (kind < int(ConstraintKind::none) || kind > int(ConstraintKind::min_max_norm))
    throw py::value_error(where + "has unknown constraint kind " + std::to_string(kind));
  if (axis < int(ConstraintAxis::rows) || axis > int(ConstraintAxis::all))
    throw py::value_error(where + "has unknown constraint axis code " + std::to_string(axis));
  c.kind = static_cast<ConstraintKind>(kind);
  c.axis = static_cast<ConstraintAxis>(axis);
  c.min_value = d["min_value"].cast<float>();
  c.max_value = d["max_value"].cast<float>();
  c.rate = d["rate"].cast<float>();
  if (!(c.min_value >= 0.f && c.max_value >= c.min_value))
    throw py::value_error(where + "constraint needs 0 <= min_value <= max_value");
  return c;
}

// Graph blocks: "src" (block indices, -1 - j for model input j), "merge" (MergeKind),
// "src_cols" ([column, width] of the batch for each model-input source; default the
// whole batch) and "X"/"dX". The batch is "x_cols" wide (given on layer 0; default its
// inputs); only a trainer that passes x_cols_out (the CPU's and CUDA's) takes a batch of another width.
template <class Matrix, class Shaped>
std::vector<DenseBuffers> to_layers(const py::list& layers, const OptimizerConfig& opt, int batch,
                                    Matrix&& matrix, Shaped&& shaped, bool allow_constraints = false,
                                    bool allow_prelu = false, bool allow_layernorm = false, int* x_cols_out = nullptr,
                                    bool allow_step_extras = false) {
  if (layers.empty()) throw py::value_error("MlpTrainer needs at least one layer");
  std::vector<DenseBuffers> out;
  int prev_out = -1;
  int x_cols = -1;  // set from layer 0
  for (py::size_t i = 0; i < layers.size(); ++i) {
    const py::dict d = layers[i].cast<py::dict>();
    const std::string where = "layer " + std::to_string(i) + " ";
    DenseBuffers l;
    py::ssize_t rows, cols;
    // a graph's merge block, or an identity block (merge 0: steps on its one source): no W
    const bool merge_block = d["W"].is_none();
    if (merge_block) {
      if (!d.contains("src") || d["src"].is_none() || !d.contains("merge"))
        throw py::value_error(where + "has no W but is not a merge or identity block (src, merge 0 to 5)");
      l.in = l.out = d["units"].cast<int>();
      if (l.in < 1) throw py::value_error(where + "units must be >= 1");
    } else {
      std::tie(l.W, rows, cols) = matrix(d["W"], where + "W");
      l.in = to_int_dim(rows, "W rows");
      l.out = to_int_dim(cols, "W columns");
    }
    if (i == 0) {
      x_cols = d.contains("x_cols") && !d["x_cols"].is_none() ? d["x_cols"].cast<int>() : l.in;
      if (x_cols < 1) throw py::value_error("x_cols must be >= 1");
      if (x_cols != l.in && !x_cols_out)
        throw py::value_error("this device's fused trainer takes a batch as wide as layer 0's input only");
    }
    if (d.contains("src") && !d["src"].is_none()) {  // a graph block (fusednn/trainer.h)
      for (const auto& k : d["src"].cast<py::list>()) l.src.push_back(k.cast<int>());
      l.merge = d.contains("merge") ? d["merge"].cast<int>() : 0;
      if (l.src.empty() || l.merge < merge_one || l.merge > merge_avg || (l.merge == merge_one && l.src.size() != 1) ||
          (l.merge != merge_one && l.src.size() < 2) || (l.merge == merge_sub && l.src.size() != 2))
        throw py::value_error(where + "has a bad src/merge");
      if (l.merge > merge_add && !merge_block)
        throw py::value_error(where + "an elementwise merge other than add must be a merge block (no W)");
      py::list cols;
      if (d.contains("src_cols") && !d["src_cols"].is_none()) {
        cols = d["src_cols"].cast<py::list>();
        if (cols.size() != l.src.size()) throw py::value_error(where + "src_cols must have one entry per src");
      }
      int width = 0;
      for (std::size_t n = 0; n < l.src.size(); ++n) {
        const int k = l.src[n];
        if (k >= int(i)) throw py::value_error(where + "src must name earlier layers or model inputs (< 0)");
        int col = 0, w = 0;
        if (k < 0) {
          if (cols.size() && !cols[n].is_none()) {
            const py::sequence cw = cols[n].cast<py::sequence>();
            if (cw.size() != 2) throw py::value_error(where + "src_cols entries are [column, width]");
            col = cw[0].cast<int>();
            w = cw[1].cast<int>();
          } else {
            w = x_cols;
          }
          if (col < 0 || w < 1 || col + w > x_cols)
            throw py::value_error(where + "src_cols [" + std::to_string(col) + ", " + std::to_string(w) +
                                  "] is outside the batch's " + std::to_string(x_cols) + " columns");
        } else {
          w = out[std::size_t(k)].out;
        }
        if (l.merge >= merge_add && w != l.in)
          throw py::value_error(where + "merges elementwise inputs of another width than its input");
        l.src_col.push_back(col);
        l.src_width.push_back(w);
        width += w;
      }
      if ((l.merge == merge_concat || l.merge == merge_one) && width != l.in)
        throw py::value_error(where + "takes " + std::to_string(l.in) + " inputs but its sources give " +
                              std::to_string(width));
      // a block's own merged input (or the copied columns of a model input that is a slice of the batch)
      if (l.merge != merge_one || (l.src[0] < 0 && l.src_width[0] != x_cols))
        l.X = shaped(d["X"], where + "X", {batch, l.in});
      if (l.merge != merge_one || l.src[0] >= 0) l.dX = shaped(d["dX"], where + "dX", {batch, l.in});
    } else if (prev_out >= 0 && l.in != prev_out) {
      throw py::value_error(where + "takes " + std::to_string(l.in) + " inputs but the previous layer has " +
                            std::to_string(prev_out) + " units");
    }
    prev_out = l.out;
    l.act = to_act(d["act"].cast<int>());
    l.A = shaped(d["A"], where + "A", {batch, l.out});
    l.G = shaped(d["G"], where + "G", {batch, l.out});
    // the pre-activation, kept only for activations whose backward needs it
    if (act_backward_needs_input(l.act)) {
      if (!d.contains("Z") || d["Z"].is_none())
        throw py::value_error(where + "needs a Z buffer (batch x units) for its activation");
      l.Z = shaped(d["Z"], where + "Z", {batch, l.out});
    }
    if (!merge_block) l.dW = shaped(d["dW"], where + "dW", {l.in, l.out});
    const bool bias = !d["b"].is_none();
    if (bias) {
      l.b = shaped(d["b"], where + "b", {l.out});
      l.db = shaped(d["db"], where + "db", {l.out});
    }
    l.frozen = merge_block || (d.contains("frozen") && d["frozen"].cast<bool>());
    if (merge_block && !d["b"].is_none()) throw py::value_error(where + "a merge block has no bias");
    bool use[3];
    opt_state_use(opt.kind, opt.flags, &use[0], &use[1], &use[2]);
    if (l.frozen) use[0] = use[1] = use[2] = false;  // a frozen block has no optimizer state
    float** wslot[3] = {&l.W_s1, &l.W_s2, &l.W_s3};
    float** bslot[3] = {&l.b_s1, &l.b_s2, &l.b_s3};
    for (int k = 0; k < 3; ++k) {
      if (!use[k]) continue;
      const std::string sw = "W_s" + std::to_string(k + 1), sb = "b_s" + std::to_string(k + 1);
      *wslot[k] = shaped(d[sw.c_str()], where + sw, {l.in, l.out});
      if (bias) *bslot[k] = shaped(d[sb.c_str()], where + sb, {l.out});
    }
    if ((opt.flags & optf::ema) && !l.frozen) {
      l.W_ema = shaped(d["W_ema"], where + "W_ema", {l.in, l.out});
      if (bias) l.b_ema = shaped(d["b_ema"], where + "b_ema", {l.out});
    }
    if (d.contains("W_decay")) l.W_decay = d["W_decay"].cast<bool>();
    if (d.contains("b_decay")) l.b_decay = d["b_decay"].cast<bool>();
    // optional regularizer factors (Keras L1/L2 on the kernel and the bias)
    const auto factor = [&](const char* key) { return d.contains(key) ? d[key].cast<float>() : 0.f; };
    l.W_l1 = factor("W_l1");
    l.W_l2 = factor("W_l2");
    l.b_l1 = bias ? factor("b_l1") : 0.f;
    l.b_l2 = bias ? factor("b_l2") : 0.f;
    l.A_l1 = factor("A_l1");
    l.A_l2 = factor("A_l2");
    if (!(l.W_l1 >= 0.f && l.W_l2 >= 0.f && l.b_l1 >= 0.f && l.b_l2 >= 0.f && l.A_l1 >= 0.f && l.A_l2 >= 0.f))
      throw py::value_error(where + "regularizer factors must be >= 0");
    for (const char* key : {"W_constraint", "b_constraint"}) {
      if (!d.contains(key) || d[key].is_none()) continue;
      if (!allow_constraints)
        throw py::value_error(where + key + ": this device's fused trainer does not apply weight constraints");
      Constraint c = to_constraint(d[key], where + key + " ");
      if (key[0] == 'W') {
        l.W_con = c;
      } else {
        if (!bias) throw py::value_error(where + "has a b_constraint but no bias");
        l.b_con = c;
        if (c.axis == ConstraintAxis::cols) l.b_con.axis = ConstraintAxis::all;  // a bias is one vector
      }
    }
    if (d.contains("post") && !d["post"].is_none())
      l.post = to_steps(d["post"].cast<py::list>(), opt, batch, l.out, where, shaped, allow_prelu,
                        allow_layernorm, allow_step_extras);
    out.push_back(l);
  }
  if (x_cols_out) *x_cols_out = x_cols;
  return out;
}

}  // namespace bind_common
}  // namespace fusednn
