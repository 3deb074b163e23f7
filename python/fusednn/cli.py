"""The ``fusednn`` command line (also ``python -m fusednn``)."""
from __future__ import annotations

import argparse
import platform
import sys


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    import fusednn
    from fusednn import backends

    try:
        from fusednn import _build_info as bi
    except ImportError:
        bi = None
    print(f"fusednn {fusednn.__version__}  (Python {platform.python_version()}, NumPy {np.__version__})")
    avail = backends.available()
    print("backends available: " + ", ".join(avail))
    for name, why in backends.unavailable().items():
        print(f"  {name}: unavailable - {why}")
    try:
        active = backends.get_backend().name
    except Exception as e:  # FUSEDNN_BACKEND names an unavailable backend
        active = f"none ({e})"
    print(f"active backend: {active}")
    from fusednn.backends import cpu as cpu_backend

    k = cpu_backend._cpu
    if k is not None:
        feats = ", ".join(f for f, on in k.cpu_features().items() if on) or "none"
        print(f"cpu: {platform.processor() or platform.machine()}; features detected: {feats}; "
              f"kernels use: {k.simd_path()}; OpenMP: {'yes' if k.openmp else 'no'}")
    print(f"threads: {fusednn.get_num_threads()}")
    if bi is not None:
        if bi.CUDA_BUILT:
            cuda = f"built for sm_{bi.CUDA_ARCHS.replace(';', ', sm_')} with nvcc {bi.CUDA_COMPILER_VERSION}"
        elif bi.CUDA_OPTION == "OFF":
            cuda = "not built (disabled with FUSEDNN_CUDA=OFF)"
        else:
            cuda = "not built (no CUDA compiler found)"
        print(f"build: {bi.CXX_COMPILER}; CUDA extension {cuda}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fusednn", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, backends and why any is unavailable, CPU features, threads"
                   ).set_defaults(func=_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
