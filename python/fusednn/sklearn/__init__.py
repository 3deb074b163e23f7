"""scikit-learn estimators trained by fusednn: ``MLPClassifier`` and ``MLPRegressor``,
drop-in for ``sklearn.neural_network``'s (needs the ``sklearn`` extra:
``pip install fusednn[sklearn]``). Importing ``fusednn`` never imports scikit-learn;
importing this subpackage does."""
from __future__ import annotations

try:
    import sklearn as _sklearn  # noqa: F401  (absolute import: the scikit-learn package)
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("fusednn.sklearn needs scikit-learn: pip install 'fusednn[sklearn]'") from e

from .mlp import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
