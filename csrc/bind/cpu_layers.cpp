// fusednn._cpu bindings of the Dropout and BatchNormalization kernels
// (fusednn/cpu_layers.h) for the per-op path. Every array is checked here
// (dtype, contiguity, shape, writeability, overlap) before a kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "checks.h"
#include "fusednn/cpu_layers.h"

namespace py = pybind11;
using namespace fusednn;
using namespace fusednn::bind;

namespace {

// A 2-D float32 array's (rows, cols).
std::pair<std::int64_t, std::int64_t> dims2(const py::array& a, const char* name) {
  check_ndim(a, name, 2);
  return {a.shape(0), a.shape(1)};
}

void check_len(const py::array& a, const char* name, std::int64_t n) {
  if (a.ndim() != 1 || a.shape(0) != n)
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(n) + ",), got " + shape_of(a));
}

// An optional per-column vector: nullptr for None.
float* opt_vec(const py::object& o, const char* name, std::int64_t n, bool writeable, py::array& keep) {
  if (o.is_none()) return nullptr;
  keep = as_f32(o, name, writeable);
  check_len(keep, name, n);
  return fptr(keep);
}

}  // namespace

void register_layer_kernels(py::module_& m) {
  m.def(
      "dropout_mask",
      [](const py::object& out_, float rate, std::uint64_t seed, std::uint64_t step, bool row_b, bool col_b) {
        if (!(rate >= 0.f && rate < 1.f)) throw py::value_error("dropout rate must be in [0, 1), got " + std::to_string(rate));
        py::array out = as_f32(out_, "mask", true);
        auto [rows, cols] = dims2(out, "mask");
        float* p = fptr(out);
        py::gil_scoped_release nogil;
        cpu::dropout_mask(p, rows, cols, rate, seed, step, row_b, col_b);
      },
      py::arg("mask"), py::arg("rate"), py::arg("seed"), py::arg("step"), py::arg("row_b") = false,
      py::arg("col_b") = false,
      "Inverted dropout's mask (1/(1-rate) or 0) into a 2-D float32 array, drawn with Philox4x32-10 "
      "(fusednn/philox.h) for (seed, step); row_b/col_b share the draw across rows/columns.");
  m.def(
      "mul",
      [](const py::object& a_, const py::object& b_, const py::object& out_) {
        py::array a = as_f32(a_, "a"), b = as_f32(b_, "b"), out = as_f32(out_, "out", true);
        check_same_shape(a, "a", b, "b");
        check_same_shape(a, "a", out, "out");
        const float *pa = cfptr(a), *pb = cfptr(b);
        float* po = fptr(out);
        const std::size_t n = std::size_t(a.size());
        py::gil_scoped_release nogil;
        cpu::mul(po, pa, pb, n);
      },
      py::arg("a"), py::arg("b"), py::arg("out"), "out = a * b elementwise (same shapes; out may alias a or b).");
  m.def(
      "batchnorm_train",
      [](const py::object& x_, const py::object& gamma_, const py::object& beta_, float eps,
         const py::object& mm_, const py::object& mv_, float momentum, const py::object& y_,
         const py::object& xhat_, const py::object& invstd_) {
        py::array x = as_f32(x_, "x"), y = as_f32(y_, "y", true), xhat = as_f32(xhat_, "xhat", true),
                  invstd = as_f32(invstd_, "invstd", true);
        auto [rows, cols] = dims2(x, "x");
        if (rows < 1) throw py::value_error("batchnorm_train needs at least one row");
        check_same_shape(x, "x", y, "y");
        check_same_shape(x, "x", xhat, "xhat");
        check_no_overlap(xhat, x, "x");
        check_len(invstd, "invstd", cols);
        py::array g, b, mm, mv;
        const float* pg = opt_vec(gamma_, "gamma", cols, false, g);
        const float* pb = opt_vec(beta_, "beta", cols, false, b);
        float* pmm = opt_vec(mm_, "moving_mean", cols, true, mm);
        float* pmv = opt_vec(mv_, "moving_variance", cols, true, mv);
        float *py_ = fptr(y), *ph = fptr(xhat), *pi = fptr(invstd);
        const float* px = cfptr(x);
        py::gil_scoped_release nogil;
        cpu::batchnorm_train(py_, ph, pi, px, pg, pb, rows, cols, eps, pmm, pmv, momentum);
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("epsilon"), py::arg("moving_mean"),
      py::arg("moving_variance"), py::arg("momentum"), py::arg("y"), py::arg("xhat"), py::arg("invstd"),
      "Batch normalisation of (rows, cols) x in training: batch statistics per column (biased "
      "variance), y = gamma*xhat + beta, xhat and invstd kept for the backward pass, moving "
      "statistics updated as moving*momentum + batch*(1-momentum).");
  m.def(
      "batchnorm_backward",
      [](const py::object& dy_, const py::object& xhat_, const py::object& invstd_, const py::object& gamma_,
         const py::object& dx_, const py::object& dgamma_, const py::object& dbeta_) {
        py::array dy = as_f32(dy_, "dy"), xhat = as_f32(xhat_, "xhat"), invstd = as_f32(invstd_, "invstd"),
                  dx = as_f32(dx_, "dx", true);
        auto [rows, cols] = dims2(dy, "dy");
        check_same_shape(dy, "dy", xhat, "xhat");
        check_same_shape(dy, "dy", dx, "dx");
        check_no_overlap(dx, xhat, "xhat");
        check_len(invstd, "invstd", cols);
        py::array g, dg, db;
        const float* pg = opt_vec(gamma_, "gamma", cols, false, g);
        float* pdg = opt_vec(dgamma_, "dgamma", cols, true, dg);
        float* pdb = opt_vec(dbeta_, "dbeta", cols, true, db);
        float* pdx = fptr(dx);
        const float *pdy = cfptr(dy), *ph = cfptr(xhat), *pi = cfptr(invstd);
        if (pdx == pdy) throw py::value_error("batchnorm_backward: dx must not alias dy");
        py::gil_scoped_release nogil;
        cpu::batchnorm_backward(pdx, pdg, pdb, pdy, ph, pi, pg, rows, cols);
      },
      py::arg("dy"), py::arg("xhat"), py::arg("invstd"), py::arg("gamma"), py::arg("dx"), py::arg("dgamma"),
      py::arg("dbeta"), "Gradients of batchnorm_train: dx, and dgamma/dbeta when given.");
  m.def(
      "batchnorm_infer",
      [](const py::object& x_, const py::object& gamma_, const py::object& beta_, const py::object& mean_,
         const py::object& var_, float eps, const py::object& y_) {
        py::array x = as_f32(x_, "x"), y = as_f32(y_, "y", true), mean = as_f32(mean_, "mean"),
                  var = as_f32(var_, "variance");
        auto [rows, cols] = dims2(x, "x");
        check_same_shape(x, "x", y, "y");
        check_len(mean, "mean", cols);
        check_len(var, "variance", cols);
        py::array g, b;
        const float* pg = opt_vec(gamma_, "gamma", cols, false, g);
        const float* pb = opt_vec(beta_, "beta", cols, false, b);
        const float *px = cfptr(x), *pm = cfptr(mean), *pv = cfptr(var);
        float* py_ = fptr(y);
        py::gil_scoped_release nogil;
        cpu::batchnorm_infer(py_, px, pg, pb, pm, pv, rows, cols, eps);
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("mean"), py::arg("variance"), py::arg("epsilon"),
      py::arg("y"), "Batch normalisation with given statistics: (x - mean)/sqrt(variance + eps)*gamma + beta.");
  m.def(
      "layernorm_forward",
      [](const py::object& x_, const py::object& gamma_, const py::object& beta_, float eps, const py::object& y_,
         const py::object& xhat_, const py::object& invstd_) {
        if (!(eps > 0.f)) throw py::value_error("layernorm_forward: epsilon must be > 0");
        py::array x = as_f32(x_, "x"), y = as_f32(y_, "y", true), xhat = as_f32(xhat_, "xhat", true),
                  invstd = as_f32(invstd_, "invstd", true);
        auto [rows, cols] = dims2(x, "x");
        if (cols < 1) throw py::value_error("layernorm_forward needs at least one column");
        check_same_shape(x, "x", y, "y");
        check_same_shape(x, "x", xhat, "xhat");
        check_no_overlap(xhat, x, "x", "xhat");
        check_no_overlap(xhat, y, "y", "xhat");
        check_in_place_or_apart(y, x, "x");
        check_len(invstd, "invstd", rows);
        for (const py::array* a : {&x, &y, &xhat}) check_no_overlap(invstd, *a, "x/y/xhat", "invstd");
        py::array g, b;
        const float* pg = opt_vec(gamma_, "gamma", cols, false, g);
        const float* pb = opt_vec(beta_, "beta", cols, false, b);
        float *py_ = fptr(y), *ph = fptr(xhat), *pi = fptr(invstd);
        const float* px = cfptr(x);
        py::gil_scoped_release nogil;
        cpu::layernorm_forward(py_, ph, pi, px, pg, pb, rows, cols, eps);
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("epsilon"), py::arg("y"), py::arg("xhat"),
      py::arg("invstd"),
      "Layer normalisation of (rows, cols) x, each row over its columns (biased variance, statistics in "
      "double): y = gamma*xhat + beta (gamma/beta None: 1/0), xhat and invstd (rows,) kept for the backward "
      "pass. y may alias x.");
  m.def(
      "layernorm_backward",
      [](const py::object& dy_, const py::object& xhat_, const py::object& invstd_, const py::object& gamma_,
         const py::object& dx_, const py::object& dgamma_, const py::object& dbeta_) {
        py::array dy = as_f32(dy_, "dy"), xhat = as_f32(xhat_, "xhat"), invstd = as_f32(invstd_, "invstd");
        auto [rows, cols] = dims2(dy, "dy");
        check_same_shape(dy, "dy", xhat, "xhat");
        check_len(invstd, "invstd", rows);
        py::array dx, g, dg, db;
        float* pdx = nullptr;
        if (!dx_.is_none()) {
          dx = as_f32(dx_, "dx", true);
          check_same_shape(dy, "dy", dx, "dx");
          check_no_overlap(dx, xhat, "xhat", "dx");
          check_no_overlap(dx, dy, "dy", "dx");
          pdx = fptr(dx);
        }
        const float* pg = opt_vec(gamma_, "gamma", cols, false, g);
        float* pdg = opt_vec(dgamma_, "dgamma", cols, true, dg);
        float* pdb = opt_vec(dbeta_, "dbeta", cols, true, db);
        const float *pdy = cfptr(dy), *ph = cfptr(xhat), *pi = cfptr(invstd);
        py::gil_scoped_release nogil;
        cpu::layernorm_backward(pdx, pdg, pdb, pdy, ph, pi, pg, rows, cols);
      },
      py::arg("dy"), py::arg("xhat"), py::arg("invstd"), py::arg("gamma"), py::arg("dx"), py::arg("dgamma"),
      py::arg("dbeta"), "Gradients of layernorm_forward: dx (None: skipped), and dgamma/dbeta when given.");
  m.def(
      "prelu_forward",
      [](const py::object& x_, const py::object& alpha_, const py::object& y_) {
        py::array x = as_f32(x_, "x"), alpha = as_f32(alpha_, "alpha"), y = as_f32(y_, "y", true);
        auto [rows, cols] = dims2(x, "x");
        check_same_shape(x, "x", y, "y");
        if (alpha.ndim() != 1 || (alpha.shape(0) != 1 && alpha.shape(0) != cols))
          throw py::value_error("prelu_forward: alpha must hold 1 or " + std::to_string(cols) + " values, got shape " +
                                shape_of(alpha));
        const std::int64_t an = alpha.shape(0);
        const float *px = cfptr(x), *pa = cfptr(alpha);
        float* py_ = fptr(y);
        py::gil_scoped_release nogil;
        cpu::prelu_forward(py_, px, pa, rows, cols, an);
      },
      py::arg("x"), py::arg("alpha"), py::arg("y"), "PReLU: y = x if x > 0 else alpha * x (alpha per column or one).");
  m.def(
      "prelu_backward",
      [](const py::object& dy_, const py::object& x_, const py::object& alpha_, const py::object& dx_,
         const py::object& dalpha_) {
        py::array dy = as_f32(dy_, "dy"), x = as_f32(x_, "x"), alpha = as_f32(alpha_, "alpha"),
                  dx = as_f32(dx_, "dx", true), da = as_f32(dalpha_, "dalpha", true);
        auto [rows, cols] = dims2(dy, "dy");
        check_same_shape(dy, "dy", x, "x");
        check_same_shape(dy, "dy", dx, "dx");
        check_same_shape(alpha, "alpha", da, "dalpha");
        if (alpha.ndim() != 1 || (alpha.shape(0) != 1 && alpha.shape(0) != cols))
          throw py::value_error("prelu_backward: alpha must hold 1 or " + std::to_string(cols) + " values, got shape " +
                                shape_of(alpha));
        check_no_overlap(dx, x, "x");
        check_no_overlap(dx, dy, "dy");
        check_no_overlap(da, dy, "dy");
        check_no_overlap(da, dx, "dx");
        const std::int64_t an = alpha.shape(0);
        const float *pdy = cfptr(dy), *px = cfptr(x), *pa = cfptr(alpha);
        float *pdx = fptr(dx), *pda = fptr(da);
        py::gil_scoped_release nogil;
        cpu::prelu_backward(pdx, pda, pdy, px, pa, rows, cols, an);
      },
      py::arg("dy"), py::arg("x"), py::arg("alpha"), py::arg("dx"), py::arg("dalpha"),
      "PReLU's gradients: dx = dy * (1 | alpha | 0 at x > 0 | < 0 | == 0), dalpha = sum dy * min(x, 0) (double).");
}
