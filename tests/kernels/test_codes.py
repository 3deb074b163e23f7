"""Python's code tables (activation, cross-entropy, fused-trainer loss and optimizer
names) against the values the compiled extensions publish from their C++ enums."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn import losses
from fusednn.backends import base, compiled, optim_codes


@pytest.fixture(params=["cpu", "cuda"])
def ext(request):
    """Each compiled module that is built (a _cuda built without a GPU here still counts)."""
    k = compiled.native(request.param)
    if k is None:
        pytest.skip(compiled.import_error(request.param))
    return k


def test_python_tables_equal_the_extension_enums(ext):
    assert base.ACTIVATIONS == ext.ACTIVATION_CODES
    assert base.XENT_KINDS == ext.XENT_CODES
    # the fused trainer takes 'mse' or a cross-entropy kind, and every optimizer kind
    fused_losses = [losses.MeanSquaredError(), losses.BinaryCrossentropy(), losses.CategoricalCrossentropy(),
                    losses.SparseCategoricalCrossentropy()]
    kinds = {"mse" if isinstance(loss, losses.MeanSquaredError) else loss.kind for loss in fused_losses}
    assert kinds | set(base.LOSS_FNS) == set(ext.TRAINER_LOSSES) == {"mse", *base.XENT_KINDS, *base.LOSS_FNS}
    assert base.LOSS_FNS == ext.LOSS_FN_CODES
    assert {loss.fn for loss in map(losses.get, base.LOSS_FNS)} == set(base.LOSS_FNS)
    assert ext.TRAINER_OPTIMIZERS == optim_codes.KINDS
    assert ext.OPTIMIZER_FLAGS == optim_codes.ALL_FLAGS and ext.OPTIMIZER_PARAMS == optim_codes.N_PARAMS
    assert sorted(ext.ACTIVATION_CODES.values()) == list(range(len(ext.ACTIVATION_CODES)))


def test_cpu_rejects_the_first_code_past_each_table():
    k = compiled.native("cpu")
    if k is None:
        pytest.skip(compiled.import_error("cpu"))
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="unknown activation code"):
        k.act_forward(x, len(k.ACTIVATION_CODES), np.empty_like(x))
    with pytest.raises(ValueError, match="kind"):
        k.xent(x, x, len(k.XENT_CODES), 1.0, None, None)
