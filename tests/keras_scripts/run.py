"""Run the Keras-script suite and compare each script's results with real Keras 3.

Each file in ``scripts/`` is an ordinary Keras 3 user script: it does ``import keras``,
seeds with ``keras.utils.set_random_seed(KSCRIPT_SEED)`` (an environment variable, 0 by
default), trains for a few seconds on scikit-learn's built-in or generated data and leaves
a dict ``results`` of a few numbers (final loss, held-out metrics, ...).

``--keras fusednn`` (the default) runs each script with ``fusednn.keras`` put in place of
``keras`` in ``sys.modules`` (and ``keras.<sub>`` for each of its submodules), which is the
same as changing the script's import line to ``from fusednn import keras``; ``--keras real``
runs them with the installed Keras (used once to write ``reference.json``, see README.md in
this folder). Scripts run one after another in this process, each in a fresh temporary
working directory with its output captured and a time limit (SIGALRM).

The comparison rule (``classify``): each script runs with several seeds (default 0, 1, 2)
and each float result is averaged over them; the reference is real Keras over its seeds
(0-4: mean ``m``, sample standard deviation ``s`` of the single-seed values). Per key:

* a score in [0, 1] (key containing acc, auc, precision, recall, r2, f1):
  ``|mean - m| <= max(0.03, 3 s)``;
* any other float (losses, errors, learning rates): ``|mean - m| <= max(0.10 |m|, 3 s, 1e-6)``;
* ints, bools, strings and lists: equal to Keras' value in every run, where all Keras seeds
  agree on it (otherwise not compared).

Averaging over three seeds makes the noise of the compared mean about 0.7 s (Keras' mean
over five seeds and ours over three), so a band of 3 s is about four standard errors: a
correct implementation is rarely called WRONG by chance, and a shift by more than Keras'
own seed-to-seed spread is caught.

A script is PASS when it ran and every key is within its band, WRONG when it ran and some
key is outside (or missing), FAIL when it raised or timed out (the first line of the error
is kept).

Command line: ``python tests/keras_scripts/run.py`` (or ``python -m tests.keras_scripts``)
prints the table; see ``--help``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import runpy
import signal
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "scripts"
REFERENCE = HERE / "reference.json"
EXPECTED = HERE / "expected_pass.txt"

SCORE_KEY = re.compile(r"acc|auc|precision|recall|r2|f1", re.IGNORECASE)
SCORE_FLOOR = 0.03
REL_FLOOR = 0.10
SPREAD_FACTOR = 3.0


class ScriptTimeout(Exception):
    """Raised by the SIGALRM handler when a script runs past its time limit."""


def script_names() -> list[str]:
    """The suite's scripts, by file stem, in order."""
    return sorted(p.stem for p in SCRIPTS.glob("s[0-9]*.py"))


def use_fusednn_keras() -> None:
    """Make ``import keras`` (and ``keras.<sub>``) resolve to ``fusednn.keras``."""
    import fusednn.keras as fk

    for name in [n for n in sys.modules if n == "keras" or n.startswith("keras.")]:
        del sys.modules[name]
    sys.modules["keras"] = fk
    for name, mod in list(sys.modules.items()):
        if name.startswith("fusednn.keras."):
            sys.modules["keras." + name[len("fusednn.keras."):]] = mod


def _plain(value):
    """Results as JSON values: NumPy scalars/arrays to floats/ints/lists."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:
        import numpy as np

        arr = np.asarray(value)
        if arr.dtype == bool and arr.ndim == 0:
            return bool(arr)
        if arr.ndim == 0:
            return int(arr) if np.issubdtype(arr.dtype, np.integer) else float(arr)
        return arr.tolist()
    except Exception:  # noqa: BLE001 - anything else is recorded by its text
        return repr(value)


def _first_error_line(exc: BaseException) -> str:
    """``Type: first line of the message (where)``, where is the innermost frame's file:line."""
    msg = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {msg[0] if msg else ''}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        where = Path(frames[-1].filename)
        line += f" ({'/'.join(where.parts[-2:])}:{frames[-1].lineno})"
    return line


