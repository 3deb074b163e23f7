// Device queries for the bindings, `fusednn info` and the launchers' grid sizing.
#include <atomic>
#include <cstring>

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

cudaError_t device_info(int device, DeviceInfo* info) {
  cudaDeviceProp p;
  const cudaError_t e = cudaGetDeviceProperties(&p, device);
  if (e != cudaSuccess) return e;
  std::strncpy(info->name, p.name, sizeof(info->name) - 1);
  info->name[sizeof(info->name) - 1] = '\0';
  info->major = p.major;
  info->minor = p.minor;
  info->multiprocessors = p.multiProcessorCount;
  info->total_memory = p.totalGlobalMem;
  info->l2_bytes = std::size_t(p.l2CacheSize);
  return cudaSuccess;
}

cudaError_t memory_info(std::size_t* free_bytes, std::size_t* total_bytes) {
  return cudaMemGetInfo(free_bytes, total_bytes);
}

cudaError_t current_device(int* device) { return cudaGetDevice(device); }

namespace {

constexpr int kMaxDevices = 64;
// 0 means "not read yet"; a racing first read writes the same value twice.
std::atomic<int> g_sms[kMaxDevices];
std::atomic<int> g_major[kMaxDevices];

int cached_attribute(std::atomic<int>* cache, cudaDeviceAttr attr, int fallback) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    cudaGetLastError();
    return fallback;
  }
  int v = cache[dev].load(std::memory_order_relaxed);
  if (v > 0) return v;
  if (cudaDeviceGetAttribute(&v, attr, dev) != cudaSuccess || v <= 0) {
    cudaGetLastError();
    return fallback;
  }
  cache[dev].store(v, std::memory_order_relaxed);
  return v;
}

}  // namespace

int sm_count() { return cached_attribute(g_sms, cudaDevAttrMultiProcessorCount, 1); }

int compute_major() { return cached_attribute(g_major, cudaDevAttrComputeCapabilityMajor, 0); }

cudaError_t pointer_device(const void* p, bool* is_device, int* device) {
  cudaPointerAttributes a;
  const cudaError_t e = cudaPointerGetAttributes(&a, p);
  if (e != cudaSuccess) return e;
  *is_device = a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
  *device = a.device;
  return cudaSuccess;
}

}  // namespace cuda
}  // namespace fusednn
