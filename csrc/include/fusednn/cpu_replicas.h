// Data-parallel replicas inside one fused CPU run (csrc/cpu/train_replicas.cpp):
// each step's batch rows are split in two replicas, run by two threads where the pool
// has them, each forward and backward on its own rows with its own activation and
// gradient buffers (so they stay in one core's cache); the gradients are then summed in
// a fixed order and the shared parameters updated. A replica is the fused loop over
// its share of each step (TrainData::step_starts, as an MPI rank's).
#pragma once
#include <cstdint>
#include <vector>

#include "fusednn/trainer.h"

namespace fusednn {
namespace cpu {

// The fused loop with an empty update phase (train.cpp): the replicas' hook updates.
std::int64_t train_steps_no_update(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                                   const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                                   std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done);

// Why the run cannot use replicas (nullptr: it can): only Dense chains with their
// activations (no post steps, graph blocks, frozen layers or constraints), mse or a
// cross-entropy, an elementwise update (no clipnorm/global_clipnorm), no metric
// accumulators and no caller's data parallelism (step_starts, between).
const char* replicas_ineligible(const std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                                const TrainData& data);

// Whether a replicated run asks a pool worker to help (mode 1) or runs on the caller
// alone (mode 0): the faster per step so far, each mode kept for at least kSettle runs
// (whose first is not timed: it pays for waking the pool), the slower one tried again
// after kProbeEvery runs. Timing only: the numbers are the same either way.
struct ReplicaTiming {
  static constexpr int kSettle = 3, kProbeEvery = 32;
  double avg[2] = {0.0, 0.0};  // moving average of the seconds per step, per mode
  int mode = 1, runs_in_mode = 0;
  bool next_helper();
  void record(double seconds_per_step);
};

// The second replica's buffers and the helper timing, kept by the trainer between runs.
struct ReplicaScratch {
  std::vector<float> storage;  // batch, activations and gradients (cache-line aligned pieces)
  std::vector<float> losses;   // its step losses
  ReplicaTiming timing;
  int last_helper = -1;  // whether the latest run asked for a helper (-1: no run yet)
};

// Run steps [step0, step1) as train_steps does (same arguments and results: the
// iteration count after the run, *steps_done), each step's rows split between two
// replicas (see train_replicas.cpp). It runs on two pool threads when the pool has a
// free worker and that has been the faster way on this trainer, else on the calling
// thread alone, with the same results either way.
// The caller checked replicas_ineligible first.
std::int64_t train_steps_replicated(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                                    const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                                    std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done,
                                    ReplicaScratch& scratch);

}  // namespace cpu
}  // namespace fusednn