@contextlib.contextmanager
def _recording_fits(record: dict | None):
    """While a script runs under fusednn: append to ``record["fits"]`` each ``fit``'s path,
    None for the fused native trainer, else the reason it took the per-op path (the
    model's ``fused_reason`` once fit has built it)."""
    if record is None:
        yield
        return
    from fusednn.training.trainer import Trainer

    fit = Trainer.fit
    fits = record.setdefault("fits", [])

    def recording_fit(self, *args, **kwargs):
        try:
            return fit(self, *args, **kwargs)
        finally:
            fits.append(self.fused_reason)

    Trainer.fit = recording_fit
    try:
        yield
    finally:
        Trainer.fit = fit


def fused_summary(records: list[dict]) -> str:
    """``fused`` when every fit of these runs took the fused trainer, ``-`` with no fit,
    else ``per-op: <first reason>``."""
    fits = [f for r in records for f in r.get("fits", [])]
    if not fits:
        return "-"
    reasons = [f for f in fits if f is not None]
    return "fused" if not reasons else f"per-op: {reasons[0]}"


def run_script(name: str, seed: int = 0, timeout: float = 60.0, keras_kind: str = "fusednn") -> dict:
    """Run one script in this process; return its status, results or first error line, and time."""
    path = SCRIPTS / f"{name}.py"
    old_cwd, old_seed = os.getcwd(), os.environ.get("KSCRIPT_SEED")
    out = io.StringIO()
    record: dict = {"name": name, "seed": seed}
    t0 = time.perf_counter()
    use_alarm = hasattr(signal, "SIGALRM") and timeout > 0

    def on_alarm(signum, frame):  # noqa: ARG001
        raise ScriptTimeout(f"timed out after {timeout:.0f} s")

    with tempfile.TemporaryDirectory(prefix=f"kscript_{name}_") as tmp:
        os.chdir(tmp)
        os.environ["KSCRIPT_SEED"] = str(seed)
        if use_alarm:
            old_handler = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            if keras_kind == "fusednn":
                use_fusednn_keras()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
                    _recording_fits(record if keras_kind == "fusednn" else None):
                namespace = runpy.run_path(str(path), run_name="__main__")
            results = namespace.get("results")
            if not isinstance(results, dict):
                raise RuntimeError("the script left no `results` dict")
            record.update(status="ran", results={k: _plain(v) for k, v in results.items()})
        except BaseException as exc:  # noqa: BLE001 - a script's failure is data, not a crash
            if isinstance(exc, KeyboardInterrupt):
                raise
            record.update(status="error", error=_first_error_line(exc))
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_handler)
            os.chdir(old_cwd)
            if old_seed is None:
                os.environ.pop("KSCRIPT_SEED", None)
            else:
                os.environ["KSCRIPT_SEED"] = old_seed
            if keras_kind == "real":
                with contextlib.suppress(Exception):
                    import keras

                    keras.backend.clear_session()
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def tolerance(key: str, ref_values: list[float]) -> tuple[float, float]:
    """(centre, allowed absolute deviation) for a float key, from Keras' seed-to-seed values."""
    m = statistics.fmean(ref_values)
    s = statistics.stdev(ref_values) if len(ref_values) > 1 else 0.0
    if SCORE_KEY.search(key):
        return m, max(SCORE_FLOOR, SPREAD_FACTOR * s)
    return m, max(REL_FLOOR * abs(m), SPREAD_FACTOR * s, 1e-6)


