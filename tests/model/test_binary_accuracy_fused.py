"""BinaryAccuracy with a threshold other than 0.5 (or several outputs) accumulates in the
fused trainer through the threshold-bucket kernel, and gives the per-op path's numbers."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras

pytest.importorskip("fusednn._cpu")


@pytest.mark.parametrize("outputs,threshold", [(1, 0.7), (1, 0.5), (3, 0.3)])
def test_fused_equals_per_op(outputs, threshold):
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(203, 5)).astype(np.float32)
        y = (rng.random((203, outputs)) < 0.4).astype(np.float32)
        w = rng.uniform(0.2, 2.0, size=203)
        runs = {}
        for fused in ("auto", False):
            keras.utils.set_random_seed(1)
            m = keras.Sequential([keras.layers.Dense(8, activation="relu", input_shape=(5,)),
                                  keras.layers.Dense(outputs, activation="sigmoid")])
            m.compile("adam", "binary_crossentropy", metrics=[keras.metrics.BinaryAccuracy(threshold=threshold)],
                      fused=fused)
            if fused == "auto":
                assert m.fused_reason is None
            h = m.fit(x, y, sample_weight=w, epochs=3, batch_size=32, verbose=0, validation_split=0.2)
            runs[fused] = (h.history, m.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True), m.predict(x, verbose=0))
        (hf, ef, pf), (hp, ep, _) = runs["auto"], runs[False]
        for key in ("binary_accuracy", "val_binary_accuracy"):
            np.testing.assert_allclose(hf[key], hp[key], rtol=1e-12)
        assert ef["binary_accuracy"] == pytest.approx(ep["binary_accuracy"], rel=1e-12)
        # and the value itself: the weighted mean over samples of the mean over outputs
        correct = (y == (pf > threshold)).mean(axis=1)
        assert ef["binary_accuracy"] == pytest.approx(float(np.dot(correct, w) / w.sum()), rel=1e-6)
    finally:
        fusednn.set_backend(prev)
