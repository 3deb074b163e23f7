#!/usr/bin/env bash
# Reproduce the CPU numbers of benchmarks/RESULTS.md and the README's table:
#     bash benchmarks/run_cpu.sh            (about 10 minutes on 2 cores)
# Results go to benchmarks/results/ (JSON + the printed tables in cpu_*.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
R=benchmarks/results
fusednn info | tee $R/cpu_info.txt
fusednn bench --backend cpu --backend numpy --json $R/cpu_kernels.json | tee $R/cpu_kernels.txt
fusednn bench training --json $R/cpu_training.json | tee $R/cpu_training.txt
python3 benchmarks/fit_memory.py | tee $R/cpu_fit_memory.txt
for ex in digits breast_cancer diabetes; do python3 examples/$ex.py; done | tee $R/cpu_examples.txt
python3 benchmarks/bench_sklearn.py --repeats 3 --threads 1 | tee $R/cpu_sklearn.txt
