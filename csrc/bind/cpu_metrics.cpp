// _cpu.metric_update and _cpu.weighted_loss_fn: the per-op path's Keras metric
// objects and weighted LossFn losses (the kernels the fused trainer runs).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "checks.h"
#include "fusednn/cpu.h"
#include "metric_specs.h"

namespace py = pybind11;
using namespace fusednn;
using namespace fusednn::bind;

namespace {

// The (rows,) float32 sample weights of a batch, or null.
const float* row_weights(const py::object& w_, py::ssize_t rows, py::array& keep) {
  if (w_.is_none()) return nullptr;
  keep = as_f32(w_, "weights");
  if (keep.ndim() != 1 || keep.shape(0) != rows)
    throw py::value_error("weights has shape " + shape_of(keep) + ", expected (" + std::to_string(rows) + ",)");
  return cfptr(keep);
}

}  // namespace

void register_metric_kernels(py::module_& m) {
  m.def(
      "metric_update",
      [](const py::dict& spec, const py::object& p_, const py::object& t_, const py::object& w_) {
        py::array p = as_f32(p_, "pred"), t = as_f32(t_, "target"), w;
        check_ndim(p, "pred", 2);
        check_ndim(t, "target", 2);
        if (t.shape(0) != p.shape(0))
          throw py::value_error("target has shape " + shape_of(t) + " for pred " + shape_of(p));
        std::vector<py::array> kept;
        const auto f64 = [&](const py::handle& h, const std::string& name, bool writeable) {
          kept.push_back(writeable ? as_f64_out(py::reinterpret_borrow<py::object>(h), name.c_str())
                                   : as_f64_in(py::reinterpret_borrow<py::object>(h), name.c_str()));
          return std::make_pair(static_cast<double*>(const_cast<void*>(kept.back().data())),
                                std::size_t(kept.back().size()));
        };
        const auto host = [](const std::pair<double*, std::size_t>& a) {
          return std::vector<double>(a.first, a.first + a.second);
        };
        const MetricSpec s = bind_common::to_metric_spec(spec, long(p.shape(1)), long(t.shape(1)), "", f64, host);
        const float* pw = row_weights(w_, p.shape(0), w);
        const float *pp = cfptr(p), *pt = cfptr(t);
        const std::size_t rows = std::size_t(p.shape(0)), cols = std::size_t(p.shape(1));
        py::gil_scoped_release nogil;
        cpu::metric_update(s, pp, pt, pw, rows, cols);
      },
      py::arg("spec"), py::arg("pred"), py::arg("target"), py::arg("weights") = py::none(),
      "Add a batch to a Keras metric object's float64 accumulators (fusednn/metric_math.h).");
  m.def(
      "weighted_loss_fn",
      [](const py::object& p_, const py::object& t_, const py::object& w_, int fn, const py::object& param_) {
        py::array p = as_f32(p_, "pred"), t = as_f32(t_, "target"), w;
        check_ndim(p, "pred", 2);
        check_same_shape(p, "pred", t, "target");
        if (!loss_fn_is_valid(fn)) throw py::value_error("unknown loss code " + std::to_string(fn));
        const LossParams param = bind_common::to_loss_params(param_);
        if (w_.is_none()) throw py::value_error("weights is required");
        const float* pw = row_weights(w_, p.shape(0), w);
        const float *pp = cfptr(p), *pt = cfptr(t);
        const std::size_t rows = std::size_t(p.shape(0)), cols = std::size_t(p.shape(1));
        py::gil_scoped_release nogil;
        return cpu::weighted_loss_fn(pp, pt, pw, rows, cols, static_cast<LossFn>(fn), param);
      },
      py::arg("pred"), py::arg("target"), py::arg("weights"), py::arg("fn"), py::arg("param") = 0.0f,
      "sum_r w[r] * loss(row r) / rows for a LossFn loss (Keras' weighted sum_over_batch_size); param as for "
      "loss_grad.");
}
