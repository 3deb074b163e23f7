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

// The losses replicated runs take: mse and the cross-entropies.
inline bool replica_loss(LossKind loss) {
  return loss == LossKind::mse || loss == LossKind::xent_binary || loss == LossKind::xent_categorical ||
         loss == LossKind::xent_sparse;
}

// The fused loop with an empty update phase (train.cpp): the replicas' hook updates.
std::int64_t train_steps_no_update(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                                   const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                                   std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done);

// Why the run cannot use replicas (nullptr: it can): only Dense chains with their
// activations (no post steps, graph blocks, frozen layers or constraints), mse or a
// cross-entropy, an elementwise update (no clipnorm/global_clipnorm), no metric
// accumulators and no caller's `between` hook (an MPI rank's data parallelism).
const char* replicas_ineligible(const std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                                const TrainData& data);

// Whether a replicated run asks a pool worker to help. On a machine with more runnable
// threads than cores (another process, or OpenBLAS's workers, which spin for about
// 0.1 s after each product) the helper is descheduled in the middle of a replica and
// the caller waits out its time slice, or both threads run slower than one alone. So a
// run with the helper counts as slow when the calling thread spent more than
// kMaxWaitShare of it waiting, or when its time per step exceeded the latest runs'
// alone; after a slow run the next runs go to the caller alone (1, 2, 4, ... up to
// kMaxAlone runs, each timed), then the helper is tried again; a fast run resets that.
// Timing only: the numbers are the same either way.
struct ReplicaTiming {
  static constexpr double kMaxWaitShare = 0.25;
  static constexpr int kMaxAlone = 64;
  double alone = 0.0;  // moving average of the seconds per step alone (0: not timed yet)
  int alone_left = 0, alone_next = 1;
  bool next_helper();
  void record(bool helper, double seconds_per_step, double wait_share);
};

// The second replica's buffers and the helper timing, kept by the trainer between runs.
struct ReplicaScratch {
  std::vector<float> storage;  // batch, activations and gradients (cache-line aligned pieces)
  std::vector<float> losses;   // its step losses
  ReplicaTiming timing;
  int last_helper = -1;  // whether the latest run asked for a helper (-1: no run yet)
  const char* last_split = nullptr;  // "rows" or "columns": how the latest run split its steps
};

// Why the run cannot split its steps by hidden units (train_columns.cpp; nullptr: it
// can): only two Dense layers, at least 16 inputs, the hidden layer at least 32 units
// wide with an activation whose derivative comes from its output, the output layer
// linear, mse or a cross-entropy, no sample weights.
const char* columns_ineligible(const std::vector<DenseBuffers>& layers, LossKind loss, const TrainData& data);

// train_steps_replicated for a model columns_ineligible accepts: each step's hidden units
// split between the two tasks (train_columns.cpp).
std::int64_t train_steps_columns(std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                                 const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                                 std::int64_t iterations, bool stop_on_nonfinite, std::int64_t* steps_done,
                                 ReplicaScratch& scratch);

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
