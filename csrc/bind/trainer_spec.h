// What _cpu.MlpTrainer and _cuda.MlpTrainer read from Python, shared by both
// bindings: the loss and optimizer settings and the per-layer buffers. The
// array checks differ by device, so each binding passes its own `matrix`
// (any 2-D float32 buffer: its pointer and shape) and `shaped` (a float32
// buffer that must have the given shape: its pointer) callbacks, which also
// keep the arrays alive and reject buffers that overlap.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

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
                          " (0=linear, 1=relu, 2=sigmoid, 3=tanh)");
  return static_cast<Act>(a);
}

inline int to_int_dim(py::ssize_t d, const char* what) {
  if (d > py::ssize_t(INT32_MAX))
    throw py::value_error(std::string(what) + " is too large for the kernel (> 2^31 - 1)");
  return int(d);
}

inline LossKind to_loss_kind(const std::string& loss) {
  if (loss == "mse") return LossKind::mse;
  if (loss == "binary") return LossKind::xent_binary;
  if (loss == "categorical") return LossKind::xent_categorical;
  if (loss == "sparse") return LossKind::xent_sparse;
  throw py::value_error("MlpTrainer: unsupported loss '" + loss + "' (mse, binary, categorical, sparse)");
}

// The kernels' integer codes as module attributes (ACTIVATION_CODES, XENT_CODES,
// TRAINER_LOSSES, TRAINER_OPTIMIZERS: name -> code, built from the C++ enums), so
// that a test can hold Python's tables (fusednn.backends.base) to them.
inline void add_codes(py::module_& m) {
  py::dict acts;
  acts["linear"] = int(Act::linear);
  acts["relu"] = int(Act::relu);
  acts["sigmoid"] = int(Act::sigmoid);
  acts["tanh"] = int(Act::tanh);
  m.attr("ACTIVATION_CODES") = acts;
  py::dict xent;
  xent["binary"] = int(XentKind::sigmoid_binary);
  xent["categorical"] = int(XentKind::softmax_categorical);
  xent["sparse"] = int(XentKind::softmax_sparse);
  m.attr("XENT_CODES") = xent;
  py::dict losses;
  for (const char* name : {"mse", "binary", "categorical", "sparse"}) losses[name] = int(to_loss_kind(name));
  m.attr("TRAINER_LOSSES") = losses;
  py::dict opts;
  opts["sgd"] = int(OptKind::sgd);
  opts["adam"] = int(OptKind::adam);
  m.attr("TRAINER_OPTIMIZERS") = opts;
}

inline OptimizerConfig to_optimizer(const py::dict& o) {
  OptimizerConfig opt;
  const std::string kind = o["kind"].cast<std::string>();
  if (kind == "adam") {
    opt.kind = OptKind::adam;
    opt.beta1 = o["beta_1"].cast<float>();
    opt.beta2 = o["beta_2"].cast<float>();
    opt.eps = o["epsilon"].cast<float>();
  } else if (kind == "sgd") {
    opt.kind = OptKind::sgd;
    opt.momentum = o["momentum"].cast<float>();
    opt.nesterov = o["nesterov"].cast<bool>();
  } else {
    throw py::value_error("MlpTrainer: unsupported optimizer '" + kind + "'");
  }
  opt.lr = o["learning_rate"].cast<float>();
  return opt;
}

