"""Starting a data-parallel job: the ``mpiexec`` command line for N ranks, and the
re-launch that ``fusednn train ... --ranks N`` does of itself.

MPICH (the ``mpich`` wheel the ``mpi`` extra installs) runs as root and runs more ranks
than cores without flags; Open MPI needs ``--allow-run-as-root`` as root and
``--oversubscribe`` beyond the core count, which are added when its ``mpiexec`` is the
one found.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

#: set in the ranks of a job started by :func:`relaunch`, so they do not re-launch again
LAUNCHED_ENV = "FUSEDNN_MPI_LAUNCHED"


def find_mpiexec() -> str:
    """The ``mpiexec`` to use: ``$FUSEDNN_MPIEXEC``, else the one installed beside this
    Python (by the MPI wheel), else the first on ``PATH``."""
    env = os.environ.get("FUSEDNN_MPIEXEC")
    if env:
        return env
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        raise FileNotFoundError("no mpiexec found: pip install 'fusednn[mpi]' (MPICH), or put an MPI's "
                                "mpiexec on PATH, or set FUSEDNN_MPIEXEC")
    return found


@lru_cache(maxsize=8)
def _is_open_mpi(mpiexec: str) -> bool:
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = out.stdout + out.stderr
    return "Open MPI" in text or "OpenRTE" in text or "PRRTE" in text


def mpiexec_command(ranks: int, argv: list[str], mpiexec: str | None = None) -> list[str]:
    """``[mpiexec, -n, ranks, *flags, *argv]`` for this machine (see the module doc)."""
    ranks = int(ranks)
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    mpiexec = mpiexec or find_mpiexec()
    cmd = [mpiexec, "-n", str(ranks)]
    if _is_open_mpi(mpiexec):
        cmd.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
    return cmd + list(argv)


def relaunch(ranks: int, argv: list[str], threads_per_rank: int | None = None) -> int:
    """Run ``argv`` (a command line, e.g. this program's own) as ``ranks`` MPI ranks and
    wait; returns the job's exit code. Each rank gets ``threads_per_rank`` compute
    threads (default: the usable cores divided among the ranks, at least 1)."""
    if threads_per_rank is None:
        threads_per_rank = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                   else os.cpu_count() or 1) // int(ranks))
    env = {**os.environ, LAUNCHED_ENV: "1", "FUSEDNN_NUM_THREADS": str(threads_per_rank),
           "OMP_NUM_THREADS": str(threads_per_rank)}
    return subprocess.call(mpiexec_command(ranks, argv), env=env)


def launched_by_us() -> bool:
    """Whether this process is a rank of a job that :func:`relaunch` started."""
    return os.environ.get(LAUNCHED_ENV) == "1"


def run_as_ranks(ranks: int | None, argv: list[str]) -> int | None:
    """For a command-line tool with a ``--ranks N`` option: with N > 1 in a process we
    started ourselves, re-run ``python -m fusednn ARGV`` as N MPI ranks and return the
    job's exit code; in one of those ranks, join the job (initialize, DataParallel,
    silence standard output on ranks other than 0) and return None so the caller goes
    on with its work; otherwise (no ``--ranks``) return None and change nothing."""
    if launched_by_us():
        from . import DataParallel, initialize, is_chief, set_distribution

        initialize()
        set_distribution(DataParallel())
        if not is_chief():
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the rank
        return None
    if ranks is None or ranks <= 1:
        return None
    return relaunch(ranks, [sys.executable, "-m", "fusednn", *argv])
