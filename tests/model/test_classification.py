"""Classification: softmax and cross-entropy kernels (every backend, against float64
references and finite differences, large logits), the Keras losses, compiled
metrics in fit/evaluate against scikit-learn, and augmentation inside fit."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn
from fusednn import keras, losses, ops

from helpers import numeric_grad


from fusednn.bench.reference import crossentropy as ref_xent, softmax as ref_softmax


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 2), (33, 10), (200, 129)])
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_softmax_rows(backend_name, shape, scale):
    z = (np.random.default_rng(shape[0]).standard_normal(shape) * scale).astype(np.float32)
    be = fusednn.get_backend()
    y = be.to_numpy(ops.softmax(be.asarray(z)))
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    ref = ref_softmax(z)
    assert np.max(np.abs(y - ref)) <= 1e-6 + 1e-6 * np.max(ref)


def test_softmax_grad_finite_differences(backend_name):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 6))
    dy = rng.standard_normal((4, 6))
    be = fusednn.get_backend()
    y = ops.softmax(be.asarray(z))
    got = be.to_numpy(ops.softmax_grad(be.asarray(dy), y))
    num = numeric_grad(lambda v: float(np.sum(dy * ref_softmax(v))), z.copy())
    np.testing.assert_allclose(got, num, rtol=1e-4, atol=1e-6)


SHAPES = [(1, 1, 1.0), (1, 2, 1.0), (8, 3, 1.0), (31, 10, 3.0), (16, 5, 100.0)]


@pytest.mark.parametrize("kind,rows,cols,scale", [(k, *s) for k in ("binary", "categorical", "sparse")
                                                  for s in SHAPES if k == "binary" or s[1] > 1])
def test_crossentropy_value_and_grad(backend_name, kind, rows, cols, scale):
    rng = np.random.default_rng(rows * cols)
    z = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    if kind == "binary":
        t = (rng.random((rows, cols)) > 0.5).astype(np.float32)
    elif kind == "sparse":
        t = rng.integers(0, cols, rows).astype(np.float32)
    else:
        t = np.eye(cols, dtype=np.float32)[rng.integers(0, cols, rows)]
    be = fusednn.get_backend()
    value = ops.crossentropy(be.asarray(z), be.asarray(t), kind)
    ref = ref_xent(z, t, kind)
    assert np.isfinite(value)
    assert abs(value - ref) <= 1e-6 * max(1.0, abs(ref))
    got = be.to_numpy(ops.crossentropy_grad(be.asarray(z), be.asarray(t), kind))
    if scale == 1.0:  # finite differences in float64 on moderate logits
        num = numeric_grad(lambda v: ref_xent(v, t, kind), z.astype(np.float64))
        np.testing.assert_allclose(got, num, rtol=1e-4, atol=1e-6)
    else:  # large logits: the gradient is act(z) - t exactly, without overflow
        act = 1 / (1 + np.exp(-z.astype(np.float64))) if kind == "binary" else ref_softmax(z)
        onehot = np.eye(cols)[t.astype(int)] if kind == "sparse" else t
        n = z.size if kind == "binary" else rows
        np.testing.assert_allclose(got, (act - onehot) / n, rtol=1e-5, atol=1e-7)


def test_sparse_bad_label_gives_nan_not_a_read_out_of_range(backend_name):
    be = fusednn.get_backend()
    z = be.asarray(np.zeros((3, 4), np.float32))
    assert np.isnan(ops.crossentropy(z, be.asarray(np.array([0, 4, 1], np.float32)), "sparse"))
    g = be.to_numpy(ops.crossentropy_grad(z, be.asarray(np.array([0, -1, 1.5], np.float32)), "sparse"))
    assert np.all(g[1:] == 0) and np.all(np.isfinite(g))


def test_crossentropy_matches_torch(host_backend_name):
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((20, 7)) * 4).astype(np.float32)
    k = rng.integers(0, 7, 20)
    zt = torch.tensor(z.astype(np.float64))
    ref = float(torch.nn.functional.cross_entropy(zt, torch.tensor(k)))
    assert ops.crossentropy(z, k.astype(np.float32), "sparse") == pytest.approx(ref, rel=1e-6)
    t = (rng.random((20, 7)) > 0.5).astype(np.float32)
    ref = float(torch.nn.functional.binary_cross_entropy_with_logits(zt, torch.tensor(t, dtype=torch.float64)))
    assert ops.crossentropy(z, t, "binary") == pytest.approx(ref, rel=1e-6)


# ------------------------------------------------------------------- losses
def keras_prob_loss(p, t, kind):
    """Keras' probability formulas, float64."""
    eps = 1e-7
    p = np.asarray(p, np.float64)
    if kind == "binary":
        q = np.clip(p, eps, 1 - eps)
        return -np.mean(t * np.log(q) + (1 - t) * np.log(1 - q))
    if kind == "sparse":
        t = np.eye(p.shape[1])[np.asarray(t).reshape(-1).astype(int)]
    q = np.clip(p / p.sum(axis=1, keepdims=True), eps, 1 - eps)
    return -np.mean((t * np.log(q)).sum(axis=1))


