#!/usr/bin/env bash
# Registers, spills and stack of the kernels issue 14 added, as ptxas reports them for
# sm_90 (no GPU needed): bash benchmarks/ptxas_report.sh [OUTFILE]
# The cp.async GEMM instances are named by tile (BMxBNxBK/TMxTN), stages and layout.
set -u
cd "$(dirname "$0")/.."
out=${1:-/dev/stdout}
for f in csrc/cuda/persistent_mlp.cu csrc/cuda/train_graph.cu csrc/cuda/gemm_async.cu csrc/cuda/steps_more.cu; do
  echo "## $f"
  nvcc -arch=sm_90 -O3 -std=c++17 -Xptxas -v -Icsrc/include -c "$f" -o /dev/null 2>&1 |
    grep -E "Compiling entry|Used|spill" |
    sed -E -e 's/_ZN[^ ]*AsyncTilingILi([0-9]+)ELi([0-9]+)ELi([0-9]+)ELi([0-9]+)ELi([0-9]+)ELi([0-9]+)EEELb([01])ELb([01])E[^ ]*/sgemm_async \1x\2x\3\/\4x\5 stages=\6 ta=\7 tb=\8/' \
           -e 's/_ZN7fusednn4cuda[^ ]*(persistent_mlp_kernel|adam_table_kernel|sgd_table_kernel|fill_scalars)[^ ]*/\1/' \
           -e 's/ptxas info *: //'
done >"$out"
