// The one vocabulary of argument checks for both bindings (_cpu over py::array,
// _cuda over __cuda_array_interface__): a device-neutral view of an array
// (pointer, shape, element size) and every check and error message the bindings
// raise about arrays, written once. Each binding only turns its own kind of array
// into an ArrayView (checks.h: view_of(py::array); cuda_checks.h: as_dev); the
// messages name the argument and the shapes involved, and read the same on every
// device, so tests and users see one wording.
#pragma once
#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>
#include <vector>

namespace fusednn {
namespace bind_common {

namespace py = pybind11;

// A checked view of an array's memory: pointer, shape, element count and size.
// It does not own the memory: the Python object it came from must stay alive.
struct ArrayView {
  void* ptr = nullptr;
  std::vector<py::ssize_t> shape;
  std::size_t size = 1;
  std::size_t itemsize = 4;
  bool readonly = false;

  std::size_t nbytes() const { return size * itemsize; }
  py::ssize_t dim(std::size_t i) const { return shape[i]; }
  std::size_t ndim() const { return shape.size(); }
};

// "(2, 3)", "(4,)": a shape as Python prints a tuple.
inline std::string shape_text(const std::vector<py::ssize_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

inline std::string shape_of(const ArrayView& a) { return shape_text(a.shape); }

// ---- the messages (each raises) ----------------------------------------------
// `name` is not the kind of array this binding takes (`kind`: "a numpy.ndarray", ...).
[[noreturn]] inline void fail_kind(const char* name, const std::string& kind, const std::string& got) {
  throw py::type_error(std::string(name) + " must be " + kind + ", got " + got);
}

[[noreturn]] inline void fail_dtype(const char* name, const std::string& want, const std::string& got) {
  throw py::type_error(std::string(name) + " must have dtype " + want + ", got " + got);
}

[[noreturn]] inline void fail_contiguous(const char* name, const std::vector<py::ssize_t>& shape) {
  throw py::value_error(std::string(name) + " must be C-contiguous (shape " + shape_text(shape) + ")");
}

[[noreturn]] inline void fail_read_only(const char* name) {
  throw py::value_error(std::string(name) + " is read-only");
}

// `op` (may be null) prefixes the message: "matmul: out has shape (2, 3), expected (2, 4)".
[[noreturn]] inline void fail_out_shape(const char* op, const std::vector<py::ssize_t>& got,
                                        const std::vector<py::ssize_t>& want) {
  throw py::value_error((op ? std::string(op) + ": " : std::string()) + "out has shape " + shape_text(got) +
                        ", expected " + shape_text(want));
}

// ---- the checks --------------------------------------------------------------
inline void check_ndim(const ArrayView& a, const char* name, std::size_t nd) {
  if (a.ndim() != nd)
    throw py::value_error(std::string(name) + " must be " + std::to_string(nd) + "-D, got shape " +
                          shape_of(a));
}

inline void check_same_shape(const ArrayView& a, const char* an, const ArrayView& b, const char* bn) {
  if (a.shape != b.shape)
    throw py::value_error(std::string(an) + " and " + bn + " must have the same shape, got " +
                          shape_of(a) + " and " + shape_of(b));
}

inline bool overlaps(const ArrayView& a, const ArrayView& b) {
  const char* a0 = static_cast<const char*>(a.ptr);
  const char* b0 = static_cast<const char*>(b.ptr);
  return a.nbytes() && b.nbytes() && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

inline void check_no_overlap(const ArrayView& out, const char* out_name, const ArrayView& in,
                             const char* in_name) {
  if (overlaps(out, in))
    throw py::value_error(std::string(out_name) + " must not share memory with " + in_name);
}

// For kernels that may work in place: out is `in` itself (same memory) or apart from it.
inline void check_in_place_or_apart(const ArrayView& out, const char* out_name, const ArrayView& in,
                                    const char* in_name) {
  if (overlaps(out, in) && out.ptr != in.ptr)
    throw py::value_error(std::string(out_name) + " must be " + in_name + " itself or not share memory with it");
}

// An output of `shape`: raises fail_out_shape unless `out` has exactly that shape.
inline void check_out_shape(const ArrayView& out, const std::vector<py::ssize_t>& shape, const char* op = nullptr) {
  if (out.shape != shape) fail_out_shape(op, out.shape, shape);
}

}  // namespace bind_common
}  // namespace fusednn
