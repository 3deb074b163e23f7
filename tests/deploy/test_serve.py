"""The HTTP server: a real uvicorn on a loopback port, talked to over HTTP.

Good requests give exactly model.predict's numbers; every kind of bad request gets
its 4xx with a message and the server keeps answering; concurrent clients all get
their own correct outputs."""
from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fusednn
from fusednn import keras

from conftest import HOST_BACKENDS

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
from fusednn import serve  # noqa: E402

MAX_BATCH, MAX_BODY = 50, 64 << 10


class ServerThread:
    """uvicorn serving ``app`` in a background thread on a socket bound to port 0
    (the kernel picks a free port, so there is no race for it)."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def call(port, method, path, body=None, headers=None, conn=None):
    """(status, JSON answer) of one request; ``body`` a dict/list is sent as JSON."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        if own:
            conn.close()


def raw_call(port, payload: bytes):
    """Send raw bytes (headers and body as given) and parse the status and JSON answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")]
            if length and len(rest) >= length[0]:
                break
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(rest)


@pytest.fixture(scope="module", params=HOST_BACKENDS)
def served(request):
    previous = fusednn.get_backend().name
    fusednn.set_backend(request.param)
    fusednn.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(32, activation="relu", input_shape=(6,)),
                              keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(3)])
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((200, 6)), rng.standard_normal((200, 3)), epochs=2, verbose=0)
    model.metadata = {"source": "test"}
    app = serve.create_app(model, max_batch=MAX_BATCH, max_body=MAX_BODY)
    with ServerThread(app) as server:
        yield model, server.port
    fusednn.set_backend(previous)


def test_predict_matches_model_exactly(served):
    model, port = served
    x = np.random.default_rng(1).standard_normal((37, 6)).astype(np.float32)
    status, answer = call(port, "POST", "/predict", {"inputs": x.tolist()})
    assert status == 200 and set(answer) == {"outputs"}
    np.testing.assert_array_equal(np.array(answer["outputs"], dtype=np.float32), model.predict(x, verbose=0))
    status, one = call(port, "POST", "/predict", {"inputs": x[0].tolist()})  # a flat list: one sample
    assert status == 200 and np.array_equal(np.array(one["outputs"], dtype=np.float32), model.predict(x[:1], verbose=0))
    status, ints = call(port, "POST", "/predict", {"inputs": [[1, 2, 3, 4, 5, -6]]})
    assert status == 200
    np.testing.assert_array_equal(np.array(ints["outputs"], dtype=np.float32),
                                  model.predict(np.array([[1, 2, 3, 4, 5, -6]]), verbose=0))


def test_health_and_metadata(served):
    model, port = served
    status, health = call(port, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["requests"] >= 0
    status, meta = call(port, "GET", "/metadata")
    assert status == 200
    assert meta["input_shape"] == [None, 6] and meta["output_shape"] == [None, 3]
    assert meta["backend"] == model._backend.name and meta["model"] == model.name
    assert meta["fusednn_version"] == fusednn.__version__ and meta["params"] == model.count_params()
    assert [(layer["class_name"], layer["output_shape"]) for layer in meta["layers"]] == \
        [("Dense", [None, 32]), ("Dense", [None, 16]), ("Dense", [None, 3])]
    assert meta["limits"] == {"max_batch": MAX_BATCH, "max_body": MAX_BODY,
                              "max_inflight_body": serve.DEFAULT_MAX_INFLIGHT_BODY}
    assert meta["metadata"] == {"source": "test"}


ROW = [0.5, -1.0, 2.0, 0.0, 1.5, -0.25]


def _row_with(value: str) -> bytes:
    return ('{"inputs": [[0.5, -1.0, 2.0, 0.0, 1.5, %s]]}' % value).encode()


BAD_REQUESTS = {
    "malformed_json": (b'{"inputs": [[1, 2', 400, "not valid JSON"),
    "empty_body": (b"", 400, "not valid JSON"),
    "not_utf8": (b'{"inputs": [[\xff\xfe]]}', 400, "not valid JSON"),
    "deep_nesting": (b"[" * 30_000 + b"]" * 30_000, 400, "not valid JSON"),
    "not_an_object": (json.dumps([ROW]).encode(), 422, '"inputs" key'),
    "missing_key": (json.dumps({"x": [ROW]}).encode(), 422, '"inputs" key'),
    "empty_inputs": (b'{"inputs": []}', 422, "non-empty list"),
    "inputs_not_list": (b'{"inputs": "0.5, 1"}', 422, "non-empty list"),
    "wrong_feature_count": (json.dumps({"inputs": [ROW[:5]]}).encode(), 422, "has 5 values but the model takes 6"),
    "ragged_rows": (json.dumps({"inputs": [ROW, ROW[:4]]}).encode(), 422, "row 1 has 4 values"),
    "row_not_list": (json.dumps({"inputs": [ROW, 3]}).encode(), 422, "row 1 is not a list"),
    "string_value": (_row_with('"1.5"'), 422, 'column 5: "1.5" is not a number'),
    "null_value": (_row_with("null"), 422, "null is not a number"),
    "bool_value": (_row_with("true"), 422, "true is not a number"),
    "nested_value": (_row_with("[1]"), 422, "[1] is not a number"),
    "nan_token": (_row_with("NaN"), 422, "NaN is not allowed"),
    "infinity_token": (_row_with("Infinity"), 422, "Infinity is not allowed"),
    "minus_infinity_token": (_row_with("-Infinity"), 422, "-Infinity is not allowed"),
    "overflow_1e999": (_row_with("1e999"), 422, "finite float32"),
    "beyond_float32_1e39": (_row_with("1e39"), 422, "finite float32"),
    "beyond_float32_negative": (_row_with("-3.5e38"), 422, "finite float32"),
    "huge_integer": (_row_with("1" + "0" * 400), 422, "finite float32"),
    "too_many_rows": (json.dumps({"inputs": [ROW] * (MAX_BATCH + 1)}).encode(), 413, "--max-batch"),
    "body_too_large": (json.dumps({"inputs": [ROW] * 5, "pad": "x" * MAX_BODY}).encode(), 413, "--max-body"),
}


@pytest.mark.parametrize("kind", list(BAD_REQUESTS))
def test_bad_request_gets_4xx_and_server_keeps_serving(served, kind):
    model, port = served
    body, status, message = BAD_REQUESTS[kind]
    got, answer = call(port, "POST", "/predict", body, {"Content-Type": "application/json"})
    assert (got, set(answer)) == (status, {"error"}), answer
    assert message in answer["error"]
    got, answer = call(port, "POST", "/predict", {"inputs": [ROW]})
    assert got == 200
    np.testing.assert_array_equal(np.array(answer["outputs"], dtype=np.float32),
                                  model.predict(np.array([ROW]), verbose=0))


def test_oversized_body_refused_before_it_is_sent_or_while_it_streams(served):
    _, port = served
    # Content-Length alone is enough: the server answers before any body byte arrives
    status, answer = raw_call(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (10 * MAX_BODY))
    assert status == 413 and "--max-body" in answer["error"]
    chunk = b"x" * 8192
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 2)) + b"0\r\n\r\n"
    status, answer = raw_call(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert status == 413 and "--max-body" in answer["error"]
    assert call(port, "GET", "/health")[0] == 200


def test_wrong_method_and_path(served):
    _, port = served
    assert call(port, "GET", "/predict") == (405, {"error": "Method Not Allowed"})
    assert call(port, "GET", "/nowhere") == (404, {"error": "Not Found"})


def test_concurrent_clients_get_their_own_outputs(served):
    model, port = served
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((int(rng.integers(1, MAX_BATCH + 1)), 6)).astype(np.float32) for _ in range(160)]
    expected = [model.predict(x, verbose=0) for x in batches]

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # keep-alive: one connection per client
        try:
            for i in range(k, len(batches), 16):
                status, answer = call(port, "POST", "/predict", {"inputs": batches[i].tolist()}, conn=conn)
                assert status == 200
                np.testing.assert_array_equal(np.array(answer["outputs"], dtype=np.float32), expected[i])
                if i % 5 == 0:
                    assert call(port, "POST", "/predict", b'{"inputs": [[NaN]]}', conn=conn)[0] == 422
            return True
        finally:
            conn.close()

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(client, range(16)))
    status, health = call(port, "GET", "/health")
    assert health["requests"] >= len(batches)


def test_health_answers_while_a_prediction_waits(host_backend_name):
    """Prediction runs in a worker thread: with the model busy (its lock held here),
    a /predict waits while /health and /metadata are answered at once."""
    fusednn.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(2,))])
    app = serve.create_app(model)
    lock = app.state.predictor._lock
    with ServerThread(app) as server:
        with ThreadPoolExecutor(1) as pool:
            with lock:
                pending = pool.submit(call, server.port, "POST", "/predict", {"inputs": [[1.0, 2.0]]})
                t0 = time.monotonic()
                assert call(server.port, "GET", "/health")[0] == 200
                assert call(server.port, "GET", "/metadata")[0] == 200
                assert time.monotonic() - t0 < 2.0 and not pending.done()
            status, answer = pending.result(timeout=10)
    assert status == 200
    np.testing.assert_array_equal(np.array(answer["outputs"], dtype=np.float32),
                                  model.predict(np.array([[1.0, 2.0]]), verbose=0))


def test_classification_labels(host_backend_name):
    fusednn.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(3, input_shape=(2,))])
    model.metadata = {"task": "classification", "classes": ["cat", "dog", "eel"]}
    with ServerThread(serve.create_app(model)) as server:
        x = np.random.default_rng(0).standard_normal((9, 2))
        status, answer = call(server.port, "POST", "/predict", {"inputs": x.tolist()})
    assert status == 200
    assert answer["labels"] == [["cat", "dog", "eel"][k] for k in model.predict(x, verbose=0).argmax(axis=1)]


def test_parse_size_and_limits():
    assert serve.parse_size("16MiB") == 16 << 20 and serve.parse_size("512KiB") == 512 << 10
    assert serve.parse_size("1MB") == 10**6 and serve.parse_size("1048576") == 1 << 20
    assert serve.parse_size("2k") == 2000 and serve.parse_size("1.5GiB") == 3 << 29
    for bad in ("", "ten", "-1", "0", "5 parsecs"):
        with pytest.raises(ValueError):
            serve.parse_size(bad)
    with pytest.raises(ValueError, match="not built"):
        serve.create_app(keras.Sequential([keras.layers.Dense(2)]))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command(tmp_path):
    fusednn.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(4, activation="relu", input_shape=(3,)), keras.layers.Dense(2)])
    model.save(tmp_path / "m.npz")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fusednn", "serve", str(tmp_path / "m.npz"), "--port", str(port),
                             "--max-batch", "5", "--log-level", "warning"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ, FUSEDNN_BACKEND="numpy"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, health = call(port, "GET", "/health")
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "fusednn serve did not come up"
                time.sleep(0.1)
        assert status == 200
        x = [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]
        status, answer = call(port, "POST", "/predict", {"inputs": x})
        assert status == 200
        np.testing.assert_array_equal(np.array(answer["outputs"], dtype=np.float32), model.predict(np.array(x), verbose=0))
        assert call(port, "POST", "/predict", {"inputs": x * 3})[0] == 413
        assert call(port, "GET", "/metadata")[1]["backend"] == "numpy"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert f"on http://127.0.0.1:{port}" in out


def test_serve_command_errors(tmp_path):
    (tmp_path / "junk.npz").write_text("not a model")
    for args, message in ((["serve", str(tmp_path / "junk.npz")], "not a fusednn model file"),
                          (["serve", str(tmp_path / "missing.npz")], "No such file"),
                          (["serve", "m.npz", "--max-body", "lots"], "not a size")):
        run = subprocess.run([sys.executable, "-m", "fusednn", *args], capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and message in run.stderr, run.stderr


def test_missing_serve_extra_is_named(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_starlette(name, *args, **kwargs):
        if name.split(".")[0] in ("starlette", "uvicorn"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_starlette)
    with pytest.raises(ImportError, match=r'pip install "fusednn\[serve\]"'):
        serve.create_app(keras.Sequential([keras.layers.Dense(2, input_shape=(2,))]))
