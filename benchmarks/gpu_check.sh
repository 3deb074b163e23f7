#!/usr/bin/env bash
# One run on a GPU machine with no internet (Python with numpy, cupy, torch, pytest,
# pybind11, scikit-build-core, cmake and ninja preinstalled), from the repo root:
#
#     bash benchmarks/gpu_check.sh
#
# builds fusednn for sm_90 only (FUSEDNN_CUDA_ARCHS=90, so it compiles fast), prints
# `fusednn info` and the ptxas resource usage of the new kernels, runs the GPU tests
# (the opt-in graph and persistent trainer paths, the opt-in trainer steps and the
# cp.async GEMM variants included), the kernel and training benchmarks (every trainer path beside PyTorch
# CUDA eager and our cpu backend), checks issue 14's targets, and writes
# gpu_check.log, build.log, ptxas.txt, bench_cuda.{json,txt}, bench_training.{json,txt}
# and targets.txt to $OUT when set. Each stage has a time limit and a failure is
# recorded, not fatal; the whole run keeps within BUDGET seconds (default 450, under
# 8 minutes; a smaller BUDGET still runs every stage, with less time for the later
# ones); the benchmark tables and the target check print last.
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

BUDGET=${BUDGET:-450}
START=$(date +%s)
OUTDIR=${OUT:-}
if [ -n "$OUTDIR" ]; then mkdir -p "$OUTDIR"; else OUTDIR=$(mktemp -d); fi
SUMMARY=()
PY=${PYTHON:-python3}

elapsed() { echo $(( $(date +%s) - START )); }

# stage NAME CAP_SECONDS RESERVE_SECONDS CMD...: run CMD with a limit of CAP seconds,
# or less so that RESERVE seconds stay for the stages after it.
stage() {
  local name=$1 cap=$2 reserve=$3
  shift 3
  local left=$(( BUDGET - $(elapsed) - reserve ))
  local limit=$(( cap < left ? cap : left ))
  echo
  echo "=== [t=$(elapsed)s] STAGE: $name (limit ${limit}s) ==="
  echo "+ $*"
  if [ "$limit" -lt 10 ]; then
    echo "--- $name: SKIPPED (out of time)"
    SUMMARY+=("$name: skipped, out of time")
    return 0
  fi
  local t0
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@"
  local rc=$?
  local what="rc=$rc"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && what="TIMED OUT after ${limit}s"
  echo "--- $name: $what ($(( $(date +%s) - t0 ))s)"
  SUMMARY+=("$name: $what ($(( $(date +%s) - t0 ))s)")
  return 0
}

build() {
  # FUSEDNN_CUDA=ON: a missing CUDA compiler is an error, not a CPU-only build.
  FUSEDNN_CUDA=ON FUSEDNN_CUDA_ARCHS=90 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip install --no-build-isolation --no-deps -v . >"$OUTDIR/build.log" 2>&1
  local rc=$?
  grep -E "ptxas|warning|error|Error" "$OUTDIR/build.log" | grep -v "^ *$" | tail -n 40
  tail -n 5 "$OUTDIR/build.log"
  return $rc
}

# timeout runs programs, not shell functions: export what `bash -c build` needs.
export -f build
export OUTDIR PY

