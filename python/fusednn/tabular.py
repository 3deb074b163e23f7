"""Moved to :mod:`fusednn.cli.tabular`; ``fusednn.tabular`` names that module itself."""
import sys

from .cli import tabular as _moved

sys.modules[__name__] = _moved
