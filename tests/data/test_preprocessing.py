"""fusednn.preprocessing: scalers and train_test_split against scikit-learn (the
oracle), clean() on planted bad rows, and augmentation on exact cases."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from helpers import FakeCupy

from fusednn import preprocessing as fp

skp = pytest.importorskip("sklearn.preprocessing")
from sklearn.model_selection import train_test_split as sk_split  # noqa: E402


def _data(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 5.0, size=(50, 5))
    x[:, 2] = 7.0                                      # constant feature
    x[:, 3] = 1e8 + rng.normal(0, 1e-7, 50)            # near-constant: a few ulp of noise at 1e8
    x[:, 4] = rng.integers(-3, 4, 50)
    return x.astype(dtype)


def _assert_attrs(ours, theirs, names):
    for name in names:
        a, b = getattr(ours, name), getattr(theirs, name)
        if b is None:
            assert a is None, name
        else:
            # atol: the variance of a near-constant feature is rounding noise (~1e-14) in any algorithm.
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("with_mean", [True, False])
@pytest.mark.parametrize("with_std", [True, False])
def test_standard_scaler_matches_sklearn(with_mean, with_std):
    x, x_new = _data(), _data(seed=1)
    ours = fp.StandardScaler(with_mean=with_mean, with_std=with_std)
    assert ours.fit(x) is ours
    theirs = skp.StandardScaler(with_mean=with_mean, with_std=with_std).fit(x)
    _assert_attrs(ours, theirs, ["mean_", "var_", "scale_"])
    assert ours.n_features_in_ == theirs.n_features_in_ == 5
    assert ours.n_samples_seen_ == theirs.n_samples_seen_ == 50
    np.testing.assert_allclose(ours.transform(x_new), theirs.transform(x_new), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.fit_transform(x), theirs.transform(x), rtol=1e-10, atol=1e-12)
    z = ours.transform(x_new)
    np.testing.assert_allclose(ours.inverse_transform(z), x_new, rtol=1e-12)
    if with_std:
        assert ours.scale_[2] == 1.0 and ours.scale_[3] == 1.0   # constant features are not divided


@pytest.mark.parametrize("feature_range", [(0, 1), (-1, 2)])
@pytest.mark.parametrize("clip", [False, True])
def test_minmax_scaler_matches_sklearn(feature_range, clip):
    x, x_new = _data(), _data(seed=1) * 1.5            # new data goes outside the fitted range
    ours = fp.MinMaxScaler(feature_range, clip=clip).fit(x)
    theirs = skp.MinMaxScaler(feature_range=feature_range, clip=clip).fit(x)
    _assert_attrs(ours, theirs, ["data_min_", "data_max_", "data_range_", "scale_", "min_"])
    assert ours.n_samples_seen_ == theirs.n_samples_seen_ and ours.n_features_in_ == theirs.n_features_in_
    np.testing.assert_allclose(ours.transform(x_new), theirs.transform(x_new), rtol=1e-10, atol=1e-10)
    z = ours.transform(x)
    assert z.min() >= feature_range[0] - 1e-12 and z.max() <= feature_range[1] + 1e-12
    np.testing.assert_allclose(ours.inverse_transform(z), x, rtol=1e-12, atol=1e-6)


@pytest.mark.parametrize("cls", [fp.StandardScaler, fp.MinMaxScaler])
def test_scaler_dtypes_and_errors(cls):
    x32 = _data(np.float32)
    s = cls()
    with pytest.raises(fp.NotFittedError, match="not fitted"):
        s.transform(x32)
    assert isinstance(fp.NotFittedError("x"), ValueError)
    assert s.fit(x32).transform(x32).dtype == np.float32
    assert s.transform(x32.astype(np.int64)).dtype == np.float64
    with pytest.raises(ValueError, match="X has 4 features, but .* expecting 5"):
        s.transform(x32[:, :4])
    with pytest.raises(ValueError, match="2-d"):
        s.fit(x32[:, 0])
    bad = x32.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        s.fit(bad)


@pytest.mark.parametrize("scaler", [fp.StandardScaler(), fp.StandardScaler(with_mean=False),
                                    fp.StandardScaler(with_mean=False, with_std=False),
                                    fp.MinMaxScaler((-1, 1), clip=True)], ids=repr)
def test_scaler_state_round_trip_without_pickle(scaler):
    x = _data()
    scaler.fit(x)
    buf = io.BytesIO()
    np.savez(buf, **scaler.state_dict())
    buf.seek(0)
    config = json.loads(json.dumps(scaler.get_config()))
    with np.load(buf, allow_pickle=False) as state:
        restored = type(scaler).from_config(config).load_state_dict(dict(state))
    np.testing.assert_array_equal(restored.transform(x), scaler.transform(x))
    assert restored.n_samples_seen_ == 50 and restored.n_features_in_ == 5
    with pytest.raises(ValueError, match="missing"):
        type(scaler).from_config(config).load_state_dict({})


def test_minmax_invalid_range():
    with pytest.raises(ValueError, match="smaller than maximum"):
        fp.MinMaxScaler((1, 0)).fit(_data())


# --------------------------------------------------------------------------- train_test_split

@pytest.mark.parametrize("sizes", [{}, {"test_size": 0.3}, {"test_size": 7}, {"train_size": 0.5},
                                   {"train_size": 20, "test_size": 10},
                                   {"test_size": 0.33, "train_size": 0.6}],
                         ids=str)
@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("seed", [0, 42])
def test_split_matches_sklearn_index_for_index(sizes, stratified, seed):
    n = 43
    x = np.arange(n * 2).reshape(n, 2)
    y = np.random.default_rng(seed).choice([0, 1, 2], size=n, p=[0.5, 0.3, 0.2])
    strat = y if stratified else None
    ours = fp.train_test_split(x, y, random_state=seed, stratify=strat, **sizes)
    theirs = sk_split(x, y, random_state=seed, stratify=strat, **sizes)
    assert len(ours) == 4
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


def test_split_sizes_order_and_types():
    x = np.arange(100).reshape(50, 2)
    names = [f"s{i}" for i in range(50)]
    x_tr, x_te, n_tr, n_te = fp.train_test_split(x, names, random_state=1)
    assert (len(x_tr), len(x_te)) == (37, 13)                 # default test 25%, rounded up
    assert isinstance(n_tr, list) and n_tr == [f"s{r // 2}" for r in x_tr[:, 0]]
    assert sorted(np.concatenate([x_tr[:, 0], x_te[:, 0]]) // 2) == list(range(50))
    a_tr, a_te = fp.train_test_split(x, test_size=0.2, shuffle=False)
    np.testing.assert_array_equal(a_tr, x[:40])
    np.testing.assert_array_equal(a_te, x[40:])
    # Same seed, same split; a Generator works too and is reproducible.
    np.testing.assert_array_equal(fp.train_test_split(x, random_state=5)[1],
                                  fp.train_test_split(x, random_state=5)[1])
    g1 = fp.train_test_split(x, random_state=np.random.default_rng(3))[1]
    g2 = fp.train_test_split(x, random_state=np.random.default_rng(3))[1]
    np.testing.assert_array_equal(g1, g2)


def test_stratified_split_keeps_proportions():
    y = np.repeat([0, 1, 2], [600, 300, 100])
    y_tr, y_te = fp.train_test_split(y, test_size=0.2, stratify=y, random_state=0)
    np.testing.assert_array_equal(np.bincount(y_te), [120, 60, 20])
    np.testing.assert_array_equal(np.bincount(y_tr), [480, 240, 80])


def test_split_errors():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="inconsistent numbers of samples: \\[10, 9\\]"):
        fp.train_test_split(x, np.zeros(9))
    with pytest.raises(ValueError, match="test_size=1.5"):
        fp.train_test_split(x, test_size=1.5)
    with pytest.raises(ValueError, match="test_size=10"):
        fp.train_test_split(x, test_size=10)
    with pytest.raises(ValueError, match="sum of train_size and test_size"):
        fp.train_test_split(x, test_size=5, train_size=6)
    with pytest.raises(ValueError, match="shuffle=False"):
        fp.train_test_split(x, shuffle=False, stratify=np.arange(10) % 2)
    with pytest.raises(ValueError, match="only 1 member"):
        fp.train_test_split(x, stratify=[0] * 9 + [1])
    with pytest.raises(ValueError, match="At least one array"):
        fp.train_test_split()


# --------------------------------------------------------------------------- clean

def _dirty():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 3))
    y = rng.normal(size=200)
    x[5, 0] = np.nan
    x[17, 2] = np.inf
    y[30] = -np.inf
    x[50, 1] = 40.0       # planted outliers
    x[120, 2] = -35.0
    return x, y


def test_clean_drop_reports_rows():
    x, y = _dirty()
    xc, yc, rep = fp.clean(x, y)
    np.testing.assert_array_equal(rep.nonfinite_rows, [5, 17, 30])
    assert len(rep.outlier_rows) == 0 and rep.n_removed == 3
    np.testing.assert_array_equal(rep.kept, np.setdiff1d(np.arange(200), [5, 17, 30]))
    np.testing.assert_array_equal(xc, x[rep.kept])
    np.testing.assert_array_equal(yc, y[rep.kept])
    assert np.isfinite(xc).all() and "kept 197 of 200" in str(rep)


@pytest.mark.parametrize("method", ["zscore", "iqr"])
def test_clean_outliers_on_finite_data(method):
    x, y = _dirty()
    xc, yc, rep = fp.clean(x, y, outliers=method, z_thresh=6.0, iqr_k=5.0)
    np.testing.assert_array_equal(rep.outlier_rows, [50, 120])
    np.testing.assert_array_equal(rep.removed, [5, 17, 30, 50, 120])
    assert xc.shape == (195, 3) and yc.shape == (195,)
    # Statistics come from the finite cells only: a NaN in a column does not hide its outliers.
    x2 = x.copy()
    x2[60, 1] = np.nan
    _, _, rep2 = fp.clean(x2, nonfinite="impute", outliers=method, z_thresh=6.0, iqr_k=5.0)
    np.testing.assert_array_equal(rep2.outlier_rows, [50, 120])


def test_clean_zscore_threshold_is_population_std():
    x = np.array([[0.0], [0.0], [0.0], [0.0], [10.0]])
    # mean 2, population std 4: z of the last row is exactly 2.
    assert fp.clean(x, outliers="zscore", z_thresh=1.99)[2].outlier_rows.tolist() == [4]
    assert fp.clean(x, outliers="zscore", z_thresh=2.01)[2].outlier_rows.tolist() == []


def test_clean_impute_uses_column_median_of_finite_values():
    x, y = _dirty()
    xc, yc, rep = fp.clean(x, y, nonfinite="impute")
    np.testing.assert_array_equal(rep.nonfinite_rows, [30])        # the bad target is dropped
    np.testing.assert_array_equal(rep.imputed, [[5, 0], [17, 2]])
    rows = np.setdiff1d(np.arange(200), [30])
    col0, col2 = x[rows, 0], x[rows, 2]
    assert xc[5, 0] == np.median(col0[np.isfinite(col0)])
    assert xc[17, 2] == np.median(col2[np.isfinite(col2)])        # only row 30 (after it) was dropped
    assert np.isfinite(xc).all() and len(yc) == 199


def test_clean_raise_and_errors():
    x, y = _dirty()
    with pytest.raises(ValueError, match="row 5, column 0"):
        fp.clean(x, y, nonfinite="raise")
    with pytest.raises(ValueError, match="y has a non-finite value at row 30"):
        fp.clean(np.nan_to_num(x, nan=0, posinf=0), y, nonfinite="raise")
    with pytest.raises(ValueError, match="200 != 10"):
        fp.clean(x, y[:10])
    with pytest.raises(ValueError, match="nonfinite"):
        fp.clean(x, nonfinite="zero")
    with pytest.raises(ValueError, match="column 1 of x has no finite value"):
        fp.clean(np.column_stack([np.ones(3), np.full(3, np.nan)]), nonfinite="impute")


def test_clean_keeps_image_shape():
    imgs = np.random.default_rng(3).normal(size=(10, 4, 4))
    imgs[2, 1, 3] = np.nan
    xc, yc, rep = fp.clean(imgs)
    assert xc.shape == (9, 4, 4) and yc is None and rep.nonfinite_rows.tolist() == [2]


# --------------------------------------------------------------------------- augmentation

def _images(shape=(6, 5, 7), seed=4):
    return np.random.default_rng(seed).uniform(size=shape)


@pytest.mark.parametrize("shape,image_shape", [((6, 5, 7), None), ((6, 5, 7, 3), None),
                                               ((6, 35), (5, 7)), ((6, 105), (5, 7, 3))])
@pytest.mark.parametrize("make", [lambda **k: fp.RandomFlip("horizontal_and_vertical", **k),
                                  lambda **k: fp.RandomRotation(0.1, **k),
                                  lambda **k: fp.RandomZoom(0.2, **k),
                                  lambda **k: fp.RandomResizedCrop(**k)],
                         ids=["flip", "rotation", "zoom", "crop"])
def test_augmentation_shapes_and_determinism(shape, image_shape, make):
    x = _images(shape)
    a = make(image_shape=image_shape, seed=7)(x)
    b = make(image_shape=image_shape, seed=7)(x)
    c = make(image_shape=image_shape, seed=8)(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_flips_are_exact_mirrors_and_reverse():
    x = _images((64, 5, 7))
    out = fp.RandomFlip("horizontal", seed=0)(x)
    flipped = np.array([np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)])
    same = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
    assert (flipped ^ same).all() and 10 < flipped.sum() < 54
    back = out.copy()
    back[flipped] = back[flipped][:, :, ::-1]
    np.testing.assert_array_equal(back, x)
    v = fp.RandomFlip("vertical", seed=0)(x)
    assert all(np.array_equal(o, xi) or np.array_equal(o, xi[::-1]) for o, xi in zip(v, x))
    u8 = (x * 255).astype(np.uint8)
    assert fp.RandomFlip(seed=1)(u8).dtype == np.uint8


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_rotation_exact_angles(interpolation):
    x = _images((4, 6, 6, 2))
    np.testing.assert_array_equal(fp.RandomRotation(0.0, interpolation=interpolation)(x), x)
    # factor 1/4 of a turn = 90 degrees counter-clockwise, which is np.rot90 on (H, W).
    r90 = fp.RandomRotation((0.25, 0.25), interpolation=interpolation)(x)
    np.testing.assert_allclose(r90, np.rot90(x, k=1, axes=(1, 2)), atol=1e-12)
    r180 = fp.RandomRotation((0.5, 0.5), interpolation=interpolation)(x)
    np.testing.assert_allclose(r180, x[:, ::-1, ::-1], atol=1e-12)


def test_rotation_fills_corners_and_keeps_centre():
    x = np.ones((1, 9, 9))
    out = fp.RandomRotation((0.125, 0.125), fill_value=-1.0, interpolation="nearest")(x)   # 45 degrees
    assert out[0, 0, 0] == -1.0 and out[0, 4, 4] == 1.0
    assert fp.RandomRotation(0.05, seed=0)(x.astype(np.int32)).dtype == np.float32


def test_zoom_and_crop():
    x = _images((3, 8, 8))
    np.testing.assert_array_equal(fp.RandomZoom(0.0)(x), x)
    np.testing.assert_array_equal(fp.RandomResizedCrop(scale=(1.0, 1.0))(x), x)
    # Zoom out by 2 (factor +1): the border is fill, the centre pixel stays.
    z = fp.RandomZoom((1.0, 1.0), fill_value=-5.0, interpolation="nearest")(np.ones((1, 9, 9)))
    assert z[0, 0, 0] == -5.0 and z[0, 4, 4] == 1.0 and (z[0, 2:7, 2:7] == 1).all()
    # Zoom in by 2 (factor -0.5) on a 9x9 ramp: the centre row reads half the ramp.
    ramp = np.tile(np.arange(9.0), (1, 9, 1))
    zi = fp.RandomZoom((-0.5, -0.5))(ramp)
    np.testing.assert_allclose(zi[0, 4], 4 + (np.arange(9) - 4) * 0.5)
    # A crop never reads outside the image: no fill value bleeds into a constant image.
    np.testing.assert_array_equal(fp.RandomResizedCrop(scale=(0.3, 0.6), seed=0)(np.ones((20, 8, 8))), 1.0)
    c = fp.RandomResizedCrop(scale=(0.3, 0.6), seed=0)(x)
    assert c.min() >= x.min() and c.max() <= x.max() and not np.array_equal(c, x)


def test_gaussian_noise_statistics():
    x = np.full((400, 50), 3.0, dtype=np.float32)
    out = fp.GaussianNoise(0.2, seed=0)(x)
    noise = out - x
    assert out.dtype == np.float32
    assert abs(noise.mean()) < 0.2 * 4 / np.sqrt(x.size)          # 4 standard errors
    assert noise.std() == pytest.approx(0.2, rel=0.02)
    np.testing.assert_array_equal(fp.GaussianNoise(0.0, seed=0)(x), x)


def test_pipeline_flat_images_and_validation():
    x = _images((5, 36))
    pipe = fp.Augmentation([fp.RandomFlip(seed=0), fp.RandomRotation(0.02, seed=1),
                            fp.GaussianNoise(0.01, seed=2)], image_shape=(6, 6))
    out = pipe(x)
    again = fp.Compose([fp.RandomFlip(seed=0), fp.RandomRotation(0.02, seed=1),
                        fp.GaussianNoise(0.01, seed=2)], image_shape=(6, 6))(x)
    assert out.shape == x.shape
    np.testing.assert_array_equal(out, again)
    with pytest.raises(ValueError, match="image_shape"):
        fp.RandomFlip()(x)
    with pytest.raises(ValueError, match="does not fit"):
        fp.RandomFlip(image_shape=(5, 5))(x)
    with pytest.raises(ValueError, match="mode"):
        fp.RandomFlip("diagonal")
    with pytest.raises(ValueError, match="interpolation"):
        fp.RandomRotation(0.1, interpolation="cubic")
    with pytest.raises(ValueError, match="stddev"):
        fp.GaussianNoise(-1.0)


def test_device_arrays_are_copied_with_get():
    x = _data()
    np.testing.assert_array_equal(fp.StandardScaler().fit(FakeCupy(x)).transform(FakeCupy(x)),
                                  fp.StandardScaler().fit_transform(x))
    x_nan = x.copy()
    x_nan[1, 1] = np.nan
    assert fp.clean(FakeCupy(x_nan), FakeCupy(np.arange(50)))[2].nonfinite_rows.tolist() == [1]
    imgs = _images((3, 4, 4))
    np.testing.assert_array_equal(fp.RandomFlip(seed=0)(FakeCupy(imgs)), fp.RandomFlip(seed=0)(imgs))
    assert fp.GaussianNoise(0.1, seed=0)(FakeCupy(imgs)).shape == imgs.shape
