// pybind11 module fusednn._cpu: the only place the CPU kernels meet Python.
// Every argument is checked here (type, dtype, rank, shape, contiguity,
// writeability, aliasing) so a kernel never sees a buffer of the wrong type
// or size; the GIL is released while a kernel runs. Conversion of other
// dtypes and layouts happens one level up, in fusednn.ops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "checks.h"
#include "fusednn/cpu.h"

namespace py = pybind11;
using fusednn::Act;
namespace cpu = fusednn::cpu;

using namespace fusednn::bind;

namespace {

using MatmulFn = void (*)(float*, const float*, const float*, int, int, int, bool, bool,
                          const float*, Act);

py::array matmul_checked(MatmulFn fn, const py::object& a_, const py::object& b_, bool ta, bool tb,
                         const py::object& bias_, int act, const py::object& out_) {
  py::array a = as_f32(a_, "a"), b = as_f32(b_, "b");
  check_ndim(a, "a", 2);
  check_ndim(b, "b", 2);
  const py::ssize_t M = ta ? a.shape(1) : a.shape(0), K = ta ? a.shape(0) : a.shape(1);
  const py::ssize_t Kb = tb ? b.shape(1) : b.shape(0), N = tb ? b.shape(0) : b.shape(1);
  if (K != Kb)
    throw py::value_error("matmul: inner dimensions differ: a" + std::string(ta ? ".T" : "") +
                          " has shape " + shape_of(a) + ", b" + (tb ? ".T" : "") +
                          " has shape " + shape_of(b));
  py::array out = out_or_new(out_, {M, N});
  check_no_overlap(out, a, "a");
  check_no_overlap(out, b, "b");
  const float* bias = nullptr;
  py::array bias_arr;
  if (!bias_.is_none()) {
    bias_arr = as_f32(bias_, "bias");
    check_ndim(bias_arr, "bias", 1);
    if (bias_arr.shape(0) != N)
      throw py::value_error("matmul: bias has shape " + shape_of(bias_arr) + ", expected (" +
                            std::to_string(N) + ",)");
    check_no_overlap(out, bias_arr, "bias");
    bias = cfptr(bias_arr);
  }
  const Act ac = to_act(act);
  const int m = to_int_dim(M, "M"), n = to_int_dim(N, "N"), k = to_int_dim(K, "K");
  float* c = fptr(out);
  const float *pa = cfptr(a), *pb = cfptr(b);
  {
    py::gil_scoped_release nogil;
    fn(c, pa, pb, m, n, k, ta, tb, bias, ac);
  }
  return out;
}

// A penalty kernel's optional one-element float32 `loss` (kept alive in `keep`): its
// pointer, or null for None.
float* penalty_slot(const py::object& loss_, py::array& keep, const char* op) {
  if (loss_.is_none()) return nullptr;
  keep = as_f32(loss_, "loss", true);
  if (keep.size() != 1)
    throw py::value_error(std::string(op) + ": loss must hold exactly one element, got shape " + shape_of(keep));
  return fptr(keep);
}

}  // namespace