// The layer steps after a dense block (layer_steps.h), from the block's "post" list:
//   {"kind": "activation", "act", "Y", "G"}
//   {"kind": "dropout", "rate", "seed", "counter" (1-element int64 host array, kept
//    alive by the caller), "row_b", "col_b", "M", "Y", "G"}
//   {"kind": "batchnorm", "gamma", "beta" (None without scale/center), "dgamma", "dbeta",
//    "moving_mean", "moving_var", "xhat", "invstd", "scratch" (3*cols), "eps", "momentum", and the optimizer
//    state "gamma_s1", "gamma_s2", "beta_s1", "beta_s2", "Y", "G"}
template <class Shaped>
std::vector<LayerStep> to_steps(const py::list& steps, const OptimizerConfig& opt, int batch, int cols,
                                const std::string& where, Shaped&& shaped) {
  std::vector<LayerStep> out;
  const bool two = opt.kind == OptKind::adam, one = two || opt.momentum != 0.f;
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
    } else if (kind == "batchnorm") {
      st.kind = StepKind::batchnorm;
      st.eps = d["eps"].cast<float>();
      st.momentum = d["momentum"].cast<float>();
      st.moving_mean = shaped(d["moving_mean"], at + "moving_mean", {cols});
      st.moving_var = shaped(d["moving_var"], at + "moving_var", {cols});
      st.xhat = shaped(d["xhat"], at + "xhat", {batch, cols});
      st.invstd = shaped(d["invstd"], at + "invstd", {cols});
      st.scratch = shaped(d["scratch"], at + "scratch", {3 * cols});
      if (!d["gamma"].is_none()) {
        st.gamma = shaped(d["gamma"], at + "gamma", {cols});
        st.dgamma = shaped(d["dgamma"], at + "dgamma", {cols});
        if (one) st.gamma_s1 = shaped(d["gamma_s1"], at + "gamma_s1", {cols});
        if (two) st.gamma_s2 = shaped(d["gamma_s2"], at + "gamma_s2", {cols});
      }
      if (!d["beta"].is_none()) {
        st.beta = shaped(d["beta"], at + "beta", {cols});
        st.dbeta = shaped(d["dbeta"], at + "dbeta", {cols});
        if (one) st.beta_s1 = shaped(d["beta_s1"], at + "beta_s1", {cols});
        if (two) st.beta_s2 = shaped(d["beta_s2"], at + "beta_s2", {cols});
      }
    } else {
      throw py::value_error(at + "has unknown kind '" + kind + "' (activation, dropout, batchnorm)");
    }
    out.push_back(st);
  }
  return out;
}

// The layers of MlpTrainer(layers=[{"W", "b", "act", "A", "G", "dW", "db", and
// the optimizer state "W_s1", "W_s2", "b_s1", "b_s2"}, ...]).
//   matrix(handle, name) -> std::tuple<float*, py::ssize_t rows, py::ssize_t cols>
//   shaped(handle, name, std::vector<py::ssize_t> shape) -> float*
template <class Matrix, class Shaped>
std::vector<DenseBuffers> to_layers(const py::list& layers, const OptimizerConfig& opt, int batch,
                                    Matrix&& matrix, Shaped&& shaped) {
  if (layers.empty()) throw py::value_error("MlpTrainer needs at least one layer");
  std::vector<DenseBuffers> out;
  int prev_out = -1;
  for (py::size_t i = 0; i < layers.size(); ++i) {
    const py::dict d = layers[i].cast<py::dict>();
    const std::string where = "layer " + std::to_string(i) + " ";
    DenseBuffers l;
    py::ssize_t rows, cols;
    std::tie(l.W, rows, cols) = matrix(d["W"], where + "W");
    l.in = to_int_dim(rows, "W rows");
    l.out = to_int_dim(cols, "W columns");
    if (prev_out >= 0 && l.in != prev_out)
      throw py::value_error(where + "takes " + std::to_string(l.in) + " inputs but the previous layer has " +
                            std::to_string(prev_out) + " units");
    prev_out = l.out;
    l.act = to_act(d["act"].cast<int>());
    l.A = shaped(d["A"], where + "A", {batch, l.out});
    l.G = shaped(d["G"], where + "G", {batch, l.out});
    l.dW = shaped(d["dW"], where + "dW", {l.in, l.out});
    const bool bias = !d["b"].is_none();
    if (bias) {
      l.b = shaped(d["b"], where + "b", {l.out});
      l.db = shaped(d["db"], where + "db", {l.out});
    }
    const bool two = opt.kind == OptKind::adam, one = two || opt.momentum != 0.f;
    if (one) {
      l.W_s1 = shaped(d["W_s1"], where + "W_s1", {l.in, l.out});
      if (bias) l.b_s1 = shaped(d["b_s1"], where + "b_s1", {l.out});
    }
    if (two) {
      l.W_s2 = shaped(d["W_s2"], where + "W_s2", {l.in, l.out});
      if (bias) l.b_s2 = shaped(d["b_s2"], where + "b_s2", {l.out});
    }
    // optional regularizer factors (Keras L1/L2 on the kernel and the bias)
    const auto factor = [&](const char* key) { return d.contains(key) ? d[key].cast<float>() : 0.f; };
    l.W_l1 = factor("W_l1");
    l.W_l2 = factor("W_l2");
    l.b_l1 = bias ? factor("b_l1") : 0.f;
    l.b_l2 = bias ? factor("b_l2") : 0.f;
    if (d.contains("post") && !d["post"].is_none())
      l.post = to_steps(d["post"].cast<py::list>(), opt, batch, l.out, where, shaped);
    out.push_back(l);
  }
  if (!out.back().post.empty())
    throw py::value_error("the last layer's output goes to the loss: it cannot have steps after it");
  return out;
}

}  // namespace bind_common
}  // namespace fusednn
