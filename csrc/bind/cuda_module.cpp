// pybind11 module fusednn._cuda: the CUDA kernels on device arrays.
#include <pybind11/pybind11.h>

#include "fusednn/cuda.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fusednn CUDA kernels (float32 device arrays via __cuda_array_interface__)";
  m.def("device_count", &fusednn::cuda::device_count, "Number of CUDA devices the driver reports (0 without a driver).");
  m.attr("archs") = FUSEDNN_CUDA_ARCHS;
}
