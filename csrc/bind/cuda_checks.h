// Argument checks shared by the _cuda binding files (cuda_module.cpp and
// cuda_trainer.cpp): arrays arrive through __cuda_array_interface__ and each
// check raises a Python TypeError/ValueError naming the argument and shapes.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fusednn/cuda.h"
#include "trainer_spec.h"

namespace fusednn {
namespace cuda_bind {

namespace py = pybind11;
namespace cu = fusednn::cuda;

// A validated view of a device array: pointer, shape, element count.
struct DevArray {
  void* ptr = nullptr;
  std::vector<py::ssize_t> shape;
  std::size_t size = 1;
  std::size_t itemsize = 4;
  bool readonly = false;

  std::size_t nbytes() const { return size * itemsize; }
  py::ssize_t dim(std::size_t i) const { return shape[i]; }
  std::size_t ndim() const { return shape.size(); }
};

inline std::string shape_of(const DevArray& a) {
  std::string s = "(";
  for (std::size_t i = 0; i < a.shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape[i]);
  }
  if (a.shape.size() == 1) s += ",";
  return s + ")";
}

inline std::string type_name(const py::object& obj) {
  return py::str(py::type::of(obj).attr("__name__"));
}

inline std::string cuda_error(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

// Raise RuntimeError naming the kernel when a launch failed.
inline void check_launch(cudaError_t e, const char* kernel) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("fusednn._cuda.") + kernel + ": CUDA error " + cuda_error(e));
}

// The NumPy name of the typestrs the kernels take.
inline std::string dtype_name(const std::string& typestr) {
  if (typestr == "<f4") return "float32";
  if (typestr == "<f8") return "float64";
  if (typestr == "<i8") return "int64";
  return typestr;
}

// A C-contiguous device array of dtype `typestr` ("<f4", "<f8" or "<i8";
// "<f4" unless said otherwise), or a TypeError/ValueError naming `name`.
inline DevArray as_dev(const py::object& obj, const char* name, bool writeable = false,
                       const char* typestr = "<f4") {
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(std::string(name) +
                         " must be a CUDA device array (an object with __cuda_array_interface__, "
                         "e.g. a cupy.ndarray), got " + type_name(obj));
  const py::dict iface = obj.attr("__cuda_array_interface__");
  const std::string ts = py::str(iface["typestr"]);
  if (ts != typestr)
    throw py::type_error(std::string(name) + " must have dtype " + dtype_name(typestr) + " ('" + typestr +
                         "'), got '" + ts + "'");
  DevArray a;
  a.itemsize = std::string(typestr) == "<f4" ? 4 : 8;
  for (const auto& d : iface["shape"].cast<py::tuple>()) a.shape.push_back(d.cast<py::ssize_t>());
  for (py::ssize_t d : a.shape) a.size *= std::size_t(d);
  const py::tuple data = iface["data"];
  a.ptr = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
  a.readonly = data[1].cast<bool>();
  if (iface.contains("mask") && !iface["mask"].is_none())
    throw py::value_error(std::string(name) + " has a mask; masked arrays are not supported");
  if (iface.contains("strides") && !iface["strides"].is_none() && a.size > 0) {
    // C order, ignoring the strides of length-1 axes as NumPy's flags do.
    const py::tuple strides = iface["strides"];
    py::ssize_t expect = py::ssize_t(a.itemsize);
    for (std::size_t i = a.shape.size(); i-- > 0;) {
      if (a.shape[i] != 1 && strides[i].cast<py::ssize_t>() != expect)
        throw py::value_error(std::string(name) + " must be C-contiguous (shape " + shape_of(a) + ")");
      expect *= a.shape[i];
    }
  }
  if (writeable && a.readonly) throw py::value_error(std::string(name) + " is read-only");
  if (a.size > 0) {
    bool is_device = false;
    int dev = -1, cur = -1;
    const cudaError_t e = cu::pointer_device(a.ptr, &is_device, &dev);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw py::value_error(std::string(name) + ": cannot query its pointer (" + cuda_error(e) + ")");
    }
    if (!is_device)
      throw py::value_error(std::string(name) + " is not in device memory");
    check_launch(cu::current_device(&cur), "current_device");
    if (dev != cur)
      throw py::value_error(std::string(name) + " is on device " + std::to_string(dev) +
                            " but the current device is " + std::to_string(cur));
  }
  return a;
}

inline void check_ndim(const DevArray& a, const char* name, std::size_t nd) {
  if (a.ndim() != nd)
    throw py::value_error(std::string(name) + " must be " + std::to_string(nd) + "-D, got shape " +
                          shape_of(a));
}

inline void check_same_shape(const DevArray& a, const char* an, const DevArray& b, const char* bn) {
  if (a.shape != b.shape)
    throw py::value_error(std::string(an) + " and " + bn + " must have the same shape, got " +
                          shape_of(a) + " and " + shape_of(b));
}

inline bool overlaps(const DevArray& a, const DevArray& b) {
  const char* a0 = static_cast<const char*>(a.ptr);
  const char* b0 = static_cast<const char*>(b.ptr);
  return a.nbytes() && b.nbytes() && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

inline void check_no_overlap(const DevArray& out, const char* out_name, const DevArray& in,
                             const char* in_name) {
  if (overlaps(out, in))
    throw py::value_error(std::string(out_name) + " must not share memory with " + in_name);
}

// For kernels that may work in place: out is in itself (same shape) or apart from it.
inline void check_in_place_or_apart(const DevArray& out, const char* out_name, const DevArray& in,
                                    const char* in_name) {
  if (overlaps(out, in) && out.ptr != in.ptr)
    throw py::value_error(std::string(out_name) + " must be " + in_name + " itself or not share memory with it");
}

using bind_common::to_act;
using bind_common::to_int_dim;

// `out` checked as a writeable float32 device array of `shape`, or, when None,
// a new cupy.empty(shape) (CuPy owns device memory; this module never
// allocates). `op` prefixes the shape error ("matmul: out has shape ...").
inline std::pair<py::object, DevArray> out_or_new(const py::object& out,
                                                  const std::vector<py::ssize_t>& shape,
                                                  const char* op = nullptr) {
  if (out.is_none()) {
    py::object arr = py::module_::import("cupy").attr("empty")(py::cast(shape), "float32");
    return {arr, as_dev(arr, "out", true)};
  }
  DevArray a = as_dev(out, "out", true);
  if (a.shape != shape) {
    DevArray want;
    want.shape = shape;
    throw py::value_error((op ? std::string(op) + ": " : std::string()) + "out has shape " +
                          shape_of(a) + ", expected " + shape_of(want));
  }
  return {out, a};
}

inline float* fptr(const DevArray& a) { return static_cast<float*>(a.ptr); }
inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

}  // namespace cuda_bind
}  // namespace fusednn
