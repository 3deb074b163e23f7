#include "fusednn/cuda.h"

namespace fusednn {
namespace cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver/no device" error
    return 0;
  }
  return n;
}

}  // namespace cuda
}  // namespace fusednn
