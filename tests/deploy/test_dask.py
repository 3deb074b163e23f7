"""fusednn.dask.predict on a LocalCluster of 2 worker processes bound to 127.0.0.1: the
predictions equal model.predict, the model travels as its file (an unpicklable model
still works) and each worker loads it once."""
from __future__ import annotations

import threading

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="needs the dask extra (pip install 'fusednn[dask]')")
distributed = pytest.importorskip("distributed", reason="needs the dask extra (pip install 'fusednn[dask]')")

import fusednn  # noqa: E402
import fusednn.dask as fdask  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, worker_dashboard_address=None)
    c = distributed.Client(cluster, timeout=60)
    yield c
    c.close()
    cluster.close()


def _model(outputs: int = 3):
    fusednn.utils.set_random_seed(4)
    m = fusednn.Sequential([fusednn.Input((6,)), fusednn.Dense(9, activation="tanh"), fusednn.Dense(outputs)])
    m.compile("adam", "mse")
    m.cannot_pickle = threading.Lock()  # predict must ship the file, not the object
    return m


def test_predict_dask_array_matches_and_loads_once_per_worker(client):
    model = _model()
    x = np.random.default_rng(0).normal(size=(1013, 6)).astype(np.float32)
    lazy = fdask.predict(model, da.from_array(x, chunks=(97, 4)))  # column chunks get merged
    assert lazy.shape == (1013, 3) and lazy.dtype == np.float32 and lazy.numblocks == (11, 1)
    np.testing.assert_allclose(lazy.compute(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    loads = client.run(fdask.loads_in_this_process)
    assert len(loads) == 2 and all(v <= 1 for v in loads.values()) and sum(loads.values()) >= 1, loads
    # a second call with the same model reuses what the workers hold
    np.testing.assert_allclose(fdask.predict(model, da.from_array(x[:300], chunks=50)).compute(),
                               model.predict(x[:300], verbose=0), rtol=1e-5, atol=1e-6)
    assert client.run(fdask.loads_in_this_process) == loads


def test_predict_dask_dataframe_keeps_the_index(client):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    model = _model(outputs=2)
    x = np.random.default_rng(1).normal(size=(257, 6)).astype(np.float32)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)], index=np.arange(257) * 3 + 5)
    out = fdask.predict(model, dd.from_pandas(frame, npartitions=5)).compute()
    assert list(out.columns) == ["output_0", "output_1"]
    np.testing.assert_array_equal(out.index.to_numpy(), frame.index.to_numpy())
    np.testing.assert_allclose(out.to_numpy(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_predict_rejects_bad_input():
    model = _model()
    with pytest.raises(TypeError, match="dask.array.Array or a dask.dataframe.DataFrame"):
        fdask.predict(model, np.zeros((4, 6)))
    with pytest.raises(ValueError, match="6 columns"):
        fdask.predict(model, da.zeros((4, 5), chunks=2))
    with pytest.raises(ValueError, match="batch_size"):
        fdask.predict(model, da.zeros((4, 6), chunks=2), batch_size=0)
    with pytest.raises(ValueError, match="built model"):
        fdask.predict(fusednn.Sequential([fusednn.Dense(2)]), da.zeros((4, 6), chunks=2))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_of_fusednn_estimators_under_joblib_dask(client):
    fsk = pytest.importorskip("fusednn.sklearn", reason="fusednn.sklearn (the scikit-learn issue) is not merged")
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.model_selection import GridSearchCV

    X, y = make_classification(n_samples=240, n_features=8, n_informative=5, random_state=0)
    X = X.astype(np.float32)
    grid = {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2]}

    def search():
        est = fsk.MLPClassifier(hidden_layer_sizes=(16,), max_iter=10, random_state=0)
        return GridSearchCV(est, grid, cv=2)

    with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
        on_dask = search().fit(X, y)
    local = search().fit(X, y)
    assert on_dask.best_params_ == local.best_params_
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"],
                               atol=1e-12)
    # the 4 candidates x 2 folds really ran on the cluster's workers
    assert len(tasks.data) >= 8 and {t["worker"] for t in tasks.data} <= set(client.scheduler_info()["workers"])
