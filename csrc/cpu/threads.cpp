#include <atomic>

#include "fusednn/cpu.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fusednn {
namespace cpu {

namespace {
int initial_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
std::atomic<int> g_threads{0};
}  // namespace

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = initial_threads();
    g_threads.store(n);
  }
  return n;
}

void set_num_threads(int n) {
#ifdef _OPENMP
  g_threads.store(n < 1 ? 1 : n);
#else
  (void)n;
  g_threads.store(1);
#endif
}

}  // namespace cpu
}  // namespace fusednn
