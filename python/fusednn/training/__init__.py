"""Training: what turns a model's structure into compile / fit / evaluate / predict.

``trainer`` holds :class:`Trainer`, the mixin a model class inherits for
compile / fit / evaluate / predict; ``inputs`` checks and converts user arrays at
the API boundary, ``epoch_metrics`` accumulates the compiled metrics over an
epoch, and ``fused`` hands whole epochs to a backend's native trainer when the
model allows it.
"""
from . import epoch_metrics, fused, inputs
from .trainer import Trainer

__all__ = ["Trainer", "epoch_metrics", "fused", "inputs"]
