// pybind11 module fusednn._cuda: the only place the CUDA kernels meet Python.
// Arrays come in through __cuda_array_interface__ (CuPy arrays, PyTorch CUDA
// tensors, ...), and every argument is checked here (dtype, rank, shape,
// contiguity, device, writeability, aliasing) so a kernel never sees a buffer
// of the wrong type or size. Kernels run on the stream the caller passes
// (fusednn's backend passes CuPy's current stream), with the GIL released;
// the interface's own "stream" entry is not consulted, since the work is
// queued on the caller's stream anyway. Nothing here allocates device memory:
// scratch space (the loss workspace) comes from the caller. Conversion of
// other dtypes and layouts happens one level up, in fusednn.ops.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda_checks.h"
#include "fusednn/cuda.h"

namespace py = pybind11;
using fusednn::Act;
namespace cu = fusednn::cuda;
using namespace fusednn::cuda_bind;

void register_trainer(py::module_& m);  // cuda_trainer.cpp
void register_persistent(py::module_& m);  // cuda_persistent.cpp
void register_optim(py::module_& m);    // cuda_optim.cpp

namespace {

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

// The outputs of a reduced loss kernel (loss_grad, xent): the optional gradient (its own
// memory: row kinds read a whole input row after writing part of the gradient), the
// optional one-element device result, and the caller's float64 workspace, whose last
// element holds the reduced value when no `out` is given.
struct LossOutputs {
  float* grad = nullptr;
  float* out = nullptr;
  double* ws = nullptr;
};

LossOutputs loss_outputs(const char* name, const DevArray& x, const char* x_name, const DevArray& t,
                         const py::object& grad_, const py::object& out_, const py::object& ws_,
                         std::size_t ws_len, const char* len_fn) {
  const std::string fn(name);
  if (ws_.is_none())
    throw py::value_error(fn + ": workspace is required: a float64 device array of at least " + len_fn +
                          "() elements, allocated once by the caller");
  const DevArray ws = as_dev(ws_, "workspace", true, "<f8");
  if (ws.size < ws_len)
    throw py::value_error(fn + ": workspace has " + std::to_string(ws.size) + " elements, needs " +
                          std::to_string(ws_len));
  check_no_overlap(ws, "workspace", x, x_name);
  check_no_overlap(ws, "workspace", t, "target");
  LossOutputs o;
  if (!grad_.is_none()) {
    const DevArray grad = as_dev(grad_, "grad", true);
    if (grad.shape != x.shape)
      throw py::value_error(fn + ": grad has shape " + shape_of(grad) + ", expected " + shape_of(x));
    check_no_overlap(grad, "grad", x, x_name);
    check_no_overlap(grad, "grad", t, "target");
    check_no_overlap(ws, "workspace", grad, "grad");
    o.grad = fptr(grad);
  }
  if (!out_.is_none()) {
    const DevArray out = as_dev(out_, "out", true);
    if (out.size != 1)
      throw py::value_error(fn + ": out must hold exactly one element, got shape " + shape_of(out));
    check_no_overlap(ws, "workspace", out, "out");
    o.out = fptr(out);
  }
  o.ws = static_cast<double*>(ws.ptr);
  return o;
}

// `out_` when the kernel wrote the device result, else the workspace's last element as a float.
py::object loss_result(const char* name, const LossOutputs& o, const py::object& out_, std::size_t ws_len,
                       cudaStream_t s) {
  if (o.out) return out_;
  double r = 0.0;
  cudaError_t e;
  {
    py::gil_scoped_release nogil;
    e = cudaMemcpyAsync(&r, o.ws + ws_len - 1, sizeof(double), cudaMemcpyDeviceToHost, s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  }
  check_launch(e, (std::string(name) + " (reading the result back)").c_str());
  return py::float_(r);
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
  m.attr("archs") = FUSEDNN_CUDA_ARCHS;  // CMake list with commas, e.g. "75-real,80-real,90"
  fusednn::bind_common::add_codes(m);

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
        check_in_place_or_apart(out, "out", x, "x");
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
        check_in_place_or_apart(out, "out", dy, "dy");
        check_in_place_or_apart(out, "out", y, "y");
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
        check_in_place_or_apart(out, "out", x, "x");
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

  m.def(
      "softmax",
      [](const py::object& x_, const py::object& out_, std::uintptr_t stream) {
        const DevArray x = as_dev(x_, "x");
        check_ndim(x, "x", 2);
        const auto [out_obj, out] = out_or_new(out_, x.shape, "softmax");
        check_in_place_or_apart(out, "out", x, "x");
        const std::size_t rows = std::size_t(x.dim(0)), cols = std::size_t(x.dim(1));
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::softmax(fptr(out), fptr(x), rows, cols, as_stream(stream));
        }
        check_launch(e, "softmax");
        return out_obj;
      },
      py::arg("x"), py::arg("out") = py::none(), py::arg("stream") = 0,
      "Row-wise softmax of a 2-D array (max-shifted, sums in float64); out may be x.");
  m.def(
      "softmax_backward",
      [](const py::object& dy_, const py::object& y_, const py::object& out_, std::uintptr_t stream) {
        const DevArray dy = as_dev(dy_, "dy"), y = as_dev(y_, "y");
        check_ndim(dy, "dy", 2);
        check_same_shape(dy, "dy", y, "y");
        const auto [out_obj, out] = out_or_new(out_, dy.shape, "softmax_backward");
        check_in_place_or_apart(out, "out", dy, "dy");
        check_in_place_or_apart(out, "out", y, "y");
        const std::size_t rows = std::size_t(dy.dim(0)), cols = std::size_t(dy.dim(1));
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::softmax_backward(fptr(out), fptr(dy), fptr(y), rows, cols, as_stream(stream));
        }
        check_launch(e, "softmax_backward");
        return out_obj;
      },
      py::arg("dy"), py::arg("y"), py::arg("out") = py::none(), py::arg("stream") = 0,
      "y * (dy - sum(dy * y)) per row: the gradient through a row softmax with output y.");

