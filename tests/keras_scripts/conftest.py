"""Prints the Keras-script count at the end of the pytest run."""
import sys


def pytest_terminal_summary(terminalreporter):
    mod = sys.modules.get("test_keras_scripts")
    for line in getattr(mod, "SUMMARY", []):
        terminalreporter.write_line(f"keras scripts: {line}")
