"""Moved to :mod:`fusednn.cli.csv_data`; ``fusednn.csv_data`` names that module itself."""
import sys

from .cli import csv_data as _moved

sys.modules[__name__] = _moved