  m.def(
      "log_softmax",
      [](const py::object& x_, const py::object& out_, std::uintptr_t stream) {
        const DevArray x = as_dev(x_, "x");
        check_ndim(x, "x", 2);
        const auto [out_obj, out] = out_or_new(out_, x.shape, "log_softmax");
        check_in_place_or_apart(out, "out", x, "x");
        const std::size_t rows = std::size_t(x.dim(0)), cols = std::size_t(x.dim(1));
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::log_softmax(fptr(out), fptr(x), rows, cols, as_stream(stream));
        }
        check_launch(e, "log_softmax");
        return out_obj;
      },
      py::arg("x"), py::arg("out") = py::none(), py::arg("stream") = 0,
      "Row-wise log-softmax of a 2-D array (sums in float64); out may be x.");
  m.def(
      "log_softmax_backward",
      [](const py::object& dy_, const py::object& y_, const py::object& out_, std::uintptr_t stream) {
        const DevArray dy = as_dev(dy_, "dy"), y = as_dev(y_, "y");
        check_ndim(dy, "dy", 2);
        check_same_shape(dy, "dy", y, "y");
        const auto [out_obj, out] = out_or_new(out_, dy.shape, "log_softmax_backward");
        check_in_place_or_apart(out, "out", dy, "dy");
        check_in_place_or_apart(out, "out", y, "y");
        const std::size_t rows = std::size_t(dy.dim(0)), cols = std::size_t(dy.dim(1));
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::log_softmax_backward(fptr(out), fptr(dy), fptr(y), rows, cols, as_stream(stream));
        }
        check_launch(e, "log_softmax_backward");
        return out_obj;
      },
      py::arg("dy"), py::arg("y"), py::arg("out") = py::none(), py::arg("stream") = 0,
      "dy - exp(y) * sum(dy) per row: the gradient through a row log-softmax with output y.");

  m.def("loss_grad_workspace_len", &cu::loss_grad_workspace_len,
        "Length (float64 elements) of the device workspace loss_grad needs.");
  m.def(
      "loss_grad",
      [](const py::object& p_, const py::object& t_, int fn, const py::object& param_, const py::object& grad_,
         const py::object& out_, const py::object& ws_, std::uintptr_t stream) -> py::object {
        if (!fusednn::loss_fn_is_valid(fn))
          throw py::value_error("unknown loss code " + std::to_string(fn) + " (see fusednn::LossFn)");
        const auto k = static_cast<fusednn::LossFn>(fn);
        const fusednn::LossParams param = fusednn::bind_common::to_loss_params(param_);
        const DevArray p = as_dev(p_, "pred"), t = as_dev(t_, "target");
        check_ndim(p, "pred", 2);
        check_same_shape(p, "pred", t, "target");
        const LossOutputs o = loss_outputs("loss_grad", p, "pred", t, grad_, out_, ws_,
                                           cu::loss_grad_workspace_len(), "loss_grad_workspace_len");
        const std::size_t rows = std::size_t(p.dim(0)), cols = std::size_t(p.dim(1));
        const cudaStream_t s = as_stream(stream);
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::loss_grad(o.grad, fptr(p), fptr(t), rows, cols, k, param, o.out, o.ws, s);
        }
        check_launch(e, "loss_grad");
        return loss_result("loss_grad", o, out_, cu::loss_grad_workspace_len(), s);
      },
      py::arg("pred"), py::arg("target"), py::arg("fn"), py::arg("param") = 0.0f, py::arg("grad") = py::none(),
      py::arg("out") = py::none(), py::arg("workspace") = py::none(), py::arg("stream") = 0,
      "Mean Keras loss `fn` (fusednn::LossFn) of pred against target, reduced in float64 in a fixed order; "
      "gradient w.r.t. pred to grad when given; out/workspace as for xent.");

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
        check_in_place_or_apart(out, "out", p, "pred");
        check_in_place_or_apart(out, "out", t, "target");
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

  m.def("xent_workspace_len", &cu::xent_workspace_len,
        "Length (float64 elements) of the device workspace xent needs; allocate it once and reuse it.");
  m.def(
      "xent",
      [](const py::object& z_, const py::object& t_, int kind, float scale, const py::object& grad_,
         const py::object& out_, const py::object& ws_, std::uintptr_t stream) -> py::object {
        if (!fusednn::xent_kind_is_valid(kind))
          throw py::value_error("unknown cross-entropy kind " + std::to_string(kind) +
                                " (0=sigmoid_binary, 1=softmax_categorical, 2=softmax_sparse)");
        const auto k = static_cast<fusednn::XentKind>(kind);
        const DevArray z = as_dev(z_, "logits"), t = as_dev(t_, "target");
        check_ndim(z, "logits", 2);
        if (z.dim(0) > 0 && z.dim(1) == 0)  // a softmax row needs at least one class
          throw py::value_error("logits must have at least one column (class), got shape " + shape_of(z));
        if (k == fusednn::XentKind::softmax_sparse) {
          if (t.size != std::size_t(z.dim(0)) || t.ndim() > 2 || (t.ndim() == 2 && t.dim(1) != 1))
            throw py::value_error("sparse targets must hold one class index per row: logits have shape " +
                                  shape_of(z) + ", target has shape " + shape_of(t));
        } else {
          check_same_shape(z, "logits", t, "target");
        }
        const LossOutputs o =
            loss_outputs("xent", z, "logits", t, grad_, out_, ws_, cu::xent_workspace_len(), "xent_workspace_len");
        const std::size_t rows = std::size_t(z.dim(0)), cols = std::size_t(z.dim(1));
        const cudaStream_t s = as_stream(stream);
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::xent(o.grad, fptr(z), fptr(t), rows, cols, k, scale, o.out, o.ws, s);
        }
        check_launch(e, "xent");
        return loss_result("xent", o, out_, cu::xent_workspace_len(), s);
      },
      py::arg("logits"), py::arg("target"), py::arg("kind"), py::arg("scale") = 1.0f,
      py::arg("grad") = py::none(), py::arg("out") = py::none(), py::arg("workspace") = py::none(),
      py::arg("stream") = 0,
      "Cross-entropy on logits (kind 0=sigmoid_binary, 1=softmax_categorical, 2=softmax_sparse), "
      "the mean accumulated in float64 in a fixed order; writes scale * (act(logits) - target) to "
      "grad when given. With out (one float32 element) the loss is written there, nothing waits and "
      "out is returned; without, waits for the stream and returns a Python float. `workspace` "
      "(required) is a float64 device array of xent_workspace_len() elements.");

  m.def(
      "confusion_update",
      [](const py::object& counts_, const py::object& p_, const py::object& t_, int classes, bool sparse,
         float threshold, std::uintptr_t stream) {
        const DevArray counts = as_dev(counts_, "counts", true, "<f8");
        const DevArray p = as_dev(p_, "pred"), t = as_dev(t_, "target");
        check_ndim(p, "pred", 2);
        if (classes < 2 || counts.size != std::size_t(classes) * std::size_t(classes))
          throw py::value_error("counts must hold classes x classes entries (classes >= 2)");
        const std::size_t rows = std::size_t(p.dim(0)), cols = std::size_t(p.dim(1));
        if (sparse ? t.size != rows : t.size != p.size)
          throw py::value_error("target has shape " + shape_of(t) + ", which does not match pred " +
                                shape_of(p));
        if (cols != 1 && cols != std::size_t(classes))
          throw py::value_error("pred has " + std::to_string(cols) + " columns for " +
                                std::to_string(classes) + " classes");
        check_no_overlap(counts, "counts", p, "pred");
        check_no_overlap(counts, "counts", t, "target");
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::confusion_update(static_cast<double*>(counts.ptr), fptr(p), fptr(t), rows, cols, classes,
                                   sparse, threshold, as_stream(stream));
        }
        check_launch(e, "confusion_update");
      },
      py::arg("counts"), py::arg("pred"), py::arg("target"), py::arg("classes"), py::arg("sparse"),
      py::arg("threshold") = 0.5f, py::arg("stream") = 0,
      "counts[true, predicted] += 1 per row of a float64 (classes, classes) device array: the "
      "prediction is the row's argmax, or pred > threshold for one column.");
  m.def(
      "error_sums_update",
      [](const py::object& sums_, const py::object& p_, const py::object& t_, std::uintptr_t stream) {
        const DevArray sums = as_dev(sums_, "sums", true, "<f8");
        const DevArray p = as_dev(p_, "pred"), t = as_dev(t_, "target");
        check_same_shape(p, "pred", t, "target");
        if (sums.size != 2) throw py::value_error("sums must hold 2 entries");
        check_no_overlap(sums, "sums", p, "pred");
        check_no_overlap(sums, "sums", t, "target");
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::error_sums_update(static_cast<double*>(sums.ptr), fptr(p), fptr(t), p.size,
                                    as_stream(stream));
        }
        check_launch(e, "error_sums_update");
      },
      py::arg("sums"), py::arg("pred"), py::arg("target"), py::arg("stream") = 0,
      "sums[0] += sum|pred - target|, sums[1] += sum (pred - target)**2 on a float64 (2,) device "
      "array, in a fixed order (the same bits on every run).");

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
      "regularize",
      [](const py::object& w_, const py::object& g_, float l1, float l2, const py::object& loss_,
         std::uintptr_t stream) {
        const DevArray w = as_dev(w_, "param"), g = as_dev(g_, "grad", true);
        check_same_shape(w, "param", g, "grad");
        check_no_overlap(g, "grad", w, "param");
        float* lo = nullptr;
        if (!loss_.is_none()) {
          const DevArray loss = as_dev(loss_, "loss", true);
          if (loss.size != 1)
            throw py::value_error("regularize: loss must hold exactly one element, got shape " + shape_of(loss));
          check_no_overlap(g, "grad", loss, "loss");
          lo = fptr(loss);
        }
        cudaError_t e;
        {
          py::gil_scoped_release nogil;
          e = cu::regularize(fptr(g), fptr(w), w.size, l1, l2, lo, as_stream(stream));
        }
        check_launch(e, "regularize");
      },
      py::arg("param"), py::arg("grad"), py::arg("l1"), py::arg("l2"), py::arg("loss") = py::none(),
      py::arg("stream") = 0,
      "Keras' L1/L2 penalty in place: grad += l1*sign(param) + 2*l2*param; loss[0] += "
      "sum(l1*|param| + l2*param**2) (float64 sum, one block, deterministic) when loss is given.");
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

  register_trainer(m);
  register_persistent(m);
  register_optim(m);
}
