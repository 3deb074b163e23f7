// Argument checks shared by the _cpu binding files: each raises a Python
// TypeError/ValueError that names the argument and the shapes involved.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fusednn/activation.h"
#include "trainer_spec.h"

namespace fusednn {
namespace bind {

namespace py = pybind11;

inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

// A float32, C-contiguous NumPy array, or a TypeError/ValueError naming `name`.
inline py::array as_f32(const py::object& obj, const char* name, bool writeable = false) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string(name) + " must have dtype float32, got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous (shape " + shape_of(a) + ")");
  if (writeable && !a.writeable())
    throw py::value_error(std::string(name) + " is read-only");
  return a;
}

// The caller's output array (checked), or a new float32 array of `shape`.
inline py::array out_or_new(const py::object& out_, std::vector<py::ssize_t> shape) {
  if (out_.is_none()) return py::array_t<float>(shape);
  py::array out = as_f32(out_, "out", true);
  bool same = out.ndim() == py::ssize_t(shape.size());
  for (std::size_t i = 0; same && i < shape.size(); ++i) same = out.shape(i) == shape[i];
  if (!same) {
    std::string want = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    throw py::value_error("out has shape " + shape_of(out) + ", expected " + want +
                          (shape.size() == 1 ? ",)" : ")"));
  }
  return out;
}

inline std::vector<py::ssize_t> shape_vec(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// A float64, C-contiguous NumPy array, read only.
inline py::array as_f64_in(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<double>()))
    throw py::type_error(std::string(name) + " must have dtype float64, got " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  return a;
}

// A writeable float64, C-contiguous NumPy array (the metric accumulators).
inline py::array as_f64_out(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<double>()))
    throw py::type_error(std::string(name) + " must have dtype float64, got " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error(std::string(name) + " must be C-contiguous and writeable");
  return a;
}

inline void check_ndim(const py::array& a, const char* name, py::ssize_t nd) {
  if (a.ndim() != nd)
    throw py::value_error(std::string(name) + " must be " + std::to_string(nd) + "-D, got shape " +
                          shape_of(a));
}

inline void check_same_shape(const py::array& a, const char* an, const py::array& b, const char* bn) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same)
    throw py::value_error(std::string(an) + " and " + bn + " must have the same shape, got " +
                          shape_of(a) + " and " + shape_of(b));
}

inline bool overlaps(const py::array& a, const py::array& b) {
  const char* a0 = static_cast<const char*>(a.data());
  const char* b0 = static_cast<const char*>(b.data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes() && a.nbytes() && b.nbytes();
}

inline void check_no_overlap(const py::array& out, const py::array& in, const char* in_name,
                             const char* out_name = "out") {
  if (overlaps(out, in))
    throw py::value_error(std::string(out_name) + " must not share memory with " + in_name);
}

// For kernels that read each element before writing it (elementwise, row-wise):
// out is `in` itself (same start, same size) or apart from it; a partial overlap
// would make the kernel read values it already overwrote.
inline void check_in_place_or_apart(const py::array& out, const py::array& in, const char* in_name) {
  if (overlaps(out, in) && (out.data() != in.data() || out.nbytes() != in.nbytes()))
    throw py::value_error(std::string("out must be ") + in_name + " itself or not share memory with it");
}

using bind_common::to_act;
using bind_common::to_int_dim;

inline float* fptr(py::array a) { return static_cast<float*>(a.mutable_data()); }
inline const float* cfptr(const py::array& a) { return static_cast<const float*>(a.data()); }

}  // namespace bind
}  // namespace fusednn