void register_trainer(py::module_& m);  // cpu_trainer.cpp
void register_layer_kernels(py::module_& m);  // cpu_layers.cpp
void register_optim(py::module_& m);    // cpu_optim.cpp
void register_metric_kernels(py::module_& m);  // cpu_metrics.cpp
void register_steps_more_kernels(py::module_& m);  // cpu_steps_more.cpp
void register_merge_kernels(py::module_& m);  // cpu_merge.cpp
void register_shuffle(py::module_& m);  // cpu_shuffle.cpp

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fusednn CPU kernels (float32, C-contiguous NumPy arrays)";
  fusednn::bind_common::add_codes(m);

  m.def(
      "matmul",
      [](const py::object& a, const py::object& b, bool ta, bool tb, const py::object& bias, int act,
         const py::object& out) { return matmul_checked(cpu::matmul, a, b, ta, tb, bias, act, out); },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      py::arg("bias") = py::none(), py::arg("activation") = 0, py::arg("out") = py::none(),
      "act(op(a) @ op(b) + bias), packed-panel GEMM; writes out (or a new array) and returns it.");
  m.def(
      "matmul_reference",
      [](const py::object& a, const py::object& b, bool ta, bool tb, const py::object& bias, int act,
         const py::object& out) { return matmul_checked(cpu::matmul_reference, a, b, ta, tb, bias, act, out); },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      py::arg("bias") = py::none(), py::arg("activation") = 0, py::arg("out") = py::none(),
      "The simple triple-loop GEMM (double accumulation), kept as an oracle.");

  m.def(
      "act_forward",
      [](const py::object& x_, int act, const py::object& out_) {
        py::array x = as_f32(x_, "x");
        const Act ac = to_act(act);
        py::array out = out_or_new(out_, shape_vec(x));
        check_in_place_or_apart(out, x, "x");
        float* y = fptr(out);
        const float* px = cfptr(x);
        const std::size_t n = std::size_t(x.size());
        {
          py::gil_scoped_release nogil;
          cpu::act_forward(y, px, n, ac);
        }
        return out;
      },
      py::arg("x"), py::arg("activation"), py::arg("out") = py::none());
  m.def(
      "act_backward",
      [](const py::object& dy_, const py::object& y_, int act, const py::object& out_) {
        py::array dy = as_f32(dy_, "dy"), y = as_f32(y_, "y");
        check_same_shape(dy, "dy", y, "y");
        const Act ac = to_act(act);
        py::array out = out_or_new(out_, shape_vec(dy));
        check_in_place_or_apart(out, dy, "dy");
        check_in_place_or_apart(out, y, "y");
        float* dx = fptr(out);
        const float *pdy = cfptr(dy), *py_ = cfptr(y);
        const std::size_t n = std::size_t(dy.size());
        {
          py::gil_scoped_release nogil;
          cpu::act_backward(dx, pdy, py_, n, ac);
        }
        return out;
      },
      py::arg("dy"), py::arg("y"), py::arg("activation"), py::arg("out") = py::none());
  m.def(
      "hidden_grad",
      [](const py::object& dz_, const py::object& w_, const py::object& y_, int act, const py::object& db_,
         const py::object& out_) {
        py::array dz = as_f32(dz_, "dz"), w = as_f32(w_, "w"), y = as_f32(y_, "y");
        check_ndim(y, "y", 2);
        const py::ssize_t rows = y.shape(0), cols = y.shape(1);
        // dz: rows×k, w: cols×k (1-D: k = 1)
        const py::ssize_t k = dz.ndim() == 2 ? dz.shape(1) : 1;
        if (dz.ndim() < 1 || dz.ndim() > 2 || dz.shape(0) != rows)
          throw py::value_error("dz has shape " + shape_of(dz) + " but y has " + std::to_string(rows) + " rows");
        if (w.ndim() < 1 || w.ndim() > 2 || w.shape(0) != cols || (w.ndim() == 2 ? w.shape(1) : 1) != k)
          throw py::value_error("w has shape " + shape_of(w) + ": expected (" + std::to_string(cols) + ", " +
                                std::to_string(k) + ") for y's " + std::to_string(cols) + " columns and dz's " +
                                std::to_string(k));
        const Act ac = to_act(act);
        py::array out = out_or_new(out_, {rows, cols});
        for (const auto& [a, name] : {std::pair{&dz, "dz"}, std::pair{&w, "w"}, std::pair{&y, "y"}})
          check_no_overlap(out, *a, name);
        py::array db;
        float* pdb = nullptr;
        if (!db_.is_none()) {
          db = out_or_new(db_, {cols});
          check_no_overlap(db, out, "out");
          for (const auto& [a, name] : {std::pair{&dz, "dz"}, std::pair{&w, "w"}, std::pair{&y, "y"}})
            check_no_overlap(db, *a, name);
          pdb = fptr(db);
        }
        float* dx = fptr(out);
        const float *pdz = cfptr(dz), *pw = cfptr(w), *py_ = cfptr(y);
        {
          py::gil_scoped_release nogil;
          cpu::hidden_grad(dx, pdb, pdz, pw, py_, std::size_t(rows), std::size_t(cols), std::size_t(k), ac);
        }
        return out;
      },
      py::arg("dz"), py::arg("w"), py::arg("y"), py::arg("activation"), py::arg("db") = py::none(),
      py::arg("out") = py::none(),
      "act_backward(dz @ w.T, y) (a hidden layer's gradient from the layer above), and into db its column "
      "sums; one pass for relu, sigmoid, tanh and linear under 1 unit, or under 16 with a multiple of 8 "
      "columns, with the bits of matmul, act_backward and sum_rows.");
  m.def(
      "bias_act",
      [](const py::object& x_, const py::object& b_, int act, const py::object& out_) {
        py::array x = as_f32(x_, "x"), b = as_f32(b_, "bias");
        check_ndim(x, "x", 2);
        check_ndim(b, "bias", 1);
        if (b.shape(0) != x.shape(1))
          throw py::value_error("bias has shape " + shape_of(b) + " but x has shape " + shape_of(x));
        const Act ac = to_act(act);
        py::array out = out_or_new(out_, shape_vec(x));
        check_no_overlap(out, b, "bias");
        check_in_place_or_apart(out, x, "x");
        float* y = fptr(out);
        const float *px = cfptr(x), *pb = cfptr(b);
        const std::size_t rows = std::size_t(x.shape(0)), cols = std::size_t(x.shape(1));
        {
          py::gil_scoped_release nogil;
          cpu::bias_act(y, px, pb, rows, cols, ac);
        }
        return out;
      },
      py::arg("x"), py::arg("bias"), py::arg("activation"), py::arg("out") = py::none());

  m.def(
      "softmax",
      [](const py::object& x_, const py::object& out_) {
        py::array x = as_f32(x_, "x");
        check_ndim(x, "x", 2);
        py::array out = out_or_new(out_, shape_vec(x));
        check_in_place_or_apart(out, x, "x");
        float* y = fptr(out);
        const float* px = cfptr(x);
        const std::size_t rows = std::size_t(x.shape(0)), cols = std::size_t(x.shape(1));
        {
          py::gil_scoped_release nogil;
          cpu::softmax(y, px, rows, cols);
        }
        return out;
      },
      py::arg("x"), py::arg("out") = py::none(), "Row-wise softmax of a 2-D array.");
  m.def(
      "softmax_backward",
      [](const py::object& dy_, const py::object& y_, const py::object& out_) {
        py::array dy = as_f32(dy_, "dy"), y = as_f32(y_, "y");
        check_ndim(dy, "dy", 2);
        check_same_shape(dy, "dy", y, "y");
        py::array out = out_or_new(out_, shape_vec(dy));
        check_in_place_or_apart(out, dy, "dy");
        check_in_place_or_apart(out, y, "y");
        float* dx = fptr(out);
        const float *pdy = cfptr(dy), *py_ = cfptr(y);
        const std::size_t rows = std::size_t(dy.shape(0)), cols = std::size_t(dy.shape(1));
        {
          py::gil_scoped_release nogil;
          cpu::softmax_backward(dx, pdy, py_, rows, cols);
        }
        return out;
      },
      py::arg("dy"), py::arg("y"), py::arg("out") = py::none(),
      "dy * y - y * sum(dy * y) per row: the gradient through a row softmax with output y.");
  m.def(
      "log_softmax",
      [](const py::object& x_, const py::object& out_) {
        py::array x = as_f32(x_, "x");
        check_ndim(x, "x", 2);
        py::array out = out_or_new(out_, shape_vec(x));
        float* y = fptr(out);
        const float* px = cfptr(x);
        const std::size_t rows = std::size_t(x.shape(0)), cols = std::size_t(x.shape(1));
        {
          py::gil_scoped_release nogil;
          cpu::log_softmax(y, px, rows, cols);
        }
        return out;
      },
      py::arg("x"), py::arg("out") = py::none(), "Row-wise log-softmax of a 2-D array.");
  m.def(
      "log_softmax_backward",
      [](const py::object& dy_, const py::object& y_, const py::object& out_) {
        py::array dy = as_f32(dy_, "dy"), y = as_f32(y_, "y");
        check_ndim(dy, "dy", 2);
        check_same_shape(dy, "dy", y, "y");
        py::array out = out_or_new(out_, shape_vec(dy));
        float* dx = fptr(out);
        const float *pdy = cfptr(dy), *py_ = cfptr(y);
        const std::size_t rows = std::size_t(dy.shape(0)), cols = std::size_t(dy.shape(1));
        {
          py::gil_scoped_release nogil;
          cpu::log_softmax_backward(dx, pdy, py_, rows, cols);
        }
        return out;
      },
      py::arg("dy"), py::arg("y"), py::arg("out") = py::none(),
      "dy - exp(y) * sum(dy) per row: the gradient through a row log-softmax with output y.");
  m.def(
      "loss_grad",
      [](const py::object& p_, const py::object& t_, int fn, const py::object& param_, const py::object& grad_,
         const py::object& out_) {
        if (!fusednn::loss_fn_is_valid(fn))
          throw py::value_error("unknown loss code " + std::to_string(fn) + " (see fusednn::LossFn)");
        const auto k = static_cast<fusednn::LossFn>(fn);
        const fusednn::LossParams param = fusednn::bind_common::to_loss_params(param_);
        py::array p = as_f32(p_, "pred"), t = as_f32(t_, "target");
        check_ndim(p, "pred", 2);
        check_same_shape(p, "pred", t, "target");
        float* g = nullptr;
        py::array grad;
        if (!grad_.is_none()) {
          grad = out_or_new(grad_, shape_vec(p));
          check_no_overlap(grad, t, "target");
          check_no_overlap(grad, p, "pred");
          g = fptr(grad);
        }
        float* o = nullptr;
        py::array out;
        if (!out_.is_none()) {
          out = as_f32(out_, "out", true);
          if (out.size() != 1)
            throw py::value_error("loss_grad: out must hold exactly one element, got shape " + shape_of(out));
          o = fptr(out);
        }
        const float *pp = cfptr(p), *pt = cfptr(t);
        const std::size_t rows = std::size_t(p.shape(0)), cols = std::size_t(p.shape(1));
        double r;
        {
          py::gil_scoped_release nogil;
          r = cpu::loss_grad(g, pp, pt, rows, cols, k, param);
        }
        if (o) *o = float(r);
        return r;
      },
      py::arg("pred"), py::arg("target"), py::arg("fn"), py::arg("param") = 0.0f, py::arg("grad") = py::none(),
      py::arg("out") = py::none(),
      "Mean Keras loss `fn` (fusednn::LossFn) of pred against target; its gradient w.r.t. pred goes to grad when "
      "given. param: Huber's delta, or (param, alpha, label_smoothing, flags) for the focal losses.");
  m.def(
      "xent",
      [](const py::object& z_, const py::object& t_, int kind, float scale, const py::object& grad_,
         const py::object& out_) {
        if (!fusednn::xent_kind_is_valid(kind))
          throw py::value_error("unknown cross-entropy kind " + std::to_string(kind) +
                                " (0=sigmoid_binary, 1=softmax_categorical, 2=softmax_sparse)");
        const auto k = static_cast<fusednn::XentKind>(kind);
        py::array z = as_f32(z_, "logits"), t = as_f32(t_, "target");
        check_ndim(z, "logits", 2);
        // the softmax kernels read each row's first logit (its running max): a row
        // needs at least one class
        if (z.shape(0) > 0 && z.shape(1) == 0)
          throw py::value_error("logits must have at least one column (class), got shape " + shape_of(z));
        if (k == fusednn::XentKind::softmax_sparse) {
          if (t.size() != z.shape(0) || t.ndim() > 2 || (t.ndim() == 2 && t.shape(1) != 1))
            throw py::value_error("sparse targets must hold one class index per row: logits have shape " +
                                  shape_of(z) + ", target has shape " + shape_of(t));
        } else {
          check_same_shape(z, "logits", t, "target");
        }
        float* g = nullptr;
        py::array grad;
        if (!grad_.is_none()) {
          grad = out_or_new(grad_, shape_vec(z));
          check_no_overlap(grad, t, "target", "grad");
          check_no_overlap(grad, z, "logits", "grad");
          g = fptr(grad);
        }
        float* o = nullptr;
        py::array out;
        if (!out_.is_none()) {
          out = as_f32(out_, "out", true);
          if (out.size() != 1) throw py::value_error("xent: out must hold exactly one element, got shape " + shape_of(out));
          o = fptr(out);
        }
        const float *pz = cfptr(z), *pt = cfptr(t);
        const std::size_t rows = std::size_t(z.shape(0)), cols = std::size_t(z.shape(1));
        double r;
        {
          py::gil_scoped_release nogil;
          r = cpu::xent(g, pz, pt, rows, cols, k, scale);
        }
        if (o) *o = float(r);
        return r;
      },
      py::arg("logits"), py::arg("target"), py::arg("kind"), py::arg("scale") = 1.0f,
      py::arg("grad") = py::none(), py::arg("out") = py::none(),
      "Cross-entropy on logits (mean); writes scale * (act(logits) - target) to grad when given.");
  m.def(
      "confusion_update",
      [](const py::object& counts_, const py::object& p_, const py::object& t_, int classes, bool sparse,
         float threshold) {
        py::array counts = as_f64_out(counts_, "counts");
        py::array p = as_f32(p_, "pred"), t = as_f32(t_, "target");
        check_ndim(p, "pred", 2);
        if (classes < 2 || counts.size() != py::ssize_t(classes) * classes)
          throw py::value_error("counts must hold classes x classes entries (classes >= 2)");
        const std::size_t rows = std::size_t(p.shape(0)), cols = std::size_t(p.shape(1));
        if (sparse ? t.size() != py::ssize_t(rows) : t.size() != p.size())
          throw py::value_error("target has shape " + shape_of(t) + ", which does not match pred " + shape_of(p));
        if (cols != 1 && cols != std::size_t(classes))
          throw py::value_error("pred has " + std::to_string(cols) + " columns for " + std::to_string(classes) +
                                " classes");
        double* c = static_cast<double*>(counts.mutable_data());
        const float *pp = cfptr(p), *pt = cfptr(t);
        py::gil_scoped_release nogil;
        cpu::confusion_update(c, pp, pt, rows, cols, classes, sparse, threshold);
      },
      py::arg("counts"), py::arg("pred"), py::arg("target"), py::arg("classes"), py::arg("sparse"),
      py::arg("threshold") = 0.5f);
  m.def(
      "error_sums_update",
      [](const py::object& sums_, const py::object& p_, const py::object& t_) {
        py::array sums = as_f64_out(sums_, "sums");
        py::array p = as_f32(p_, "pred"), t = as_f32(t_, "target");
        check_same_shape(p, "pred", t, "target");
        if (sums.size() != 2) throw py::value_error("sums must hold 2 entries");
        double* s = static_cast<double*>(sums.mutable_data());
        const float *pp = cfptr(p), *pt = cfptr(t);
        const std::size_t n = std::size_t(p.size());
        py::gil_scoped_release nogil;
        cpu::error_sums_update(s, pp, pt, n);
      },
      py::arg("sums"), py::arg("pred"), py::arg("target"));

  m.def(
      "affine_warp",
      [](const py::object& img_, const py::object& mats_, float fill, bool bilinear, bool clamp,
         const py::object& out_) {
        py::array img = as_f32(img_, "images");
        check_ndim(img, "images", 4);
        py::array mats = as_f64_in(mats_, "mats");
        if (mats.ndim() != 3 || mats.shape(0) != img.shape(0) || mats.shape(1) != 2 || mats.shape(2) != 3)
          throw py::value_error("mats must have shape (" + std::to_string(img.shape(0)) + ", 2, 3), got " +
                                shape_of(mats));
        py::array out = out_or_new(out_, shape_vec(img));
        check_no_overlap(out, img, "images");
        if (out.size() == 0) return out;  // a zero-sized side: the empty batch, as NumPy gives
        float* o = fptr(out);
        const float* pi = cfptr(img);
        const double* pm = static_cast<const double*>(mats.data());
        const std::size_t n = std::size_t(img.shape(0));
        const int h = to_int_dim(img.shape(1), "height"), w = to_int_dim(img.shape(2), "width"),
                  c = to_int_dim(img.shape(3), "channels");
        {
          py::gil_scoped_release nogil;
          cpu::affine_warp(o, pi, pm, n, h, w, c, fill, bilinear, clamp);
        }
        return out;
      },
      py::arg("images"), py::arg("mats"), py::arg("fill") = 0.0f, py::arg("bilinear") = true,
      py::arg("clamp") = false, py::arg("out") = py::none(),
      "Resample each image (n, h, w, c) through its 2x3 affine map from output to source pixel.");

  m.def(
      "mse",
      [](const py::object& p_, const py::object& t_, const py::object& out_) {
        py::array p = as_f32(p_, "pred"), t = as_f32(t_, "target");
        check_same_shape(p, "pred", t, "target");
        float* o = nullptr;
        py::array out;
        if (!out_.is_none()) {
          out = as_f32(out_, "out", true);
          if (out.size() != 1)
            throw py::value_error("mse: out must hold exactly one element, got shape " + shape_of(out));
          o = fptr(out);
        }
        const float *pp = cfptr(p), *pt = cfptr(t);
        const std::size_t n = std::size_t(p.size());
        py::gil_scoped_release nogil;
        const double r = cpu::mse(pp, pt, n);
        if (o) *o = float(r);
        return r;
      },
      py::arg("pred"), py::arg("target"), py::arg("out") = py::none(),
      "mean((pred - target)**2), accumulated in float64; also stored in out[0] when given.");
  m.def(
      "mse_grad",
      [](const py::object& p_, const py::object& t_, float scale, const py::object& out_) {
        py::array p = as_f32(p_, "pred"), t = as_f32(t_, "target");
        check_same_shape(p, "pred", t, "target");
        py::array out = out_or_new(out_, shape_vec(p));
        check_in_place_or_apart(out, p, "pred");
        check_in_place_or_apart(out, t, "target");
        float* g = fptr(out);
        const float *pp = cfptr(p), *pt = cfptr(t);
        const std::size_t n = std::size_t(p.size());
        {
          py::gil_scoped_release nogil;
          cpu::mse_grad(g, pp, pt, n, scale);
        }
        return out;
      },
      py::arg("pred"), py::arg("target"), py::arg("scale"), py::arg("out") = py::none(),
      "scale * (pred - target); scale = 2/N gives d mse / d pred.");

  m.def(
      "sum_rows",
      [](const py::object& x_, const py::object& out_) {
        py::array x = as_f32(x_, "x");
        check_ndim(x, "x", 2);
        py::array out = out_or_new(out_, {x.shape(1)});
        check_no_overlap(out, x, "x");
        float* o = fptr(out);
        const float* px = cfptr(x);
        const std::size_t rows = std::size_t(x.shape(0)), cols = std::size_t(x.shape(1));
        {
          py::gil_scoped_release nogil;
          cpu::sum_rows(o, px, rows, cols);
        }
        return out;
      },
      py::arg("x"), py::arg("out") = py::none(), "x.sum(axis=0) (the bias gradient).");

  m.def(
      "sgd_update",
      [](const py::object& w_, const py::object& g_, const py::object& v_, float lr, float momentum,
         bool nesterov) {
        py::array w = as_f32(w_, "param", true), g = as_f32(g_, "grad");
        check_same_shape(w, "param", g, "grad");
        check_no_overlap(w, g, "grad", "param");
        float* pv = nullptr;
        py::array v;
        if (!v_.is_none()) {
          v = as_f32(v_, "velocity", true);
          check_same_shape(w, "param", v, "velocity");
          check_no_overlap(w, v, "velocity", "param");
          check_no_overlap(v, g, "grad", "velocity");
          pv = fptr(v);
        } else if (momentum != 0.f) {
          throw py::value_error("sgd_update: momentum != 0 needs a velocity array");
        }
        float* pw = fptr(w);
        const float* pg = cfptr(g);
        const std::size_t n = std::size_t(w.size());
        py::gil_scoped_release nogil;
        cpu::sgd_update(pw, pg, pv, n, lr, momentum, nesterov);
      },
      py::arg("param"), py::arg("grad"), py::arg("velocity"), py::arg("learning_rate"),
      py::arg("momentum"), py::arg("nesterov"));
  m.def(
      "adam_update",
      [](const py::object& w_, const py::object& g_, const py::object& m_, const py::object& v_,
         float lr, float b1, float b2, float eps, std::int64_t step) {
        py::array w = as_f32(w_, "param", true), g = as_f32(g_, "grad");
        py::array mm = as_f32(m_, "m", true), v = as_f32(v_, "v", true);
        check_same_shape(w, "param", g, "grad");
        check_same_shape(w, "param", mm, "m");
        check_same_shape(w, "param", v, "v");
        check_no_overlap(w, g, "grad", "param");
        check_no_overlap(w, mm, "m", "param");
        check_no_overlap(w, v, "v", "param");
        check_no_overlap(mm, v, "v", "m");
        check_no_overlap(mm, g, "grad", "m");
        check_no_overlap(v, g, "grad", "v");
        if (step < 1) throw py::value_error("adam_update: step must be >= 1, got " + std::to_string(step));
        float *pw = fptr(w), *pm = fptr(mm), *pv = fptr(v);
        const float* pg = cfptr(g);
        const std::size_t n = std::size_t(w.size());
        py::gil_scoped_release nogil;
        cpu::adam_update(pw, pg, pm, pv, n, lr, b1, b2, eps, step);
      },
      py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"), py::arg("learning_rate"),
      py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"), py::arg("step"));

  m.def(
      "regularize",
      [](const py::object& w_, const py::object& g_, float l1, float l2, const py::object& loss_) {
        py::array w = as_f32(w_, "param"), g = as_f32(g_, "grad", true);
        check_same_shape(w, "param", g, "grad");
        check_no_overlap(g, w, "param");
        py::array loss;
        float* lo = penalty_slot(loss_, loss, "regularize");
        float* pg = fptr(g);
        const float* pw = cfptr(w);
        const std::size_t n = std::size_t(w.size());
        py::gil_scoped_release nogil;
        cpu::regularize(pg, pw, n, l1, l2, lo);
      },
      py::arg("param"), py::arg("grad"), py::arg("l1"), py::arg("l2"), py::arg("loss") = py::none(),
      "Keras' L1/L2 penalty in place: grad += l1*sign(param) + 2*l2*param; loss[0] += "
      "sum(l1*|param| + l2*param**2) (float64 sum) when loss is given.");

  m.def(
      "weighted_sum_regularize",
      [](const py::object& w_, const py::object& g_, const py::object& g0_, const py::object& g1_, float c0, float c1,
         float l1, float l2, const py::object& loss_) {
        py::array w = as_f32(w_, "param"), g = as_f32(g_, "grad", true);
        py::array g0 = as_f32(g0_, "grad0"), g1 = as_f32(g1_, "grad1");
        check_same_shape(w, "param", g, "grad");
        check_same_shape(w, "param", g0, "grad0");
        check_same_shape(w, "param", g1, "grad1");
        check_no_overlap(g, w, "param");
        py::array loss;
        float* lo = penalty_slot(loss_, loss, "weighted_sum_regularize");
        float* pg = fptr(g);
        const float *pw = cfptr(w), *p0 = cfptr(g0), *p1 = cfptr(g1);
        // element i reads g0[i] and g1[i] before writing g[i]: g may be either one, not a shifted view
        for (const float* p : {p0, p1})
          if (p != pg && p < pg + w.size() && pg < p + w.size())
            throw py::value_error("weighted_sum_regularize: grad overlaps grad0 or grad1 without being it");
        const std::size_t n = std::size_t(w.size());
        py::gil_scoped_release nogil;
        cpu::weighted_sum_regularize(pg, p0, p1, c0, c1, pw, n, l1, l2, lo);
      },
      py::arg("param"), py::arg("grad"), py::arg("grad0"), py::arg("grad1"), py::arg("c0"), py::arg("c1"),
      py::arg("l1"), py::arg("l2"), py::arg("loss") = py::none(),
      "The replicas' update (fusednn/cpu_replicas.h): grad = c0*grad0 + c1*grad1 (float32 products), then "
      "regularize's penalty on it (grad may be grad0 or grad1).");

  register_trainer(m);
  register_layer_kernels(m);
  register_optim(m);
  register_metric_kernels(m);
  register_steps_more_kernels(m);
  register_shuffle(m);
  register_merge_kernels(m);

  m.def("num_threads", &cpu::num_threads);
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("n"));
  m.def("simd_path", &cpu::simd_path);
  m.def("force_portable", &cpu::force_portable, py::arg("on"),
        "Use the portable (non-AVX2) kernels even where AVX2 is available (for tests).");
  m.def("cpu_features", []() {
    const cpu::Features& f = cpu::features();
    py::dict d;
    d["avx2"] = f.avx2;
    d["fma"] = f.fma;
    return d;
  });
}
