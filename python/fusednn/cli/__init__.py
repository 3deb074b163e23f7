"""The ``fusednn`` command line: an application over the library (nothing in the
library imports it). ``main`` parses the commands (info, demo, bench, serve, train,
evaluate, predict); ``tabular`` trains, evaluates and applies a model on a CSV table
for train/evaluate/predict, reading and writing tables with ``csv_data``."""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