def classify(records: list[dict], reference: dict) -> tuple[str, str]:
    """PASS / WRONG / FAIL / NOREF for one script's runs (one per fusednn seed), with a reason.

    Floats are compared as the mean over these runs against the mean over Keras' seeds;
    exact values (ints, bools, strings, lists) must match in every run."""
    if isinstance(records, dict):
        records = [records]
    for r in records:
        if r["status"] != "ran":
            return "FAIL", r.get("error", "")
    ref_runs = [r for r in reference.get("runs", []) if r.get("status") == "ran"]
    if not ref_runs:
        return "NOREF", "no successful Keras reference run"
    bad = []
    for key in ref_runs[0]["results"]:
        ref_vals = [r["results"].get(key) for r in ref_runs]
        if any(key not in r["results"] for r in records):
            bad.append(f"{key} missing")
            continue
        xs = [r["results"][key] for r in records]
        first = ref_vals[0]
        if isinstance(first, float):
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in xs):
                bad.append(f"{key}={xs!r}")
                continue
            x = statistics.fmean(float(v) for v in xs)
            m, tol = tolerance(key, [float(v) for v in ref_vals])
            if abs(x - m) > tol:
                bad.append(f"{key}={x:.4g} (keras {m:.4g}±{tol:.2g})")
        elif all(v == first for v in ref_vals) and any(x != first for x in xs):
            bad.append(f"{key}={[x for x in xs if x != first][0]!r} (keras {first!r})")
    if bad:
        return "WRONG", "; ".join(bad)
    return "PASS", ""


def load_reference(path: Path = REFERENCE) -> dict:
    """The committed real-Keras results (empty structure if the file is absent)."""
    if not path.exists():
        return {"scripts": {}}
    return json.loads(path.read_text())


def load_expected(path: Path = EXPECTED) -> list[str]:
    """Script names listed (one per line, # comments) as expected to PASS."""
    if not path.exists():
        return []
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def run_suite(names: list[str], seeds: list[int], timeout: float, keras_kind: str) -> list[dict]:
    """Run every script for every seed; return the records."""
    records = []
    for name in names:
        for seed in seeds:
            records.append(run_script(name, seed, timeout, keras_kind))
    return records


def table(rows: list[tuple[str, str, str, float, str]]) -> str:
    """The per-script table as text (status, seconds, the fit path, detail), with the
    counts on the last lines."""
    width = max(len(r[0]) for r in rows) if rows else 10
    lines = [f"{'script':<{width}}  {'status':<6}  {'s':>6}  {'fit path':<8}  detail"]
    for name, status, detail, secs, path in rows:
        short = path if not path.startswith("per-op") else "per-op"
        why = path[len("per-op: "):] if short == "per-op" else ""
        lines.append(f"{name:<{width}}  {status:<6}  {secs:6.2f}  {short:<8}  "
                     f"{'; '.join(x for x in (detail, why) if x)[:160]}")
    n_pass = sum(r[1] == "PASS" for r in rows)
    counts = {k: sum(r[1] == k for r in rows) for k in ("PASS", "WRONG", "FAIL", "NOREF")}
    lines.append(f"{n_pass} of {len(rows)} scripts run unchanged and match Keras within noise "
                 f"({', '.join(f'{k} {v}' for k, v in counts.items() if v)})")
    with_fit = [r for r in rows if r[4] != "-"]
    if with_fit:
        n_fused = sum(r[4] == "fused" for r in with_fit)
        lines.append(f"{n_fused} of {len(with_fit)} scripts that call fit train in the fused trainer in every fit")
    return "\n".join(lines)


def write_reference(records: list[dict], keras_version: str, backend: str, command: str) -> dict:
    """Store real-Keras run records (from one or several --json files) as reference.json."""
    ref = {"keras_version": keras_version, "backend": backend, "command": command,
           "seeds": sorted({r["seed"] for r in records}), "scripts": {}}
    for r in sorted(records, key=lambda r: (r["name"], r["seed"])):
        ref["scripts"].setdefault(r["name"], {"runs": []})["runs"].append(
            {k: r[k] for k in ("seed", "status", "results", "error", "seconds") if k in r})
    REFERENCE.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    return ref


