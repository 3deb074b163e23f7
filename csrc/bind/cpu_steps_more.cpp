// fusednn._cpu bindings of the parameterised activation and Gaussian noise kernels
// (fusednn/cpu_steps_more.h) for the per-op path: every array and parameter is
// checked here before a kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "checks.h"
#include "fusednn/cpu_steps_more.h"

namespace py = pybind11;
using namespace fusednn;
using namespace fusednn::bind;

namespace {
ActParam act_param_of(int kind, float slope, float alpha, const py::object& max_value, float threshold,
                      const char* where) {
  const bool has_max = !max_value.is_none();
  return make_act_param(kind, slope, alpha, has_max ? max_value.cast<float>() : 0.f, has_max, threshold,
                        std::string(where) + ": ");
}
}  // namespace

void register_steps_more_kernels(py::module_& m) {
  m.def(
      "act_param_forward",
      [](const py::object& x_, const py::object& y_, int kind, float slope, float alpha, const py::object& max_value,
         float threshold) {
        const ActParam a = act_param_of(kind, slope, alpha, max_value, threshold, "act_param_forward");
        py::array x = as_f32(x_, "x"), y = as_f32(y_, "y", true);
        check_same_shape(x, "x", y, "y");
        check_in_place_or_apart(y, x, "x");
        const float* px = cfptr(x);
        float* py_ = fptr(y);
        const std::int64_t n = x.size();
        py::gil_scoped_release nogil;
        cpu::act_param_forward(py_, px, n, a);
      },
      py::arg("x"), py::arg("y"), py::arg("kind"), py::arg("slope") = 0.f, py::arg("alpha") = 1.f,
      py::arg("max_value") = py::none(), py::arg("threshold") = 0.f,
      "The parameterised activation (kind 0: ReLU/LeakyReLU with slope, max_value, threshold; 1: ELU with alpha).");
  m.def(
      "act_param_backward",
      [](const py::object& dy_, const py::object& x_, const py::object& y_, const py::object& dx_, int kind,
         float slope, float alpha, const py::object& max_value, float threshold) {
        const ActParam a = act_param_of(kind, slope, alpha, max_value, threshold, "act_param_backward");
        py::array dy = as_f32(dy_, "dy"), x = as_f32(x_, "x"), y = as_f32(y_, "y"), dx = as_f32(dx_, "dx", true);
        check_same_shape(dy, "dy", x, "x");
        check_same_shape(dy, "dy", y, "y");
        check_same_shape(dy, "dy", dx, "dx");
        check_in_place_or_apart(dx, dy, "dy");
        check_no_overlap(dx, x, "x");
        check_no_overlap(dx, y, "y");
        const float *pdy = cfptr(dy), *px = cfptr(x), *pyv = cfptr(y);
        float* pdx = fptr(dx);
        const std::int64_t n = dy.size();
        py::gil_scoped_release nogil;
        cpu::act_param_backward(pdx, pdy, px, pyv, n, a);
      },
      py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("dx"), py::arg("kind"), py::arg("slope") = 0.f,
      py::arg("alpha") = 1.f, py::arg("max_value") = py::none(), py::arg("threshold") = 0.f,
      "dx = dy * f'(x) of act_param_forward (from its input x and output y).");
  m.def(
      "gaussian_factor",
      [](const py::object& m_, std::uint64_t seed, std::uint64_t step, float scale, bool add_one) {
        if (!std::isfinite(scale) || scale < 0.f)
          throw py::value_error("gaussian_factor: scale must be a finite number >= 0");
        py::array mm = as_f32(m_, "m", true);
        check_ndim(mm, "m", 2);
        const std::int64_t rows = mm.shape(0), cols = mm.shape(1);
        float* pm = fptr(mm);
        py::gil_scoped_release nogil;
        cpu::gaussian_factor(pm, rows, cols, seed, step, scale, add_one);
      },
      py::arg("m"), py::arg("seed"), py::arg("step"), py::arg("scale"), py::arg("add_one"),
      "m = scale * z (+ 1 with add_one), z the Philox Box-Muller normals of layers/philox.py's normal().");
}
