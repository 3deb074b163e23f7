// The two-participant schedule of replicated fused runs (replica_schedule.h).
#include "replica_schedule.h"

#include <chrono>
#include <cstdint>

#include "threads.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FUSEDNN_REPLICA_PAUSE() _mm_pause()
#else
#define FUSEDNN_REPLICA_PAUSE() ((void)0)
#endif

namespace fusednn {
namespace cpu {

namespace {

// The schedule word: (step << 6) | (stage << 4) | (finished tasks << 2) | claimed task bits.
constexpr std::uint64_t kClaimMask = 3, kFinishOne = 4, kFinishMask = 12;
inline std::int64_t step_of(std::uint64_t w) { return std::int64_t(w >> 6); }
inline int stage_of(std::uint64_t w) { return int((w >> 4) & 3); }
inline std::uint64_t word_of(std::int64_t s, int stage = 0) { return (std::uint64_t(s) << 6) | (std::uint64_t(stage) << 4); }

// Wait (spin, then yield the core) until the schedule word leaves this step and stage.
void wait_past(const ReplicaSchedule& R, std::uint64_t w) {
  for (int spins = 0; (R.word.load(std::memory_order_acquire) >> 4) == (w >> 4); ++spins) {
    if (spins < 2048)
      FUSEDNN_REPLICA_PAUSE();
    else
      std::this_thread::yield();
  }
}

void fail(ReplicaSchedule& R) {
  if (!R.failed.exchange(true)) R.error = std::current_exception();
}

void participant(void* ctx, int me) {
  ReplicaSchedule& R = *static_cast<ReplicaSchedule*>(ctx);
  for (;;) {
    std::uint64_t w = R.word.load(std::memory_order_acquire);
    const std::int64_t s = step_of(w);
    if (s >= R.step1) return;
    const std::uint64_t claimed = w & kClaimMask;
    if (claimed == kClaimMask) {  // both tasks of this stage are taken: wait for the next
      if (std::this_thread::get_id() == R.caller) {
        const auto t0 = std::chrono::steady_clock::now();
        wait_past(R, w);
        R.caller_wait += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      } else {
        wait_past(R, w);
      }
      continue;
    }
    const int c = !(claimed & (1u << me)) ? me : 1 - me;  // its own task first (cache locality)
    if (!R.word.compare_exchange_weak(w, w | (1u << c), std::memory_order_acq_rel)) continue;
    const int stage = stage_of(w);
    if (!R.failed.load(std::memory_order_acquire)) {
      try {
        R.task(R.ctx, s, stage, c);
      } catch (...) {
        fail(R);
      }
    }
    // finished: the stage's second task to finish opens the next stage (or step)
    const std::uint64_t v = R.word.fetch_add(kFinishOne, std::memory_order_acq_rel) + kFinishOne;
    if ((v & kFinishMask) != 2 * kFinishOne) continue;
    bool go = !R.failed.load(std::memory_order_acquire);
    const bool last = stage + 1 == R.stages;
    if (go && last) {
      try {
        go = R.step_done(R.ctx, s);
      } catch (...) {
        fail(R);
        go = false;
      }
      R.end.store(s + 1, std::memory_order_relaxed);
    }
    R.word.store(!go ? word_of(R.step1) : last ? word_of(s + 1) : word_of(s, stage + 1), std::memory_order_release);
  }
}

}  // namespace

std::int64_t run_timed(ReplicaSchedule& R, ReplicaScratch& scratch) {
  R.word.store(word_of(R.step0));
  R.end.store(R.step0);
  R.caller = std::this_thread::get_id();
  const bool helper = num_threads() >= 2 && scratch.timing.next_helper();
  scratch.last_helper = helper;
  const auto t0 = std::chrono::steady_clock::now();
  if (helper)
    parallel_run(2, &participant, &R);  // (on this thread alone when the pool is busy)
  else
    participant(&R, 0);
  if (R.error) std::rethrow_exception(R.error);
  const std::int64_t done = R.end.load() - R.step0;
  if (done > 0) {
    const double run = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    scratch.timing.record(helper, run / double(done), R.caller_wait / run);
  }
  return done;
}

float* aligned_take(std::vector<float>& storage, std::size_t& at, std::size_t n) {
  const std::uintptr_t addr = reinterpret_cast<std::uintptr_t>(storage.data() + at);
  at += (kAlignFloats - (addr / sizeof(float)) % kAlignFloats) % kAlignFloats;
  float* p = storage.data() + at;
  at += (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  return p;
}

}  // namespace cpu
}  // namespace fusednn
