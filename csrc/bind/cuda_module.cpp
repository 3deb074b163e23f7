// pybind11 module fusednn._cuda: the only place the CUDA kernels meet Python.
// Arrays come in through __cuda_array_interface__ (CuPy arrays, PyTorch CUDA
// tensors, ...), and every argument is checked here (dtype, rank, shape,
// contiguity, device, writeability, aliasing) so a kernel never sees a buffer
// of the wrong type or size. Kernels run on the stream the caller passes
// (fusednn's backend passes CuPy's current stream), with the GIL released;
// the interface's own "stream" entry is not consulted, since the work is
// queued on the caller's stream anyway. Nothing here allocates device memory:
// scratch space (the MSE workspace) comes from the caller. Conversion of
// other dtypes and layouts happens one level up, in fusednn.ops.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fusednn/cuda.h"

namespace py = pybind11;
using fusednn::Act;
namespace cu = fusednn::cuda;

namespace {

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

std::string shape_of(const DevArray& a) {
  std::string s = "(";
  for (std::size_t i = 0; i < a.shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape[i]);
  }
  if (a.shape.size() == 1) s += ",";
  return s + ")";
}

std::string type_name(const py::object& obj) {
  return py::str(py::type::of(obj).attr("__name__"));
}

std::string cuda_error(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

// Raise RuntimeError naming the kernel when a launch failed.
void check_launch(cudaError_t e, const char* kernel) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("fusednn._cuda.") + kernel + ": CUDA error " + cuda_error(e));
}