@pytest.mark.parametrize("cls,kind", [(losses.BinaryCrossentropy, "binary"),
                                      (losses.CategoricalCrossentropy, "categorical"),
                                      (losses.SparseCategoricalCrossentropy, "sparse")])
def test_loss_objects_on_probabilities_and_logits(host_backend_name, cls, kind):
    rng = np.random.default_rng(4)
    z = rng.standard_normal((12, 3)).astype(np.float32)
    if kind == "binary":
        t = (rng.random((12, 3)) > 0.5).astype(np.float32)
        p = 1 / (1 + np.exp(-z.astype(np.float64)))
    else:
        labels = rng.integers(0, 3, 12)
        t = labels.astype(np.float32) if kind == "sparse" else np.eye(3, dtype=np.float32)[labels]
        p = ref_softmax(z)
    assert cls()(t, p.astype(np.float32)) == pytest.approx(keras_prob_loss(p.astype(np.float32), t, kind), rel=1e-5)
    assert cls(from_logits=True)(t, z) == pytest.approx(ref_xent(z, t, kind), rel=1e-6)


def test_probability_path_gradient(host_backend_name):
    """Cross-entropy on probabilities (no matching output activation): the model's
    gradient through Keras' clipped formula matches finite differences."""
    be = fusednn.get_backend()
    rng = np.random.default_rng(5)
    for loss, t in [(losses.BinaryCrossentropy(), (rng.random((6, 2)) > 0.5).astype(np.float32)),
                    (losses.CategoricalCrossentropy(), np.eye(3, dtype=np.float32)[rng.integers(0, 3, 6)])]:
        p = rng.uniform(0.1, 0.9, t.shape)
        g = be.zeros(t.shape)
        loss.gradient(be, be.asarray(p), be.asarray(t), g, logits=False)
        kind = "binary" if isinstance(loss, losses.BinaryCrossentropy) else "categorical"
        num = numeric_grad(lambda v: keras_prob_loss(v, t, kind), p.copy())
        np.testing.assert_allclose(be.to_numpy(g), num, rtol=1e-3, atol=1e-5)


# --------------------------------------------------------- models and metrics
def blobs(n=300, classes=3, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim)) * 3
    labels = rng.integers(0, classes, n)
    return (centers[labels] + rng.standard_normal((n, dim))).astype(np.float32), labels


@pytest.mark.parametrize("loss,target", [("sparse_categorical_crossentropy", "sparse"),
                                         ("categorical_crossentropy", "onehot")])
def test_softmax_classifier_learns_and_reports_metrics(backend_name, loss, target):
    x, labels = blobs()
    y = labels if target == "sparse" else np.eye(3)[labels]
    fusednn.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(16, activation="relu", input_shape=(4,)),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", loss, metrics=["accuracy", "precision", "recall", "f1"])
    hist = model.fit(x, y, epochs=30, batch_size=32, validation_split=0.2, verbose=0)
    assert set(hist.history) == {"loss", "accuracy", "precision", "recall", "f1", "val_loss", "val_accuracy",
                                 "val_precision", "val_recall", "val_f1"}
    assert hist.history["accuracy"][-1] > 0.9 and hist.history["loss"][-1] < hist.history["loss"][0]
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    # evaluate's metrics are exactly sklearn's on the predicted classes
    from sklearn import metrics as skm
    loss_value, acc, prec, rec, f1 = model.evaluate(x, y, verbose=0)
    pred = probs.argmax(axis=1)
    assert acc == pytest.approx(skm.accuracy_score(labels, pred))
    assert prec == pytest.approx(skm.precision_score(labels, pred, average="macro", zero_division=0))
    assert rec == pytest.approx(skm.recall_score(labels, pred, average="macro", zero_division=0))
    assert f1 == pytest.approx(skm.f1_score(labels, pred, average="macro", zero_division=0))
    t = labels if target == "sparse" else np.eye(3)[labels]
    ref = ref_xent(np.log(np.clip(probs, 1e-30, None)), t, "sparse" if target == "sparse" else "categorical")
    assert loss_value == pytest.approx(ref, rel=1e-3)


