"""The type stubs of the compiled modules (python/fusednn/_cpu.pyi, _cuda.pyi) say what
the built modules hold: regenerated from them, they must come out unchanged."""
from __future__ import annotations

import ast
import importlib.util
import pathlib

import pytest

from fusednn.backends import compiled

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("make_stubs", ROOT / "csrc" / "bind" / "make_stubs.py")
make_stubs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_stubs)


@pytest.mark.parametrize("module", ["_cpu", "_cuda"])
def test_stub_is_valid_python_naming_the_kernels(module):
    tree = ast.parse((ROOT / "python" / "fusednn" / f"{module}.pyi").read_text())
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert {"matmul", "act_forward", "xent", "sgd_update", "adam_update", "MlpTrainer"} <= names


def _api(text: str) -> dict[str, list[str]]:
    """Each top-level name (and Class.method) with its parameter names: what a caller
    relies on, independent of how a pybind11 version spells the types."""
    out: dict[str, list[str]] = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.ClassDef):
            out[node.name] = []
            for m in node.body:
                if isinstance(m, ast.FunctionDef):
                    out[f"{node.name}.{m.name}"] = [a.arg for a in m.args.args]
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = []
    return out


@pytest.mark.parametrize("module", ["_cpu", "_cuda"])
def test_stub_matches_the_built_module(module):
    if compiled.native(module[1:]) is None:
        pytest.skip(compiled.import_error(module[1:]))
    stub = (ROOT / "python" / "fusednn" / f"{module}.pyi").read_text()
    assert _api(stub) == _api(make_stubs.stub_text(module)), "the stub is stale: run python csrc/bind/make_stubs.py"
