"""Regression tests for the hostile-input defects of issue 13 in data handling and
model state: zero-sized images in the resampling transforms (4), CSV delimiter
sniffing time and values beyond float32 (11), an augment callable returning NaN or
a wrong shape (11) and an impossible optimizer step count in a model file (11).
Each failed before its fix."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

import fusednn
from fusednn import csv_data, keras, preprocessing, tabular
from fusednn.preprocessing import RandomResizedCrop, RandomRotation, RandomZoom


# --------------------------------------------------- defect 4: zero-sized images
@pytest.mark.parametrize("make", [lambda: RandomRotation(0.1, seed=0), lambda: RandomZoom(0.2, seed=0),
                                  lambda: RandomResizedCrop(seed=0)])
@pytest.mark.parametrize("shape", [(2, 0, 5, 1), (2, 5, 0, 3), (2, 4, 4, 0), (0, 4, 4, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resampling_zero_sized_images_give_the_empty_batch(make, shape, dtype):
    """Used to kill the process with SIGFPE (integer division by zero in the kernel)."""
    out = make()(np.zeros(shape, dtype))
    assert out.shape == shape and out.dtype == dtype


def test_affine_warp_kernel_zero_sized_and_far_away_points():
    from fusednn.backends import cpu

    if cpu._cpu is None:
        pytest.skip("cpu backend not built")
    k = cpu._cpu.affine_warp
    assert k(np.zeros((3, 0, 4, 1), np.float32), np.zeros((3, 2, 3))).shape == (3, 0, 4, 1)
    img = np.ones((2, 3, 3, 1), np.float32)
    mats = np.zeros((2, 2, 3))
    mats[0] = [[1e300, 0, 0], [0, 1e300, 0]]  # points far beyond long's range
    mats[1] = [[np.nan, 0, 0], [0, 1, 0]]
    for bilinear in (True, False):
        out = k(img, mats, 7.0, bilinear, False)
        assert (out[0].reshape(-1)[1:] == 7).all() and out[0, 0, 0, 0] == 1  # (0, 0) maps onto itself
        assert (out[1] == 7).all()


# --------------------------------------------------------- defect 11: CSV files
def test_crafted_csv_delimiter_sniffing_is_bounded(tmp_path):
    """60 KB of ',"' took 34 s in csv.Sniffer before its error; now the sample is bounded."""
    p = tmp_path / "evil.csv"
    p.write_text(',"' * 30_000 + "\n")
    t0 = time.perf_counter()
    try:
        csv_data.read_csv(str(p))
    except csv_data.DataError:
        pass
    # a generous bound (the unbounded sniff took tens of seconds): this checks the
    # complexity, not the speed
    assert time.perf_counter() - t0 < 5.0


def test_sniffing_still_finds_the_delimiter(tmp_path):
    p = tmp_path / "semi.csv"
    p.write_text("a;b;c\n" + "".join(f"{i};{i * 2};{i * 3}\n" for i in range(500)))
    t = csv_data.read_csv(str(p))
    assert t.columns == ["a", "b", "c"] and len(t.rows) == 500 and t.rows[-1] == ["499", "998", "1497"]


def test_values_beyond_float32_are_dropped_at_cleaning_with_their_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 2))
    y = x @ [1.0, -2.0]
    rows = [f"{a:.5f},{b:.5f},{t:.5f}" for (a, b), t in zip(x, y)]
    rows[4] = "1e39,0.5,1.0"  # finite in float64, inf in float32: file line 6
    rows[9] = "0.5,0.5,-4e38"  # the target: file line 11
    p = tmp_path / "big.csv"
    p.write_text("a,b,y\n" + "\n".join(rows) + "\n")
    cfg = tabular.TrainConfig(target="y", layers=(4,), epochs=1, verbose=0)
    tabular.train(str(p), str(tmp_path / "m.npz"), cfg)
    out = capsys.readouterr().out
    assert "dropped 2 rows with missing or non-finite values (lines 6, 11)" in out


def test_clean_treats_beyond_float32_as_nonfinite():
    x = np.array([[1.0, 2.0], [3.5e38, 0.0], [1.0, -1e300]])
    xc, _, report = preprocessing.clean(x)
    assert xc.shape == (1, 2) and list(report.nonfinite_rows) == [1, 2]
    with pytest.raises(ValueError):
        preprocessing.clean(x, nonfinite="raise")


# --------------------------------------------------- defect 11: augment output checked
@pytest.mark.parametrize("bad", ["nan", "inf", "shape", "text"])
def test_augment_output_is_checked_like_x(host_backend_name, bad):
    x = np.random.default_rng(0).standard_normal((32, 3)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)

    def augment(b):
        if bad == "nan":
            b = b.copy()
            b[3, 1] = np.nan
            return b
        if bad == "inf":
            return b * np.float64(1e300)  # finite in float64, inf in float32
        if bad == "shape":
            return b[:, :2]
        return np.full(b.shape, "x")

    model = keras.Sequential([keras.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse")
    before = [w.copy() for w in model.get_weights()]
    err = TypeError if bad == "text" else ValueError
    with pytest.raises(err, match="augment"):
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, augment=augment)
    for w, b in zip(model.get_weights(), before):
        assert np.isfinite(w).all()
        np.testing.assert_array_equal(w, b)


# ------------------------------------------- defect 11: optimizer step count in a file
@pytest.mark.parametrize("iterations", [2**70, -1, 2**62, 1.5, True, "3"])
def test_model_file_with_impossible_iterations_is_refused_at_load(tmp_path, iterations):
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 3), np.float32), np.ones((4, 2), np.float32), epochs=1, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    key = next(k for k in arrays if arrays[k].dtype == np.uint8)
    doc = json.loads(arrays[key].tobytes())
    assert doc["optimizer_state"]["iterations"] == 1
    doc["optimizer_state"]["iterations"] = iterations
    arrays[key] = np.frombuffer(json.dumps(doc).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="iterations"):
        fusednn.load_model(path)
