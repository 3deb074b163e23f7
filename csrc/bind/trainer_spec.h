// What _cpu.MlpTrainer and _cuda.MlpTrainer read from Python, shared by both
// bindings: the loss and optimizer settings and the per-layer buffers. The
// array checks differ by device, so each binding passes its own `matrix`
// (any 2-D float32 buffer: its pointer and shape) and `shaped` (a float32
// buffer that must have the given shape: its pointer) callbacks, which also
// keep the arrays alive and reject buffers that overlap.
#pragma once
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
    out.push_back(l);
  }
  return out;
}

}  // namespace bind_common
}  // namespace fusednn