main() {
  echo "=== fusednn gpu_check: $(date -u +%FT%TZ), budget ${BUDGET}s, output in $OUTDIR ==="
  stage "environment" 30 300 bash -c \
    "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv; \
     nvcc --version | tail -n 2; \
     $PY -c 'import sys, numpy, cupy; print(sys.version.split()[0], \"numpy\", numpy.__version__, \"cupy\", cupy.__version__)'; \
     $PY -c 'import torch; print(\"torch\", torch.__version__, torch.cuda.is_available())' || true; \
     $PY -c 'import os, sysconfig; i = sysconfig.get_paths()[\"include\"]; print(\"Python.h in\", i, os.path.exists(os.path.join(i, \"Python.h\")))'; \
     git log --oneline -1 2>/dev/null || true"
  stage "build (pip install, sm_90)" 200 150 bash -c build
  stage "fusednn info" 30 140 "$PY" -m fusednn info
  stage "ptxas resource usage (new kernels)" 60 260 bash -c \
    "bash benchmarks/ptxas_report.sh $OUTDIR/ptxas.txt; grep -c 'Used' $OUTDIR/ptxas.txt"
  # --maxfail rather than -x: one run should show every broken kernel, not the first.
  stage "GPU tests: CUDA kernels and backend" 110 180 \
    "$PY" -m pytest -q -p no:cacheprovider -rs --maxfail=10 --durations=5 \
    tests/kernels/test_cuda_kernels.py tests/kernels/test_cuda_backend.py tests/tools/test_build.py
  # The fused trainer against the per-op cuda path (bit for bit) and the cpu backend.
  stage "GPU tests: fused trainer" 60 200 \
    "$PY" -m pytest -q -p no:cacheprovider -rs --maxfail=10 --durations=5 tests/model/test_cuda_train.py
  # The opt-in CUDA trainer steps (FUSEDNN_CUDA_TRAINER_STEPS=1, csrc/cuda/steps_more.cu: PReLU,
  # LayerNormalization, LeakyReLU/ELU/ReLU(args), Softmax, Gaussian noise, frozen BatchNormalization,
  # Concatenate/Add graphs, weight constraints; and Dropout/BatchNormalization): fused cuda against
  # per-op cuda and fused cpu, the Gaussian factor kernel against the host Philox normals bit for bit.
  stage "GPU tests: opt-in trainer steps" 90 170 env FUSEDNN_CUDA_TRAINER_STEPS=1 \
    "$PY" -m pytest -q -p no:cacheprovider -rs --maxfail=10 --durations=5 tests/model/test_cuda_trainer_steps.py \
    tests/model/test_dropout_batchnorm.py::test_cuda_matches_cpu
  # The opt-in paths (persistent kernel, graph replay) against the per-op path and the cpu
  # backend, and their host-side plan/cache/dispatch logic.
  stage "GPU tests: persistent and graph trainer paths" 100 150 \
    "$PY" -m pytest -q -p no:cacheprovider -rs --maxfail=10 --durations=5 tests/model/test_cuda_fast_paths.py \
    tests/model/test_cuda_paths.py
  stage "benchmark" 130 90 "$PY" benchmarks/bench_cuda.py --out "$OUTDIR"
  # Whole training runs: the seed program and the larger MLP, fusednn on cuda (and cpu)
  # against a PyTorch CUDA eager loop doing the same work.
  stage "training benchmark" 100 50 bash -c \
    "$PY -m fusednn bench training --impl fusednn-cuda --impl fusednn-cuda-graph --impl fusednn-cuda-persist \
       --impl torch-cuda --impl fusednn-cpu --json $OUTDIR/bench_training.json | tee $OUTDIR/bench_training.txt"
  stage "GPU tests: the rest (-m gpu)" 75 10 \
    "$PY" -m pytest -q -p no:cacheprovider -m gpu --ignore=tests/kernels/test_cuda_kernels.py --ignore=tests/kernels/test_cuda_backend.py \
    --ignore=tests/model/test_cuda_train.py --ignore=tests/model/test_cuda_fast_paths.py \
    --ignore=tests/model/test_cuda_trainer_steps.py
  echo
  echo "=== [t=$(elapsed)s] SUMMARY ==="
  printf '  %s\n' "${SUMMARY[@]}"
  if [ -f "$OUTDIR/bench_cuda.txt" ]; then
    echo
    cat "$OUTDIR/bench_cuda.txt"
  else
    echo "no benchmark table (see the benchmark stage above)"
  fi
  [ -f "$OUTDIR/bench_training.txt" ] && { echo; cat "$OUTDIR/bench_training.txt"; }
  echo
  "$PY" benchmarks/check_targets.py "$OUTDIR" || true
}

main 2>&1 | tee "$OUTDIR/gpu_check.log"
