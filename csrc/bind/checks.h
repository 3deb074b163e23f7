// Argument checks of the _cpu binding files: NumPy arrays turned into the shared
// view of array_view.h, whose checks and messages both bindings use.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "array_view.h"
#include "fusednn/activation.h"
#include "trainer_spec.h"

namespace fusednn {
namespace bind {

namespace py = pybind11;

// The shape of a NumPy array, for messages.
inline std::vector<py::ssize_t> shape_vec(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

inline std::string shape_of(const py::array& a) { return bind_common::shape_text(shape_vec(a)); }

// A NumPy array as the device-neutral view the shared checks take (array_view.h).
inline bind_common::ArrayView view_of(const py::array& a) {
  bind_common::ArrayView v;
  v.ptr = const_cast<void*>(a.data());
  v.shape = shape_vec(a);
  v.size = std::size_t(a.size());
  v.itemsize = std::size_t(a.itemsize());
  v.readonly = !a.writeable();
  return v;
}

// A C-contiguous NumPy array of dtype T (float32 unless said otherwise), or a
// TypeError/ValueError naming `name` in the words of array_view.h.
template <class T = float>
inline py::array as_array(const py::object& obj, const char* name, bool writeable = false) {
  if (!py::isinstance<py::array>(obj))
    bind_common::fail_kind(name, "a numpy.ndarray", py::str(py::type::of(obj).attr("__name__")));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>()))
    bind_common::fail_dtype(name, py::str(py::dtype::of<T>()), py::str(a.dtype()));
  if (!(a.flags() & py::array::c_style)) bind_common::fail_contiguous(name, shape_vec(a));
  if (writeable && !a.writeable()) bind_common::fail_read_only(name);
  return a;
}

// A float32, C-contiguous NumPy array, or a TypeError/ValueError naming `name`.
inline py::array as_f32(const py::object& obj, const char* name, bool writeable = false) {
  return as_array<float>(obj, name, writeable);
}

// The caller's output array (checked), or a new float32 array of `shape`.
inline py::array out_or_new(const py::object& out_, std::vector<py::ssize_t> shape) {
  if (out_.is_none()) return py::array_t<float>(shape);
  py::array out = as_f32(out_, "out", true);
  bind_common::check_out_shape(view_of(out), shape);
  return out;
}

// A float64, C-contiguous NumPy array, read only.
inline py::array as_f64_in(const py::object& obj, const char* name) { return as_array<double>(obj, name); }

// A writeable float64, C-contiguous NumPy array (the metric accumulators).
inline py::array as_f64_out(const py::object& obj, const char* name) { return as_array<double>(obj, name, true); }

inline void check_ndim(const py::array& a, const char* name, py::ssize_t nd) {
  bind_common::check_ndim(view_of(a), name, std::size_t(nd));
}

inline void check_same_shape(const py::array& a, const char* an, const py::array& b, const char* bn) {
  bind_common::check_same_shape(view_of(a), an, view_of(b), bn);
}

inline bool overlaps(const py::array& a, const py::array& b) { return bind_common::overlaps(view_of(a), view_of(b)); }

inline void check_no_overlap(const py::array& out, const py::array& in, const char* in_name) {
  bind_common::check_no_overlap(view_of(out), "out", view_of(in), in_name);
}

using bind_common::to_act;
using bind_common::to_int_dim;

inline float* fptr(py::array a) { return static_cast<float*>(a.mutable_data()); }
inline const float* cfptr(const py::array& a) { return static_cast<const float*>(a.data()); }

}  // namespace bind
}  // namespace fusednn