def update_reference(records: list[dict], keras_version: str, backend: str) -> dict:
    """Add or replace, in the committed reference.json, only the scripts these real-Keras run
    records are for (other scripts' entries stay as they are); the Keras version and backend
    must be the reference's own, so every entry comes from the same Keras."""
    ref = load_reference(REFERENCE)
    if not ref.get("scripts"):
        raise SystemExit(f"{REFERENCE} is missing or empty: write it whole with --reference-from (no --update)")
    for what, have, given in (("version", ref.get("keras_version"), keras_version),
                              ("backend", ref.get("backend"), backend)):
        if given and have != given:
            raise SystemExit(f"--update: the reference is Keras {what} {have!r}, these runs are {given!r}")
    seeds = sorted({r["seed"] for r in records})
    if seeds != ref.get("seeds"):
        raise SystemExit(f"--update: the reference has seeds {ref.get('seeds')}, these runs have {seeds}")
    new: dict = {}
    for r in sorted(records, key=lambda r: (r["name"], r["seed"])):
        new.setdefault(r["name"], {"runs": []})["runs"].append(
            {k: r[k] for k in ("seed", "status", "results", "error", "seconds") if k in r})
    ref["scripts"].update(new)
    REFERENCE.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    return {"scripts": new, "seeds": seeds}


def main(argv: list[str] | None = None) -> int:
    """Command line: run the suite, print the table; optionally write JSON or the reference."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="scripts to run (file stems or prefixes); default all")
    ap.add_argument("--keras", choices=("fusednn", "real"), default="fusednn",
                    help="which keras `import keras` gives (default fusednn)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per script run (default 60)")
    ap.add_argument("--json", help="write the run records and classifications to this file")
    ap.add_argument("--reference-from", nargs="+", metavar="JSON",
                    help="write reference.json from --json files of `--keras real` runs (runs nothing)")
    ap.add_argument("--keras-version", default="", help="with --reference-from: the Keras version")
    ap.add_argument("--keras-backend", default="torch", help="with --reference-from: its backend")
    ap.add_argument("--update", action="store_true",
                    help="with --reference-from: add or replace only the scripts in these files, keep the rest")
    args = ap.parse_args(argv)

    if args.reference_from:
        entries = [e for f in args.reference_from for e in json.loads(Path(f).read_text())]
        records = [r for e in entries for r in (e["runs"] if "runs" in e else [e])]
        cmd = ("KERAS_BACKEND=" + args.keras_backend + " OMP_NUM_THREADS=1 python tests/keras_scripts/run.py"
               " --keras real --seeds S --timeout 400 --json real_S.json  (one per seed), then"
               " python tests/keras_scripts/run.py --reference-from real_*.json --keras-version "
               + args.keras_version)
        if args.update:
            ref = update_reference(records, args.keras_version, args.keras_backend)
            print(f"updated {REFERENCE}: {', '.join(ref['scripts'])} (seeds {ref['seeds']})")
            return 0
        ref = write_reference(records, args.keras_version, args.keras_backend, cmd)
        print(f"wrote {REFERENCE} ({len(ref['scripts'])} scripts, seeds {ref['seeds']})")
        return 0

    all_names = script_names()
    names = [n for n in all_names if not args.names or any(n.startswith(p) for p in args.names)]
    seeds = [int(s) for s in args.seeds.split(",")]
    records = run_suite(names, seeds, args.timeout, args.keras)

    reference = load_reference()
    rows, out = [], []
    for name in names:
        runs = [r for r in records if r["name"] == name]
        status, detail = classify(runs, reference["scripts"].get(name, {}))
        rows.append((name, status, detail, sum(r["seconds"] for r in runs), fused_summary(runs)))
        out.append({"name": name, "runs": runs, "classification": status, "detail": detail})
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
