#!/usr/bin/env bash
# Build fusednn's C++ extension with AddressSanitizer + UndefinedBehaviorSanitizer
# (float-cast-overflow included; any undefined behaviour aborts) into a separate
# directory and run tests against it.
#
#   bash tests/sanitize.sh            the kernel + hostile-input subset (default)
#   bash tests/sanitize.sh --all      the whole test suite
#   bash tests/sanitize.sh -- ARGS    pytest ARGS instead of the default selection
#
# PYTHON (default python3) must already have the test dependencies (pip install
# ".[test]"). The sanitized build goes to FUSEDNN_SANITIZE_DIR (default
# build/sanitize: site/ holds the installed package, build/ the CMake tree, kept
# for incremental rebuilds); the normal install is not touched. The CUDA extension
# is not built (the sanitizers cover host code). Needs gcc or clang with libasan.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DIR=${FUSEDNN_SANITIZE_DIR:-build/sanitize}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CXX=${CXX:-g++}

SAN="-fsanitize=address,undefined -fsanitize=float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow"
CXXFLAGS_SAN="$SAN -fno-omit-frame-pointer -g"

# Reuse the interpreter's build backend when it has one (offline, incremental);
# otherwise pip fetches it into an isolated build environment.
isolation=--no-build-isolation
"$PY" -c "import scikit_build_core, pybind11" 2>/dev/null || isolation=
echo "== building the sanitized extension in $DIR"
t0=$(date +%s)
FUSEDNN_CUDA=OFF "$PY" -m pip install -q --no-deps $isolation --upgrade --target "$DIR/site" \
  -C build-dir="$DIR/build" -C cmake.build-type=RelWithDebInfo \
  -C "cmake.define.CMAKE_CXX_FLAGS=$CXXFLAGS_SAN" \
  -C "cmake.define.CMAKE_MODULE_LINKER_FLAGS=$SAN" \
  -C "cmake.define.CMAKE_SHARED_LINKER_FLAGS=$SAN" \
  .
t1=$(date +%s)
echo "== build: $((t1 - t0)) s"

# The Python host is not instrumented, so the ASan runtime must be loaded first, and
# libstdc++ with it (else ASan finds no __cxa_throw to intercept and aborts at the
# extension's first C++ exception).
libasan=$("$CXX" -print-file-name=libasan.so)
libstdcxx=$("$CXX" -print-file-name=libstdc++.so)
[ -f "$libasan" ] || { echo "libasan.so not found (via $CXX -print-file-name)"; exit 2; }

if [ "${1:-}" = "--all" ]; then
  args=(tests -q -p no:cacheprovider)
elif [ "${1:-}" = "--" ]; then
  shift
  args=("$@")
else
  # every kernel family through its binding, the hostile inputs, the fused trainer
  args=(tests/kernels tests/model/test_bad_input.py tests/model/test_fused.py tests/data/test_metrics.py
        tests/data/test_hardening_data.py -q -p no:cacheprovider)
fi

# Load the sanitized package, not an editable install's redirect (scikit-build-core
# puts one first on sys.meta_path) nor the normal install (PYTHONPATH comes first).
# A sitecustomize (run after the .pth files) drops the redirect in every Python
# process of the run, the subprocesses of CLI tests included.
mkdir -p "$DIR/hook"
cat > "$DIR/hook/sitecustomize.py" <<'PY'
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]
PY
runner='
import sys
import fusednn, fusednn.backends.cpu as c
assert fusednn.__file__.startswith(sys.argv[1]), fusednn.__file__
assert c._cpu is not None, c.IMPORT_ERROR
print("== testing", fusednn.__file__, "with", c._cpu.__file__, flush=True)
import pytest
# --capture=sys: pytest leaves file descriptor 2 alone, so a UBSan report (written to
# stderr) is seen even when it ends the process
sys.exit(pytest.main(["--capture=sys", *sys.argv[2:]]))
'
# ASan also writes its reports to files, shown below.
rm -f "$DIR"/report.*
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$DIR/report${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$DIR/report${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export FUSEDNN_BACKEND=${FUSEDNN_BACKEND:-cpu}
status=0
LD_PRELOAD="$libasan $libstdcxx" PYTHONPATH="$DIR/hook:$DIR/site${PYTHONPATH:+:$PYTHONPATH}" \
  "$PY" -c "$runner" "$DIR/site" "${args[@]}" || status=$?
echo "== tests: $(( $(date +%s) - t1 )) s"
if compgen -G "$DIR/report.*" > /dev/null; then
  echo "== sanitizer reports:"
  cat "$DIR"/report.*
  [ $status -ne 0 ] || status=1
fi
[ $status -eq 0 ] && echo "== sanitizers: clean" || echo "== FAILED (status $status)"
exit $status
