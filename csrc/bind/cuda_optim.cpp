// fusednn._cuda.optimizer_update: every Keras optimizer's update
// (fusednn/optim_update.h) on CuPy arrays, queued on the caller's stream, for
// the per-op training path and fusednn.ops.optimizer_update.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda_checks.h"
#include "fusednn/cuda.h"

namespace py = pybind11;
using namespace fusednn;
using namespace fusednn::cuda_bind;

void register_optim(py::module_& m) {
  m.def(
      "optimizer_update",
      [](int kind, int flags, const py::object& p_, const py::object& w_, const py::object& g_,
         const py::object& s1_, const py::object& s2_, const py::object& s3_, const py::object& ema_,
         double sumsq, std::uintptr_t stream) {
        if (kind < 0 || kind >= kOptKinds) throw py::value_error("unknown optimizer kind " + std::to_string(kind));
        if (flags & ~optf::all) throw py::value_error("unknown optimizer flags " + std::to_string(flags));
        if (!py::isinstance<py::array>(p_)) throw py::type_error("step_params must be a float32 numpy.ndarray");
        const py::array p = py::reinterpret_borrow<py::array>(p_);
        if (!p.dtype().is(py::dtype::of<float>()) || !(p.flags() & py::array::c_style) || p.ndim() != 1 ||
            p.shape(0) != kOptParams)
          throw py::value_error("step_params must be a C-contiguous float32 array of " +
                                std::to_string(kOptParams) + " floats");
        OptStep step;
        for (int k = 0; k < kOptParams; ++k) step.p[k] = static_cast<const float*>(p.data())[k];
        const DevArray w = as_dev(w_, "param", true), g = as_dev(g_, "grad");
        check_same_shape(w, "param", g, "grad");
        check_no_overlap(w, "param", g, "grad");
        bool use[4];
        opt_state_use(static_cast<OptKind>(kind), flags, &use[0], &use[1], &use[2]);
        use[3] = (flags & optf::ema) != 0;
        const py::object* objs[4] = {&s1_, &s2_, &s3_, &ema_};
        const char* names[4] = {"s1", "s2", "s3", "ema"};
        std::vector<std::pair<DevArray, const char*>> kept{{w, "param"}, {g, "grad"}};
        float* ptr[4] = {nullptr, nullptr, nullptr, nullptr};
        for (int k = 0; k < 4; ++k) {
          if (!use[k]) continue;
          if (objs[k]->is_none())
            throw py::value_error(std::string("optimizer_update: this optimizer needs state array ") + names[k]);
          const DevArray a = as_dev(*objs[k], names[k], true);
          check_same_shape(w, "param", a, names[k]);
          for (const auto& [o, on] : kept) check_no_overlap(a, names[k], o, on);
          kept.emplace_back(a, names[k]);
          ptr[k] = fptr(a);
        }
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::optimizer_update(static_cast<OptKind>(kind), flags, step, fptr(w), fptr(g), ptr[0], ptr[1],
                                   ptr[2], ptr[3], w.size, sumsq, nullptr, as_stream(stream));
        }
        check_launch(e, "optimizer_update");
      },
      py::arg("kind"), py::arg("flags"), py::arg("step_params"), py::arg("param"), py::arg("grad"),
      py::arg("s1") = py::none(), py::arg("s2") = py::none(), py::arg("s3") = py::none(),
      py::arg("ema") = py::none(), py::arg("sumsq") = 0.0, py::arg("stream") = 0,
      "In-place update of param and its state by Keras' rule for `kind` (fusednn/optim_update.h).");
}