// A C-contiguous device array of dtype `typestr` ("<f4" unless said
// otherwise), or a TypeError/ValueError naming `name`.
DevArray as_dev(const py::object& obj, const char* name, bool writeable = false,
                const char* typestr = "<f4") {
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(std::string(name) +
                         " must be a CUDA device array (an object with __cuda_array_interface__, "
                         "e.g. a cupy.ndarray), got " + type_name(obj));
  const py::dict iface = obj.attr("__cuda_array_interface__");
  const std::string ts = py::str(iface["typestr"]);
  if (ts != typestr)
    throw py::type_error(std::string(name) + " must have dtype " +
                         (std::string(typestr) == "<f4" ? "float32" : "float64") + " ('" + typestr +
                         "'), got '" + ts + "'");
  DevArray a;
  a.itemsize = std::string(typestr) == "<f8" ? 8 : 4;
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

void check_ndim(const DevArray& a, const char* name, std::size_t nd) {
  if (a.ndim() != nd)
    throw py::value_error(std::string(name) + " must be " + std::to_string(nd) + "-D, got shape " +
                          shape_of(a));
}

void check_same_shape(const DevArray& a, const char* an, const DevArray& b, const char* bn) {
  if (a.shape != b.shape)
    throw py::value_error(std::string(an) + " and " + bn + " must have the same shape, got " +
                          shape_of(a) + " and " + shape_of(b));
}

bool overlaps(const DevArray& a, const DevArray& b) {
  const char* a0 = static_cast<const char*>(a.ptr);
  const char* b0 = static_cast<const char*>(b.ptr);
  return a.nbytes() && b.nbytes() && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

void check_no_overlap(const DevArray& out, const char* out_name, const DevArray& in, const char* in_name) {
  if (overlaps(out, in))
    throw py::value_error(std::string(out_name) + " must not share memory with " + in_name);
}

Act to_act(int a) {
  if (!fusednn::act_is_valid(a))
    throw py::value_error("unknown activation code " + std::to_string(a) +
                          " (0=linear, 1=relu, 2=sigmoid, 3=tanh)");
  return static_cast<Act>(a);
}

int to_int_dim(py::ssize_t d, const char* what) {
  if (d > py::ssize_t(INT32_MAX))
    throw py::value_error(std::string(what) + " is too large for the kernel (> 2^31 - 1)");
  return int(d);
}

// `out` checked as a writeable float32 device array of `shape`, or, when None,
// a new cupy.empty(shape) (CuPy owns device memory; this module never
// allocates). `op` prefixes the shape error ("matmul: out has shape ...").
std::pair<py::object, DevArray> out_or_new(const py::object& out, const std::vector<py::ssize_t>& shape,
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

float* fptr(const DevArray& a) { return static_cast<float*>(a.ptr); }
cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

py::object matmul_checked(bool reference, const py::object& a_, const py::object& b_, bool ta, bool tb,
                          const py::object& bias_, int act, const py::object& out_, int variant,
                          bool tf32, std::uintptr_t stream) {
  const DevArray a = as_dev(a_, "a"), b = as_dev(b_, "b");
  check_ndim(a, "a", 2);
  check_ndim(b, "b", 2);
  const py::ssize_t M = ta ? a.dim(1) : a.dim(0), K = ta ? a.dim(0) : a.dim(1);
  const py::ssize_t Kb = tb ? b.dim(1) : b.dim(0), N = tb ? b.dim(0) : b.dim(1);
  if (K != Kb)
    throw py::value_error("matmul: inner dimensions differ: a" + std::string(ta ? ".T" : "") +
                          " has shape " + shape_of(a) + ", b" + (tb ? ".T" : "") +
                          " has shape " + shape_of(b));
  const auto [out_obj, out] = out_or_new(out_, {M, N}, "matmul");
  check_no_overlap(out, "out", a, "a");
  check_no_overlap(out, "out", b, "b");
  const float* bias = nullptr;
  if (!bias_.is_none()) {
    const DevArray bias_arr = as_dev(bias_, "bias");
    check_ndim(bias_arr, "bias", 1);
    if (bias_arr.dim(0) != N)
      throw py::value_error("matmul: bias has shape " + shape_of(bias_arr) + ", expected (" +
                            std::to_string(N) + ",)");
    check_no_overlap(out, "out", bias_arr, "bias");
    bias = fptr(bias_arr);
  }
  if (variant < -1 || variant >= cu::gemm_variant_count())
    throw py::value_error("matmul: variant must be -1 (automatic) or 0.." +
                          std::to_string(cu::gemm_variant_count() - 1) + ", got " +
                          std::to_string(variant));
  const Act ac = to_act(act);
  const int m = to_int_dim(M, "M"), n = to_int_dim(N, "N"), k = to_int_dim(K, "K");
  float* c = fptr(out);
  const float *pa = fptr(a), *pb = fptr(b);
  cudaError_t e;
  {
    py::gil_scoped_release nogil;
    e = reference ? cu::matmul_reference(c, pa, pb, m, n, k, ta, tb, bias, ac, as_stream(stream))
                  : cu::matmul(c, pa, pb, m, n, k, ta, tb, bias, ac, as_stream(stream), variant, tf32);
  }
  check_launch(e, reference ? "matmul_reference" : "matmul");
  return out_obj;
}

py::dict device_info(int dev) {
  cu::DeviceInfo info;
  check_launch(cu::device_info(dev, &info), "device_info");
  py::dict d;
  d["name"] = std::string(info.name);
  d["compute_capability"] = py::make_tuple(info.major, info.minor);
  d["multiprocessors"] = info.multiprocessors;
  d["total_memory"] = info.total_memory;
  d["l2_bytes"] = info.l2_bytes;
  return d;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() =
      "fusednn CUDA kernels on float32 device arrays (anything with __cuda_array_interface__). "
      "Every kernel function takes the CUDA stream to run on as `stream` (an integer handle; "
      "0 is the legacy default stream) and returns without waiting for the GPU.";
  m.attr("archs") = FUSEDNN_CUDA_ARCHS;  // "75,80,86,89,90": the SM versions built

  m.def("device_count", &cu::device_count, "Number of CUDA devices the driver reports (0 without a driver).");
  m.def("current_device", []() {
    int d = -1;
    check_launch(cu::current_device(&d), "current_device");
    return d;
  });
  m.def("device_info", &device_info, py::arg("device") = 0,
        "Name, compute capability, multiprocessor count, total memory and L2 size of a device.");
  m.def(
      "memory_info",
      []() {
        std::size_t free_b = 0, total_b = 0;
        check_launch(cu::memory_info(&free_b, &total_b), "memory_info");
        return py::make_tuple(free_b, total_b);
      },
      "(free, total) bytes of the current device.");
  m.def("gemm_variants", []() {
    std::vector<std::string> names;
    for (int v = 0; v < cu::gemm_variant_count(); ++v) names.emplace_back(cu::gemm_variant_name(v));
    return names;
  }, "Names of the FP32 GEMM tile configurations, indexed by matmul's `variant`.");
  m.def("gemm_pick_variant", &cu::gemm_pick_variant, py::arg("M"), py::arg("N"), py::arg("K"),
        "The variant matmul uses for this shape when variant=-1.");
  m.def("tf32_supported", &cu::tf32_supported,
        "Whether the current device runs the TF32 tensor-core path (compute capability >= 8.0).");

  m.def(
      "matmul",
      [](const py::object& a, const py::object& b, bool ta, bool tb, const py::object& bias, int act,
         const py::object& out, int variant, bool tf32, std::uintptr_t stream) {
        return matmul_checked(false, a, b, ta, tb, bias, act, out, variant, tf32, stream);
      },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      py::arg("bias") = py::none(), py::arg("activation") = 0, py::arg("out") = py::none(),
      py::arg("variant") = -1, py::arg("tf32") = false, py::arg("stream") = 0,
      "act(op(a) @ op(b) + bias) into out (or a new CuPy array), returned: tiled FP32 GEMM "
      "(variant -1 picks the tile by shape), or TF32 tensor cores with tf32=True on compute "
      "capability >= 8.0.");
  m.def(
      "matmul_reference",
      [](const py::object& a, const py::object& b, bool ta, bool tb, const py::object& bias, int act,
         const py::object& out, std::uintptr_t stream) {
        return matmul_checked(true, a, b, ta, tb, bias, act, out, -1, false, stream);
      },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      py::arg("bias") = py::none(), py::arg("activation") = 0, py::arg("out") = py::none(),
      py::arg("stream") = 0, "One thread per output, double accumulation: the oracle for tests.");

  m.def(
      "act_forward",
      [](const py::object& x_, int act, const py::object& out_, std::uintptr_t stream) {
        const DevArray x = as_dev(x_, "x");
        const Act ac = to_act(act);
        const auto [out_obj, out] = out_or_new(out_, x.shape);
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::act_forward(fptr(out), fptr(x), x.size, ac, as_stream(stream));
        }
        check_launch(e, "act_forward");
        return out_obj;
      },
      py::arg("x"), py::arg("activation"), py::arg("out") = py::none(), py::arg("stream") = 0);
  m.def(
      "act_backward",
      [](const py::object& dy_, const py::object& y_, int act, const py::object& out_,
         std::uintptr_t stream) {
        const DevArray dy = as_dev(dy_, "dy"), y = as_dev(y_, "y");
        check_same_shape(dy, "dy", y, "y");
        const Act ac = to_act(act);
        const auto [out_obj, out] = out_or_new(out_, dy.shape);
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::act_backward(fptr(out), fptr(dy), fptr(y), dy.size, ac, as_stream(stream));
        }
        check_launch(e, "act_backward");
        return out_obj;
      },
      py::arg("dy"), py::arg("y"), py::arg("activation"), py::arg("out") = py::none(),
      py::arg("stream") = 0);
  m.def(
      "bias_act",
      [](const py::object& x_, const py::object& b_, int act, const py::object& out_,
         std::uintptr_t stream) {
        const DevArray x = as_dev(x_, "x"), b = as_dev(b_, "bias");
        check_ndim(x, "x", 2);
        check_ndim(b, "bias", 1);
        if (b.dim(0) != x.dim(1))
          throw py::value_error("bias has shape " + shape_of(b) + " but x has shape " + shape_of(x));
        const Act ac = to_act(act);
        const auto [out_obj, out] = out_or_new(out_, x.shape);
        check_no_overlap(out, "out", b, "bias");
        const std::size_t rows = std::size_t(x.dim(0)), cols = std::size_t(x.dim(1));
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::bias_act(fptr(out), fptr(x), fptr(b), rows, cols, ac, as_stream(stream));
        }
        check_launch(e, "bias_act");
        return out_obj;
      },
      py::arg("x"), py::arg("bias"), py::arg("activation"), py::arg("out") = py::none(),
      py::arg("stream") = 0);

  m.def("mse_workspace_len", &cu::mse_workspace_len,
        "Length (float64 elements) of the device workspace mse needs; allocate it once and reuse it.");
  m.def(
      "mse",
      [](const py::object& p_, const py::object& t_, const py::object& out_,
         const py::object& ws_, std::uintptr_t stream) -> py::object {
        const DevArray p = as_dev(p_, "pred"), t = as_dev(t_, "target");
        check_same_shape(p, "pred", t, "target");
        if (ws_.is_none())
          throw py::value_error("mse: workspace is required: a float64 device array of at least "
                                "mse_workspace_len() elements, allocated once by the caller");
        const DevArray ws = as_dev(ws_, "workspace", true, "<f8");
        if (ws.size < cu::mse_workspace_len())
          throw py::value_error("mse: workspace has " + std::to_string(ws.size) +
                                " elements, needs " + std::to_string(cu::mse_workspace_len()));
        check_no_overlap(ws, "workspace", p, "pred");
        check_no_overlap(ws, "workspace", t, "target");
        float* o = nullptr;
        if (!out_.is_none()) {
          const DevArray out = as_dev(out_, "out", true);
          if (out.size != 1)
            throw py::value_error("mse: out must hold exactly one element, got shape " + shape_of(out));
          check_no_overlap(ws, "workspace", out, "out");
          o = fptr(out);
        }
        double* w = static_cast<double*>(ws.ptr);
        const cudaStream_t s = as_stream(stream);
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::mse(fptr(p), fptr(t), p.size, o, w, s);
        }
        check_launch(e, "mse");
        if (o) return out_;
        double r = 0.0;
        {
          py::gil_scoped_release nogil;
          e = cudaMemcpyAsync(&r, w + cu::mse_workspace_len() - 1, sizeof(double),
                              cudaMemcpyDeviceToHost, s);
          if (e == cudaSuccess) e = cudaStreamSynchronize(s);
        }
        check_launch(e, "mse (reading the result back)");
        return py::float_(r);
      },
      py::arg("pred"), py::arg("target"), py::arg("out") = py::none(), py::arg("workspace") = py::none(),
      py::arg("stream") = 0,
      "mean((pred - target)**2), accumulated in float64 in a fixed order (the same bits on every "
      "run). With out (one float32 element) the value is written there, nothing waits and out is "
      "returned; without, waits for the stream and returns a Python float. `workspace` (required) "
      "is a float64 device array of mse_workspace_len() elements.");
  m.def(
      "mse_grad",
      [](const py::object& p_, const py::object& t_, float scale, const py::object& out_,
         std::uintptr_t stream) {
        const DevArray p = as_dev(p_, "pred"), t = as_dev(t_, "target");
        check_same_shape(p, "pred", t, "target");
        const auto [out_obj, out] = out_or_new(out_, p.shape);
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::mse_grad(fptr(out), fptr(p), fptr(t), p.size, scale, as_stream(stream));
        }
        check_launch(e, "mse_grad");
        return out_obj;
      },
      py::arg("pred"), py::arg("target"), py::arg("scale"), py::arg("out") = py::none(),
      py::arg("stream") = 0, "scale * (pred - target); scale = 2/N gives d mse / d pred.");

  m.def(
      "sum_rows",
      [](const py::object& x_, const py::object& out_, std::uintptr_t stream) {
        const DevArray x = as_dev(x_, "x");
        check_ndim(x, "x", 2);
        const auto [out_obj, out] = out_or_new(out_, {x.dim(1)}, "sum_rows");
        check_no_overlap(out, "out", x, "x");
        const std::size_t rows = std::size_t(x.dim(0)), cols = std::size_t(x.dim(1));
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::sum_rows(fptr(out), fptr(x), rows, cols, as_stream(stream));
        }
        check_launch(e, "sum_rows");
        return out_obj;
      },
      py::arg("x"), py::arg("out") = py::none(), py::arg("stream") = 0,
      "x.sum(axis=0) (the bias gradient), accumulated in float64, deterministic.");

  m.def(
      "sgd_update",
      [](const py::object& w_, const py::object& g_, const py::object& v_, float lr, float momentum,
         bool nesterov, std::uintptr_t stream) {
        const DevArray w = as_dev(w_, "param", true), g = as_dev(g_, "grad");
        check_same_shape(w, "param", g, "grad");
        check_no_overlap(w, "param", g, "grad");
        float* pv = nullptr;
        if (!v_.is_none()) {
          const DevArray v = as_dev(v_, "velocity", true);
          check_same_shape(w, "param", v, "velocity");
          check_no_overlap(w, "param", v, "velocity");
          check_no_overlap(v, "velocity", g, "grad");
          pv = fptr(v);
        } else if (momentum != 0.f) {
          throw py::value_error("sgd_update: momentum != 0 needs a velocity array");
        }
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::sgd_update(fptr(w), fptr(g), pv, w.size, lr, momentum, nesterov, as_stream(stream));
        }
        check_launch(e, "sgd_update");
      },
      py::arg("param"), py::arg("grad"), py::arg("velocity"), py::arg("learning_rate"),
      py::arg("momentum"), py::arg("nesterov"), py::arg("stream") = 0);
  m.def(
      "adam_update",
      [](const py::object& w_, const py::object& g_, const py::object& m_, const py::object& v_,
         float lr, float b1, float b2, float eps, std::int64_t step, std::uintptr_t stream) {
        const DevArray w = as_dev(w_, "param", true), g = as_dev(g_, "grad");
        const DevArray mm = as_dev(m_, "m", true), v = as_dev(v_, "v", true);
        check_same_shape(w, "param", g, "grad");
        check_same_shape(w, "param", mm, "m");
        check_same_shape(w, "param", v, "v");
        check_no_overlap(w, "param", g, "grad");
        check_no_overlap(w, "param", mm, "m");
        check_no_overlap(w, "param", v, "v");
        check_no_overlap(mm, "m", v, "v");
        check_no_overlap(mm, "m", g, "grad");
        check_no_overlap(v, "v", g, "grad");
        if (step < 1) throw py::value_error("adam_update: step must be >= 1, got " + std::to_string(step));
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::adam_update(fptr(w), fptr(g), fptr(mm), fptr(v), w.size, lr, b1, b2, eps, step,
                              as_stream(stream));
        }
        check_launch(e, "adam_update");
      },
      py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"), py::arg("learning_rate"),
      py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"), py::arg("step"), py::arg("stream") = 0);
}
