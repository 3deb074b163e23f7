// CUDA kernels: the twins of fusednn/cpu.h, on device pointers, launched on
// the caller's stream. Each launcher returns the cudaError_t of its launch
// (checked by the bindings, which raise RuntimeError naming the kernel).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "fusednn/activation.h"

namespace fusednn {
namespace cuda {

// ---- device.cu
int device_count();

}  // namespace cuda
}  // namespace fusednn
