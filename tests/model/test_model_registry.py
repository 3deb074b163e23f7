"""Loading rebuilds a model through fusednn.registry.MODELS, not a hard-coded Sequential."""
import json

import numpy as np
import pytest

import fusednn
from fusednn import registry


class TaggedSequential(fusednn.Sequential):
    """A user model class: registers itself by being defined."""


def test_a_model_subclass_round_trips_as_itself(tmp_path):
    fusednn.set_random_seed(0)
    model = TaggedSequential([fusednn.Input((3,)), fusednn.Dense(2)])
    model.save(tmp_path / "m.npz")
    loaded = fusednn.load_model(tmp_path / "m.npz")
    assert type(loaded) is TaggedSequential
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert registry.MODELS.get("Sequential") is fusednn.Sequential


def test_unknown_model_class_is_a_clear_error(tmp_path):
    model = fusednn.Sequential([fusednn.Input((3,)), fusednn.Dense(2)])
    model.save(tmp_path / "m.npz")
    doc, arrays = fusednn.saving.read_file(tmp_path / "m.npz")
    doc["model"]["class_name"] = "NoSuchModel"
    config = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **{fusednn.saving.CONFIG_KEY: config}, **arrays)
    with pytest.raises(ValueError, match="unknown model class 'NoSuchModel'"):
        fusednn.load_model(tmp_path / "bad.npz")
