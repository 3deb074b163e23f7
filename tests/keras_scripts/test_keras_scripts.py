"""The Keras-script suite in CI: every script listed in expected_pass.txt must PASS (run with
only the import changed and match real Keras within its seed-to-seed noise, as run.py
defines), and a script that passes must be listed, so the list and the README's count stay
honest. The scripts run in one subprocess (run.py), each in-process there with a time limit."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as suite  # noqa: E402

SUMMARY: list[str] = []


def test_reference_covers_every_script():
    ref = suite.load_reference()
    names = suite.script_names()
    assert len(names) >= 30
    missing = [n for n in names if not any(r["status"] == "ran" for r in ref["scripts"].get(n, {}).get("runs", []))]
    assert not missing, f"no successful real-Keras reference run for {missing}: rerun the reference (README.md)"
    assert ref["keras_version"].startswith("3.")
    unknown = [n for n in suite.load_expected() if n not in names]
    assert not unknown, f"expected_pass.txt names scripts that do not exist: {unknown}"


def _ref(*runs):
    return {"runs": [{"status": "ran", "results": r} for r in runs]}


def test_classify_rule():
    ref = _ref({"test_accuracy": 0.90, "loss": 1.0, "n": 7, "ok": True},
               {"test_accuracy": 0.92, "loss": 1.1, "n": 7, "ok": True},
               {"test_accuracy": 0.94, "loss": 0.9, "n": 7, "ok": True})
    good = {"status": "ran", "results": {"test_accuracy": 0.95, "loss": 1.25, "n": 7, "ok": True}}
    assert suite.classify(good, ref) == ("PASS", "")
    # accuracy band: max(0.03, 3 * 0.02) = 0.06 around 0.92
    assert suite.classify({**good, "results": {**good["results"], "test_accuracy": 0.85}}, ref)[0] == "WRONG"
    assert suite.classify({**good, "results": {**good["results"], "test_accuracy": 0.975}}, ref)[0] == "PASS"
    # loss band: max(0.1 * 1.0, 3 * 0.1) = 0.3 around 1.0
    assert suite.classify({**good, "results": {**good["results"], "loss": 1.35}}, ref)[0] == "WRONG"
    assert suite.classify({**good, "results": {**good["results"], "loss": float("nan")}}, ref)[0] == "WRONG"
    assert suite.classify({**good, "results": {**good["results"], "n": 8}}, ref)[0] == "WRONG"
    assert suite.classify({**good, "results": {**good["results"], "ok": False}}, ref)[0] == "WRONG"
    missing = {k: v for k, v in good["results"].items() if k != "loss"}
    assert suite.classify({**good, "results": missing}, ref) == ("WRONG", "loss missing")
    assert suite.classify({"status": "error", "error": "ValueError: x"}, ref) == ("FAIL", "ValueError: x")
    # floats are averaged over the runs (seeds); exact values must hold in every run
    runs = [{**good, "results": {**good["results"], "test_accuracy": a}} for a in (0.82, 0.99, 0.95)]
    assert suite.classify(runs, ref)[0] == "PASS"  # mean 0.92
    runs[2] = {**good, "results": {**good["results"], "n": 6}}
    assert suite.classify(runs, ref)[0] == "WRONG"
    runs[2] = {"status": "error", "error": "E"}
    assert suite.classify(runs, ref) == ("FAIL", "E")
    # a value the Keras seeds disagree on is not compared
    ref2 = _ref({"flag": True, "loss": 1.0}, {"flag": False, "loss": 1.0})
    assert suite.classify({"status": "ran", "results": {"flag": False, "loss": 1.05}}, ref2)[0] == "PASS"


def test_update_reference_replaces_only_named_scripts(tmp_path, monkeypatch):
    path = tmp_path / "reference.json"
    old = {"keras_version": "3.15.1", "backend": "torch", "command": "c", "seeds": [0, 1],
           "scripts": {"s01_a": {"runs": [{"seed": 0, "status": "ran", "results": {"loss": 1.0}}]},
                       "s02_b": {"runs": [{"seed": 0, "status": "ran", "results": {"loss": 2.0}}]}}}
    path.write_text(json.dumps(old))
    monkeypatch.setattr(suite, "REFERENCE", path)
    runs = [{"name": "s02_b", "seed": s, "status": "ran", "results": {"loss": 3.0}} for s in (1, 0)] + \
           [{"name": "s03_c", "seed": s, "status": "error", "error": "E"} for s in (0, 1)]
    suite.update_reference(runs, "3.15.1", "torch")
    new = json.loads(path.read_text())
    assert new["scripts"]["s01_a"] == old["scripts"]["s01_a"]
    assert [r["seed"] for r in new["scripts"]["s02_b"]["runs"]] == [0, 1]
    assert new["scripts"]["s02_b"]["runs"][0]["results"] == {"loss": 3.0}
    assert new["scripts"]["s03_c"]["runs"][1] == {"seed": 1, "status": "error", "error": "E"}
    assert {k: new[k] for k in ("keras_version", "backend", "command", "seeds")} == \
        {k: old[k] for k in ("keras_version", "backend", "command", "seeds")}
    with pytest.raises(SystemExit, match="version"):
        suite.update_reference(runs, "3.14.0", "torch")
    with pytest.raises(SystemExit, match="seeds"):
        suite.update_reference(runs[:1], "3.15.1", "torch")


def test_keras_scripts_suite(tmp_path):
    out = tmp_path / "records.json"
    proc = subprocess.run([sys.executable, str(HERE / "run.py"), "--timeout", "60", "--json", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=HERE.parent.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = json.loads(out.read_text())
    status = {r["name"]: (r["classification"], r["detail"]) for r in records}
    assert sorted(status) == suite.script_names()
    table = proc.stdout.strip()
    SUMMARY.append(table.splitlines()[-1])
    print(table)
    expected = suite.load_expected()
    regressed = [f"{n}: {status[n][0]} {status[n][1]}" for n in expected if status[n][0] != "PASS"]
    assert not regressed, "scripts listed in tests/keras_scripts/expected_pass.txt no longer pass:\n" + \
        "\n".join(regressed) + "\n\n" + table
    unlisted = [n for n, (s, _) in status.items() if s == "PASS" and n not in expected]
    assert not unlisted, ("these scripts now PASS but are not in tests/keras_scripts/expected_pass.txt; add them "
                          f"(and update the count in README.md): {unlisted}\n\n" + table)

