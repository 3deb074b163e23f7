// Data parallelism in MlpTrainer.run (both devices): the per-rank step layout
// (`step_starts`, a host int64 array) and the Python callable that runs between
// each step's gradient and update phases (trainer.h, TrainData::between). The
// native loop runs without the GIL; the hook takes it back only for its call,
// and an exception raised there stops the run and is re-raised by run().
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <exception>
#include <string>

#include "fusednn/trainer.h"

namespace fusednn {
namespace bind {

namespace py = pybind11;

// step_starts: None (one process) or a C-contiguous int64 array of steps + 1 entries,
// starting at 0, non-decreasing, each step at most `batch` rows.
struct ShardSteps {
  py::array array;
  const std::int64_t* starts = nullptr;
  std::int64_t count = 0;  // entries

  ShardSteps(const py::object& obj, int batch) {
    if (obj.is_none()) return;
    if (!py::isinstance<py::array_t<std::int64_t>>(obj))
      throw py::type_error("step_starts must be a numpy.ndarray of int64");
    array = py::reinterpret_borrow<py::array>(obj);
    if (!array.dtype().is(py::dtype::of<std::int64_t>()) || !(array.flags() & py::array::c_style) ||
        array.ndim() != 1 || array.shape(0) < 1)
      throw py::value_error("step_starts must be a non-empty C-contiguous 1-D int64 array");
    starts = static_cast<const std::int64_t*>(array.data());
    count = array.shape(0);
    if (starts[0] != 0) throw py::value_error("step_starts[0] must be 0");
    for (std::int64_t i = 1; i < count; ++i)
      if (starts[i] < starts[i - 1] || starts[i] - starts[i - 1] > batch)
        throw py::value_error("step " + std::to_string(i - 1) + " of step_starts has " +
                              std::to_string(starts[i] - starts[i - 1]) + " rows (0 to " +
                              std::to_string(batch) + " allowed)");
  }
  std::int64_t steps() const { return count - 1; }
  std::int64_t rows() const { return starts[count - 1]; }
};

class StepHook {
 public:
  explicit StepHook(const py::object& fn) : fn_(fn) {
    if (!fn_.is_none() && !PyCallable_Check(fn_.ptr())) throw py::type_error("between must be callable or None");
  }
  void attach(TrainData& data) {
    if (fn_.is_none()) return;
    data.between = &StepHook::call;
    data.between_ctx = this;
  }
  // After the native run (with the GIL held): raise what the hook raised.
  void rethrow() {
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
  static bool call(void* ctx, std::int64_t step, int rows) {
    auto* self = static_cast<StepHook*>(ctx);
    py::gil_scoped_acquire gil;
    try {
      return py::cast<bool>(self->fn_(step, rows));
    } catch (...) {
      self->error_ = std::current_exception();
      return false;
    }
  }
  py::object fn_;
  std::exception_ptr error_;
};

}  // namespace bind
}  // namespace fusednn
