// fusednn._cpu.optimizer_update / sum_squares: every Keras optimizer's update
// (fusednn/optim_update.h) on NumPy arrays, for the per-op training path and
// fusednn.ops.optimizer_update.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "checks.h"
#include "fusednn/cpu.h"

namespace py = pybind11;
using namespace fusednn;
using namespace fusednn::bind;

void register_optim(py::module_& m) {
  m.def(
      "optimizer_update",
      [](int kind, int flags, const py::object& p_, const py::object& w_, const py::object& g_,
         const py::object& s1_, const py::object& s2_, const py::object& s3_, const py::object& ema_,
         double sumsq) {
        if (kind < 0 || kind >= kOptKinds) throw py::value_error("unknown optimizer kind " + std::to_string(kind));
        if (flags & ~optf::all) throw py::value_error("unknown optimizer flags " + std::to_string(flags));
        py::array p = as_f32(p_, "step_params");
        if (p.ndim() != 1 || p.shape(0) != kOptParams)
          throw py::value_error("step_params must hold " + std::to_string(kOptParams) + " floats, got shape " +
                                shape_of(p));
        py::array w = as_f32(w_, "param", true), g = as_f32(g_, "grad");
        check_same_shape(w, "param", g, "grad");
        check_no_overlap(w, g, "grad");
        bool use[4];
        opt_state_use(static_cast<OptKind>(kind), flags, &use[0], &use[1], &use[2]);
        use[3] = (flags & optf::ema) != 0;
        const py::object* objs[4] = {&s1_, &s2_, &s3_, &ema_};
        const char* names[4] = {"s1", "s2", "s3", "ema"};
        std::vector<py::array> kept{w, g};
        float* ptr[4] = {nullptr, nullptr, nullptr, nullptr};
        for (int k = 0; k < 4; ++k) {
          if (!use[k]) continue;
          if (objs[k]->is_none())
            throw py::value_error(std::string("optimizer_update: this optimizer needs state array ") + names[k]);
          py::array a = as_f32(*objs[k], names[k], true);
          check_same_shape(w, "param", a, names[k]);
          for (const py::array& o : kept) check_no_overlap(o, a, names[k]);
          kept.push_back(a);
          ptr[k] = fptr(a);
        }
        float* pw = fptr(w);
        const float* pg = cfptr(g);
        const float* pp = cfptr(p);
        const std::size_t n = std::size_t(w.size());
        py::gil_scoped_release nogil;
        cpu::optimizer_update(static_cast<OptKind>(kind), flags, pp, pw, pg, ptr[0], ptr[1], ptr[2], ptr[3], n,
                              sumsq);
      },
      py::arg("kind"), py::arg("flags"), py::arg("step_params"), py::arg("param"), py::arg("grad"),
      py::arg("s1") = py::none(), py::arg("s2") = py::none(), py::arg("s3") = py::none(),
      py::arg("ema") = py::none(), py::arg("sumsq") = 0.0,
      "In-place update of param and its state by Keras' rule for `kind` (fusednn/optim_update.h).");
  m.def(
      "sum_squares",
      [](const py::object& x_) {
        py::array x = as_f32(x_, "x");
        const float* px = cfptr(x);
        const std::size_t n = std::size_t(x.size());
        py::gil_scoped_release nogil;
        return cpu::sum_squares(px, n);
      },
      py::arg("x"), "sum(x**2) in double, in order.");
  m.def(
      "constrain",
      [](const py::object& w_, int kind, int axis, float min_value, float max_value, float rate) {
        py::array w = as_f32(w_, "param", true);
        if (w.ndim() != 1 && w.ndim() != 2)
          throw py::value_error("constrain: param must be 1-D or 2-D, got shape " + shape_of(w));
        if (kind < int(ConstraintKind::none) || kind > int(ConstraintKind::min_max_norm))
          throw py::value_error("constrain: unknown constraint kind " + std::to_string(kind) +
                                " (1 max_norm, 2 non_neg, 3 unit_norm, 4 min_max_norm)");
        if (axis < int(ConstraintAxis::rows) || axis > int(ConstraintAxis::all))
          throw py::value_error("constrain: axis code must be 0 (norm per column), 1 (per row) or 2 (all), got " +
                                std::to_string(axis));
        if (!(min_value >= 0.f && max_value >= min_value) || !std::isfinite(max_value) || !std::isfinite(rate))
          throw py::value_error("constrain: need finite 0 <= min_value <= max_value and a finite rate");
        Constraint c;
        c.kind = static_cast<ConstraintKind>(kind);
        c.axis = static_cast<ConstraintAxis>(axis);
        c.min_value = min_value;
        c.max_value = max_value;
        c.rate = rate;
        const std::size_t rows = std::size_t(w.shape(0)), cols = w.ndim() == 2 ? std::size_t(w.shape(1)) : 1;
        float* pw = fptr(w);
        py::gil_scoped_release nogil;
        cpu::constrain(pw, rows, cols, c);
      },
      py::arg("param"), py::arg("kind"), py::arg("axis") = 0, py::arg("min_value") = 0.0f,
      py::arg("max_value") = 0.0f, py::arg("rate") = 1.0f,
      "Project param (1-D: one column) in place onto a Keras weight constraint (fusednn/constraint.h).");
}
