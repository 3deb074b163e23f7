"""The version of fusednn: its one source (the build reads it from here too). A leaf
module, so that any module can import it without importing the package's face."""
__version__ = "0.1.0"
