// Argument checks of the _cuda binding files (cuda_module.cpp and cuda_trainer.cpp):
// arrays arrive through __cuda_array_interface__ and become the shared view of
// array_view.h, whose checks and messages both bindings use.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "array_view.h"
#include "fusednn/cuda.h"
#include "trainer_spec.h"

namespace fusednn {
namespace cuda_bind {

namespace py = pybind11;
namespace cu = fusednn::cuda;

// A validated view of a device array: the shared view of array_view.h.
using DevArray = bind_common::ArrayView;
using bind_common::check_in_place_or_apart;
using bind_common::check_ndim;
using bind_common::check_no_overlap;
using bind_common::check_same_shape;
using bind_common::overlaps;
using bind_common::shape_of;

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
    bind_common::fail_kind(name, "a CUDA device array (an object with __cuda_array_interface__, e.g. a cupy.ndarray)",
                           type_name(obj));
  const py::dict iface = obj.attr("__cuda_array_interface__");
  const std::string ts = py::str(iface["typestr"]);
  if (ts != typestr) bind_common::fail_dtype(name, dtype_name(typestr), dtype_name(ts));
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
      if (a.shape[i] != 1 && strides[i].cast<py::ssize_t>() != expect) bind_common::fail_contiguous(name, a.shape);
      expect *= a.shape[i];
    }
  }
  if (writeable && a.readonly) bind_common::fail_read_only(name);
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
  bind_common::check_out_shape(a, shape, op);
  return {out, a};
}

inline float* fptr(const DevArray& a) { return static_cast<float*>(a.ptr); }
inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

}  // namespace cuda_bind
}  // namespace fusednn
