"""The one door to the compiled extension modules ``fusednn._cpu`` and ``fusednn._cuda``.

Everything else (backends, ops, the CLI, benchmarks, preprocessing) asks
:func:`native` for a module instead of importing it, so that "is the extension
built" is decided, and its import error kept, in one place.
"""
from __future__ import annotations

from types import ModuleType

NAMES = ("cpu", "cuda")
_modules: dict[str, ModuleType | None] = {}
_errors: dict[str, str | None] = {}


def _load(name: str) -> None:
    try:
        if name == "cpu":
            from .. import _cpu as module
        else:
            from .. import _cuda as module
    except ImportError as e:  # not compiled (no CUDA compiler at build time), or built for another Python
        _modules[name], _errors[name] = None, f"fusednn._{name} is not built ({e})"
    else:
        _modules[name], _errors[name] = module, None


def _check(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"no compiled module for {name!r}; valid: {', '.join(NAMES)}")
    if name not in _modules:
        _load(name)


def native(name: str) -> ModuleType | None:
    """The compiled kernel module of backend ``name`` ('cpu': ``fusednn._cpu``, 'cuda':
    ``fusednn._cuda``), or None where it is not built (see :func:`import_error`)."""
    _check(name)
    return _modules[name]


def import_error(name: str) -> str | None:
    """None when :func:`native` has the module, else a sentence saying why not."""
    _check(name)
    return _errors[name]
