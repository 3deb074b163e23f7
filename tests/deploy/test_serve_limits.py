"""The server under hostile clients, scaled to seconds on 127.0.0.1: slowloris and
idle connections beyond the connection cap, a stalled body, concurrent large bodies;
good requests keep succeeding and the bytes held stay within the limits. Also the
float32 parse of large bodies: same numbers as json.loads, a few times the body's size."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import tracemalloc

import numpy as np
import pytest

import fusednn
from fusednn import keras

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
from fusednn import serve  # noqa: E402

ROW = [0.5, -1.0, 2.0, 0.0]
HEADER_TIMEOUT, BODY_TIMEOUT, CAP, INFLIGHT = 1.0, 1.2, 16, 1 << 20


@pytest.fixture(scope="module")
def server():
    fusednn.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu", input_shape=(4,)), keras.layers.Dense(2)])
    app = serve.create_app(model, max_batch=20_000, max_body=1 << 20, max_inflight_body=INFLIGHT)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = serve.uvicorn_config(app, HEADER_TIMEOUT, BODY_TIMEOUT, keep_alive=1, max_connections=CAP,
                                  log_level="critical")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    yield model, app, sock.getsockname()[1], srv
    srv.should_exit = True
    thread.join(10)
    sock.close()


def good(port, rows=1):
    """Status of one good /predict on a fresh connection (503 retried once, as clients do)."""
    for _ in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("POST", "/predict", body=json.dumps({"inputs": [ROW] * rows}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status == 200:
                assert len(json.loads(data)["outputs"]) == rows
                return 200
            status = resp.status
        except OSError as e:
            status = type(e).__name__
        finally:
            conn.close()
        time.sleep(0.05)
    return status


def closed(s: socket.socket, wait: float) -> bool:
    """Whether the server closed ``s`` (EOF or reset) within ``wait`` seconds."""
    s.settimeout(wait)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_slowloris_and_idle_clients_beyond_the_cap_do_not_stop_good_requests(server):
    _, _, port, _ = server
    stop = threading.Event()
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(3 * CAP)]

    def trickle():  # one byte of an endless header every 50 ms per connection
        while not stop.is_set():
            for s in slow[: CAP]:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            time.sleep(0.05)

    for s in slow[: CAP]:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        statuses = [good(port) for _ in range(30)]
    finally:
        stop.set()
        t.join(5)
    assert statuses == [200] * 30
    # every slow or idle connection is closed by the header timeout (or evicted) in bounded time
    assert all(closed(s, HEADER_TIMEOUT + 2.0) for s in slow)
    for s in slow:
        s.close()


def test_header_timeout_answers_408_and_a_stalled_body_is_closed(server):
    _, _, port, _ = server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        s.settimeout(HEADER_TIMEOUT + 3)
        assert s.recv(100).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - t0 >= HEADER_TIMEOUT * 0.9
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\"")
        for _ in range(3):  # trickling keeps neither the head's nor the body's deadline alive
            time.sleep(BODY_TIMEOUT / 4)
            s.sendall(b" ")
        assert closed(s, BODY_TIMEOUT + 2.0)
    assert good(port) == 200


def test_concurrent_large_bodies_share_the_inflight_budget(server):
    """12 clients announce 300 KB bodies and send them slowly: at most INFLIGHT bytes are
    held (the rest get 503 at once), and small requests keep succeeding meanwhile."""
    _, app, port, _ = server
    size = 300_000
    x = np.full((size // 30, 4), 0.25, np.float32)
    body = json.dumps({"inputs": x.tolist()}).encode()
    body = body[:-1] + b" " * (size - len(body)) + b"}" if len(body) < size else body
    results, lock = [], threading.Lock()

    def upload():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.putrequest("POST", "/predict")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            for k in range(0, len(body), 50_000):
                conn.send(body[k:k + 50_000])
                time.sleep(0.05)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except OSError:
            status = "closed"
        finally:
            conn.close()
        with lock:
            results.append(status)

    threads = [threading.Thread(target=upload) for _ in range(12)]
    for t in threads:
        t.start()
    small = [good(port, rows=3) for _ in range(20)]
    for t in threads:
        t.join(20)
    budget = app.state.body_budget
    assert small == [200] * 20
    assert budget.peak <= INFLIGHT and budget.used == 0
    assert results.count(200) >= 1 and set(results) <= {200, 503, "closed"}
    assert results.count(200) <= INFLIGHT // len(body) + 1 and len(results) == 12


def test_plain_body_parse_is_exact_and_small():
    """The fast parse gives json.loads's float32 numbers, and peaks at a few times the body."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4000, 25)) * 10.0 ** rng.integers(-30, 30, (4000, 25))).astype(np.float32)
    body = json.dumps({"inputs": x.tolist()}).encode()
    tracemalloc.start()
    try:
        got = serve.parse_inputs(body, 25, 10_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.dtype == np.float32 and np.array_equal(got, x)
    assert peak <= 4 * len(body), (peak, len(body))
    ints = b'{"inputs": [' + b",".join([b"[1,0,-3,7]"] * 50_000) + b"]}"
    tracemalloc.start()
    try:
        got = serve.parse_inputs(ints, 4, 100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(got, np.tile(np.float32([1, 0, -3, 7]), (50_000, 1)))
    assert peak <= 4 * len(ints), (peak, len(ints))
    # same errors as the json.loads path
    top = float(np.finfo(np.float32).max)
    assert serve.parse_inputs(json.dumps({"inputs": [[top, -top, 1, 0]]}).encode(), 4, 10)[0, 0] == top
    for bad, status in ((b'{"inputs": [[1, 2, 3]]}', 422), (b'{"inputs": [[1, 2, 3, 1e39]]}', 422),
                        (b'{"inputs": [[1, 2, 3, 3.40282350e38]]}', 422),
                        (b'{"inputs": [[1, 2, 3, 4], [1, 2, 3]]}', 422), (b'{"inputs": [[1, 2, 3, 4]' * 2, 400)):
        with pytest.raises(serve.BadRequest) as e:
            serve.parse_inputs(bad, 4, 10)
        assert e.value.status == status
    with pytest.raises(serve.BadRequest) as e:
        serve.parse_inputs(b'{"inputs": [' + b",".join([b"[1,2,3,4]"] * 11) + b"]}", 4, 10)
    assert e.value.status == 413
    big_nan = b'{"inputs": [' + b",".join([b"[1,2,3,4]"] * 200_000) + b',[1,2,3,NaN]]}'
    with pytest.raises(serve.BadRequest) as e:
        serve.parse_inputs(big_nan, 4, 1_000_000)
    assert e.value.status == 422


@pytest.mark.parametrize("flags", [["--port", "70000"], ["--port", "-1"], ["--port", "http"],
                                   ["--header-timeout", "0"], ["--body-timeout", "nan"], ["--max-connections", "0"],
                                   ["--max-inflight-body", "0"], ["--keep-alive", "-5"]])
def test_bad_serve_flags_are_one_line_argument_errors(flags, capsys):
    from fusednn import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["serve", "model.npz", *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and flags[0] in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("fusednn serve: error: argument " + flags[0])
