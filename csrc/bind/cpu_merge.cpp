// fusednn._cpu bindings of the elementwise merge kernels (fusednn/cpu_merge.h) that the
// fused trainer's graph blocks use, for the kernel tests: each operand is a column block
// [col, col + cols) of a C-contiguous 2-D float32 array, so the strided form (a model
// input read in place from the packed batch) is tested too.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "checks.h"
#include "fusednn/cpu_merge.h"

namespace py = pybind11;
using namespace fusednn;
using namespace fusednn::bind;

namespace {
struct Block {
  py::array a;
  int rows, ld, col;
};

Block block_of(const py::object& obj, const char* name, int col, int cols) {
  py::array a = as_f32(obj, name);
  check_ndim(a, name, 2);
  const int rows = to_int_dim(a.shape(0), name), ld = to_int_dim(a.shape(1), name);
  if (col < 0 || cols < 0 || col + cols > ld)
    throw py::value_error(std::string(name) + ": columns [" + std::to_string(col) + ", " +
                          std::to_string(col + cols) + ") are outside its " + std::to_string(ld));
  return {a, rows, ld, col};
}

py::array result(const py::object& out_, int rows, int cols, const Block& a, const Block* b) {
  py::array y = out_or_new(out_, {rows, cols});
  check_no_overlap(y, a.a, "a");
  if (b) check_no_overlap(y, b->a, "b");
  return y;
}
}  // namespace

void register_merge_kernels(py::module_& m) {
  m.def(
      "merge_binary",
      [](const py::object& a_, const py::object& b_, int op, int a_col, int b_col, const py::object& cols_,
         const py::object& out_) {
        if (op < int(MergeOp::add) || op > int(MergeOp::mul))
          throw py::value_error("op must be 0 (add), 1 (subtract) or 2 (multiply), got " + std::to_string(op));
        py::array a0 = as_f32(a_, "a");
        check_ndim(a0, "a", 2);
        const int cols = cols_.is_none() ? int(a0.shape(1)) - a_col : cols_.cast<int>();
        const Block a = block_of(a_, "a", a_col, cols), b = block_of(b_, "b", b_col, cols);
        if (a.rows != b.rows)
          throw py::value_error("a and b have " + std::to_string(a.rows) + " and " + std::to_string(b.rows) + " rows");
        py::array y = result(out_, a.rows, cols, a, &b);
        float* py_ = fptr(y);
        const float *pa = cfptr(a.a) + a.col, *pb = cfptr(b.a) + b.col;
        py::gil_scoped_release nogil;
        cpu::merge_binary(py_, cols, pa, a.ld, pb, b.ld, a.rows, cols, MergeOp(op));
        py::gil_scoped_acquire gil;
        return y;
      },
      py::arg("a"), py::arg("b"), py::arg("op"), py::arg("a_col") = 0, py::arg("b_col") = 0,
      py::arg("cols") = py::none(), py::arg("out") = py::none(),
      "a[:, a_col:a_col+cols] op b[:, b_col:b_col+cols] (op 0 add, 1 subtract, 2 multiply), the graph blocks' "
      "elementwise merge kernel.");
  m.def(
      "merge_scale",
      [](const py::object& x_, float s, int x_col, const py::object& cols_, const py::object& out_) {
        py::array x0 = as_f32(x_, "x");
        check_ndim(x0, "x", 2);
        const int cols = cols_.is_none() ? int(x0.shape(1)) - x_col : cols_.cast<int>();
        const Block x = block_of(x_, "x", x_col, cols);
        py::array y = result(out_, x.rows, cols, x, nullptr);
        float* py_ = fptr(y);
        const float* px = cfptr(x.a) + x.col;
        py::gil_scoped_release nogil;
        cpu::merge_scale(py_, cols, px, x.ld, s, x.rows, cols);
        py::gil_scoped_acquire gil;
        return y;
      },
      py::arg("x"), py::arg("s"), py::arg("x_col") = 0, py::arg("cols") = py::none(), py::arg("out") = py::none(),
      "x[:, x_col:x_col+cols] * s in float32, the graph blocks' Average/Subtract gradient kernel.");
}
