// Internal: the two-participant schedule of a replicated fused run (fusednn/cpu_replicas.h),
// shared by its two ways of splitting a step: by rows (train_replicas.cpp) and by hidden
// units (train_columns.cpp).
//
// Each step is a fixed sequence of stages, each of two tasks (task c is "its own" for
// participant c, so a task's buffers stay in one core's cache). Two participants (the
// caller and a pool worker, parallel_run) claim the current stage's tasks from one atomic
// word, their own first; whoever finishes a stage's second task runs the step hook after
// the last stage and opens the next stage (or step). A participant waits only for work
// another one has claimed and is running, never for a thread to show up: when the pool
// is busy or its worker is descheduled, the caller runs both tasks itself. Which thread
// runs a task changes nothing in the arithmetic, so the results depend on neither timing
// nor thread availability.
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

#include "fusednn/cpu_replicas.h"

namespace fusednn {
namespace cpu {

struct ReplicaSchedule {
  int stages = 2;  // per step, at most 4
  std::int64_t step0 = 0, step1 = 0;
  void* ctx = nullptr;
  // task c (0 or 1) of stage `stage` of step s
  void (*task)(void* ctx, std::int64_t s, int stage, int c) = nullptr;
  // after both tasks of step s's last stage, on the thread that finished last: false stops the run
  bool (*step_done)(void* ctx, std::int64_t s) = nullptr;

  // filled by the run
  std::atomic<std::uint64_t> word{0};
  std::atomic<std::int64_t> end{0};  // the step after the last one completed
  std::atomic<bool> failed{false};
  std::thread::id caller;            // the thread that started the run
  double caller_wait = 0.0;          // seconds it spent waiting for the other participant
  std::exception_ptr error;          // written by the participant that set `failed`
};

// Run steps [step0, step1) on the calling thread and, where scratch.timing says a helper
// pays (fusednn/cpu_replicas.h: ReplicaTiming), a pool worker; records the run's timing;
// rethrows a task's exception. Returns the steps completed.
std::int64_t run_timed(ReplicaSchedule& R, ReplicaScratch& scratch);

// n floats from `storage` at `at`, starting on a cache line (storage must have room:
// aligned_floats_needed).
float* aligned_take(std::vector<float>& storage, std::size_t& at, std::size_t n);
constexpr std::size_t kAlignFloats = 16;  // 64 bytes: one cache line
inline std::size_t aligned_floats_needed(std::size_t n) { return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats + kAlignFloats; }

}  // namespace cpu
}  // namespace fusednn