def test_binary_classifier_with_sigmoid_output(backend_name):
    x, labels = blobs(classes=2, seed=1)
    fusednn.utils.set_random_seed(1)
    model = keras.Sequential([keras.layers.Dense(8, activation="tanh", input_shape=(4,)),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy", "precision", "recall"])
    model.fit(x, labels, epochs=20, verbose=0)
    from sklearn import metrics as skm
    _, acc, prec, rec = model.evaluate(x, labels, verbose=0)
    pred = (model.predict(x, verbose=0)[:, 0] > 0.5).astype(int)
    assert acc > 0.9
    assert acc == pytest.approx(skm.accuracy_score(labels, pred))
    assert prec == pytest.approx(skm.precision_score(labels, pred, zero_division=0))
    assert rec == pytest.approx(skm.recall_score(labels, pred, zero_division=0))


def test_from_logits_equals_folded_softmax(host_backend_name):
    """A linear output with from_logits=True trains exactly like a softmax output with
    the probability-form loss (which Keras, and fusednn, compute from the logits)."""
    x, labels = blobs(n=100)
    weights = []
    for act, loss in [("softmax", "sparse_categorical_crossentropy"),
                      (None, losses.SparseCategoricalCrossentropy(from_logits=True))]:
        fusednn.utils.set_random_seed(2)
        model = keras.Sequential([keras.layers.Dense(5, activation="relu", input_shape=(4,)),
                                  keras.layers.Dense(3, activation=act)])
        model.compile("adam", loss)
        fusednn.utils.set_random_seed(3)
        model.fit(x, labels, epochs=3, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loss,act,units,y_kind", [
    ("sparse_categorical_crossentropy", "softmax", 3, "sparse"),
    ("categorical_crossentropy", "softmax", 3, "onehot"),
    ("binary_crossentropy", "sigmoid", 1, "binary"),
    ("mse", None, 2, "real")])
def test_fused_classification_equals_per_op(loss, act, units, y_kind):
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        x, labels = blobs(n=150, classes=max(units, 2))
        y = {"sparse": labels, "onehot": np.eye(3)[labels % 3], "binary": labels % 2,
             "real": np.random.default_rng(0).standard_normal((150, 2))}[y_kind]
        metrics = ["mae", "mse"] if y_kind == "real" else ["accuracy", "f1"]
        results = []
        for per_op in (False, True):
            fusednn.utils.set_random_seed(4)
            model = keras.Sequential([keras.layers.Dense(6, activation="relu", input_shape=(4,)),
                                      keras.layers.Dense(units, activation=act)])
            model.compile("adam", loss, metrics=metrics, fused=not per_op)
            fusednn.utils.set_random_seed(5)
            hist = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
            assert (model._fused is None) == per_op
            results.append((model.get_weights(), hist.history))
        for a, b in zip(results[0][0], results[1][0]):
            np.testing.assert_array_equal(a, b)
        assert results[0][1] == results[1][1]  # losses and metrics, every epoch
    finally:
        fusednn.set_backend(prev)


def test_sparse_targets_are_checked(host_backend_name):
    model = keras.Sequential([keras.layers.Dense(3, activation="softmax", input_shape=(2,))])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\); sample 1 has 3.0"):
        model.fit(np.zeros((3, 2)), [0, 3, 1], verbose=0)
    with pytest.raises(ValueError, match="sample 2 has 0.5"):
        model.evaluate(np.zeros((3, 2)), [0, 1, 0.5], verbose=0)


def test_custom_metric_callable_is_averaged_per_batch(host_backend_name):
    x, labels = blobs(n=64)
    model = keras.Sequential([keras.layers.Dense(3, activation="softmax", input_shape=(4,))])

    def mean_pred(y_true, y_pred):
        return float(np.mean(y_pred))

    model.compile("sgd", "sparse_categorical_crossentropy", metrics=[mean_pred])
    hist = model.fit(x, labels, epochs=1, batch_size=16, verbose=0)
    assert hist.history["mean_pred"][0] == pytest.approx(1 / 3, rel=1e-5)  # softmax rows average 1/3


# ------------------------------------------------------------- augmentation
def test_augment_applies_to_training_batches_only(host_backend_name):
    x, labels = blobs(n=80)
    seen = []

    def augment(batch):
        seen.append(batch.shape)
        return batch + 1000.0  # so validation would show it if it were augmented

    model = keras.Sequential([keras.layers.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, labels, epochs=2, batch_size=16, validation_split=0.25, verbose=0, augment=augment)
    assert sum(s[0] for s in seen) == 2 * 60 and all(s[1] == 4 for s in seen)
    with pytest.raises(ValueError, match="augment changed the batch shape"):
        model.fit(x, labels, verbose=0, augment=lambda b: b[:, :2])


def test_augment_same_numbers_on_fused_and_per_op_paths():
    if "cpu" not in fusednn.backends.available():
        pytest.skip("cpu backend not built")
    prev = fusednn.get_backend().name
    fusednn.set_backend("cpu")
    try:
        x, labels = blobs(n=90)
        out = []
        for per_op in (False, True):
            fusednn.utils.set_random_seed(6)
            model = keras.Sequential([keras.layers.Dense(3, activation="softmax", input_shape=(4,))])
            model.compile("adam", "sparse_categorical_crossentropy", fused=not per_op)
            fusednn.utils.set_random_seed(7)
            model.fit(x, labels, epochs=2, batch_size=8, verbose=0, augment=lambda b: b * 0.5 + 0.25)
            out.append(model.get_weights())
        for a, b in zip(*out):
            np.testing.assert_array_equal(a, b)
    finally:
        fusednn.set_backend(prev)
