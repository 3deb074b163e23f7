#include <atomic>

#include "fusednn/cpu.h"

namespace fusednn {
namespace cpu {

namespace {
Features detect() {
  Features f;
#if defined(FUSEDNN_HAVE_AVX2_TU) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
#endif
  return f;
}
std::atomic<bool> g_force_portable{false};
}  // namespace

const Features& features() {
  static const Features f = detect();
  return f;
}

bool use_avx2() {
  const Features& f = features();
  return f.avx2 && f.fma && !g_force_portable.load(std::memory_order_relaxed);
}

void force_portable(bool on) { g_force_portable.store(on); }

const char* simd_path() { return use_avx2() ? "avx2+fma" : "portable"; }

}  // namespace cpu
}  // namespace fusednn
