"""Load test of ``fusednn serve``: many concurrent clients on loopback, good and bad requests.

Trains and saves the seed program's model (10 -> Dense 64 relu -> 64 relu -> 1),
starts the real server (``python -m fusednn serve``) in a subprocess, and for each
batch size drives it with --clients threads, each on its own keep-alive
connection (http.client), for --duration seconds. Every good answer is checked
against the same model's ``predict`` in this process (bit for bit) and every
--bad-every-th request of each client is a malformed one (a rotating kind:
broken JSON, missing key, wrong feature count, ragged rows, non-numbers, NaN /
Infinity tokens, 1e999, 1e39, too many rows, a body over the limit announced by
Content-Length or streamed chunked), sent on a second connection, which must
get its 4xx. Reported: good requests/s, rows/s, p50/p99 latency, failed good
requests (must be 0), malformed requests answered with the expected status,
the time the model itself took and the time requests waited for its lock,
and, as the reference, the same predict calls in-process without HTTP.
The clients run on the same machine as the server, so they share its cores.

Run: python benchmarks/serve_load.py [--clients 50] [--duration 10] [--batches 1,256] [--backend cpu]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import fusednn
from fusednn import keras

FEATURES = 10
MAX_BODY = 1 << 20
ROW = [0.25] * FEATURES


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _row_with(value: str) -> bytes:
    return ('{"inputs": [[%s, %s]]}' % (", ".join(map(str, ROW[:-1])), value)).encode()


def _chunked(total: int) -> bytes:
    chunk = b" " * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(total // len(chunk) + 1))
    return b"POST /predict HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"


#: kind -> (how it is sent, payload, expected status)
BAD = {
    "malformed JSON": ("body", b'{"inputs": [[1, 2', 400),
    "missing key": ("body", json.dumps({"rows": [ROW]}).encode(), 422),
    "wrong feature count": ("body", json.dumps({"inputs": [ROW[:-1]]}).encode(), 422),
    "ragged rows": ("body", json.dumps({"inputs": [ROW, ROW[:3]]}).encode(), 422),
    "non-numeric value": ("body", _row_with('"abc"'), 422),
    "NaN token": ("body", _row_with("NaN"), 422),
    "Infinity token": ("body", _row_with("-Infinity"), 422),
    "1e999": ("body", _row_with("1e999"), 422),
    "1e39 (float32 overflow)": ("body", _row_with("1e39"), 422),
    "rows > --max-batch": ("body", json.dumps({"inputs": [ROW] * 10_001}).encode(), 413),
    "Content-Length > --max-body": ("raw", b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n"
                                           b"Content-Type: application/json\r\n\r\n" % (64 * MAX_BODY), 413),
    "chunked body > --max-body": ("raw", _chunked(MAX_BODY + 1), 413),
}


def raw_status(port: int, payload: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(payload)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


def make_model(path: str) -> keras.Sequential:
    fusednn.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.layers.Dense(64, activation="relu", input_shape=(FEATURES,)),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(rng.random((1000, FEATURES)), rng.random((1000, 1)), epochs=5, verbose=0)
    model.save(path)
    return model


class Phase:
    """One batch size's run: the clients' counters, merged under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.good_failed = 0
        self.failures: list[str] = []
        self.bad_sent: dict[str, int] = {k: 0 for k in BAD}
        self.bad_ok: dict[str, int] = {k: 0 for k in BAD}


def client(port: int, payloads: list[tuple[bytes, np.ndarray]], bad_every: int, start: threading.Barrier,
           deadline: list[float], phase: Phase, seed: int) -> None:
    rng = np.random.default_rng(seed)
    good = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    bad = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    kinds = list(BAD)
    latencies, failed, failures = [], 0, []
    bad_sent = {k: 0 for k in BAD}
    bad_ok = {k: 0 for k in BAD}
    start.wait()
    i = 0
    while time.perf_counter() < deadline[0]:
        i += 1
        if bad_every and i % bad_every == 0:
            kind = kinds[(seed + i // bad_every) % len(kinds)]
            how, payload, want = BAD[kind]
            bad_sent[kind] += 1
            try:
                if how == "raw":
                    status = raw_status(port, payload)
                else:
                    bad.request("POST", "/predict", body=payload, headers={"Content-Type": "application/json"})
                    resp = bad.getresponse()
                    resp.read()
                    status = resp.status
                    if resp.will_close:
                        bad.close()
                bad_ok[kind] += status == want
            except (OSError, http.client.HTTPException):
                bad.close()  # counted as not ok; the next bad request reconnects
            continue
        body, expected = payloads[int(rng.integers(len(payloads)))]
        t0 = time.perf_counter()
        try:
            good.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            resp = good.getresponse()
            data = resp.read()
            ok = resp.status == 200 and np.array_equal(
                np.array(json.loads(data)["outputs"], dtype=np.float32), expected)
            if not ok:
                failures.append(f"status {resp.status}: {data[:200]!r}")
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            ok = False
            failures.append(f"{type(e).__name__}: {e}")
            good.close()
        latencies.append(time.perf_counter() - t0)
        failed += not ok
    good.close()
    bad.close()
    with phase.lock:
        phase.latencies += latencies
        phase.good_failed += failed
        phase.failures += failures[:3]
        for k in BAD:
            phase.bad_sent[k] += bad_sent[k]
            phase.bad_ok[k] += bad_ok[k]


def health(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/health")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def in_process_rate(model: keras.Sequential, batch: int, seconds: float = 1.0) -> float:
    """predict calls per second on one thread, without HTTP (the reference)."""
    x = np.random.default_rng(1).random((batch, FEATURES)).astype(np.float32)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.predict(x, verbose=0)
        n += 1
    return n / (time.perf_counter() - t0)


def run_phase(port: int, model: keras.Sequential, batch: int, clients: int, duration: float,
              bad_every: int) -> dict:
    rng = np.random.default_rng(batch)
    payloads = []
    for _ in range(16):
        x = rng.standard_normal((batch, FEATURES)).astype(np.float32)
        payloads.append((json.dumps({"inputs": x.tolist()}).encode(), model.predict(x, verbose=0)))
    phase = Phase()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]
    threads = [threading.Thread(target=client, args=(port, payloads, bad_every, start, deadline, phase, k))
               for k in range(clients)]
    for t in threads:
        t.start()
    before = health(port)
    deadline[0] = time.perf_counter() + duration
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = health(port)
    lat = np.array(phase.latencies) * 1e3
    good = len(lat) - phase.good_failed
    served = after["requests"] - before["requests"]
    return {
        "batch": batch, "wall": wall, "good": good, "good_failed": phase.good_failed, "failures": phase.failures,
        "rps": good / wall, "rows_per_s": good * batch / wall,
        "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "bad_sent": phase.bad_sent, "bad_ok": phase.bad_ok,
        "model_ms": 1e3 * (after["model_seconds"] - before["model_seconds"]) / max(served, 1),
        "wait_ms": 1e3 * (after["lock_wait_seconds"] - before["lock_wait_seconds"]) / max(served, 1),
        "model_share": (after["model_seconds"] - before["model_seconds"]) / wall,
        "reference_rps": in_process_rate(model, batch),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per batch size")
    p.add_argument("--batches", default="1,256", help="comma-separated rows per request")
    p.add_argument("--bad-every", type=int, default=10, help="every n-th request of a client is malformed (0: none)")
    p.add_argument("--backend", choices=["numpy", "cpu", "cuda"], default=None)
    args = p.parse_args()
    if args.backend:
        fusednn.set_backend(args.backend)
    backend = fusednn.get_backend().name
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo.npz")
        model = make_model(path)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "fusednn", "serve", path, "--port", str(port),
                                   "--backend", backend, "--max-body", str(MAX_BODY), "--log-level", "warning"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    health(port)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        print(server.stderr.read(), file=sys.stderr)
                        return 1
                    time.sleep(0.1)
            results = [run_phase(port, model, int(b), args.clients, args.duration, args.bad_every)
                       for b in args.batches.split(",")]
            alive = health(port)["status"] == "ok"
        finally:
            server.terminate()
            server.wait(30)

    cmd = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:])
    print(f"# fusednn {fusednn.__version__} serve, {backend} backend, {cpu_name()}, {os.cpu_count()} cores; "
          f"{args.clients} keep-alive clients (threads, http.client) in one process on the same machine, "
          f"{args.duration:g} s per batch size, every {args.bad_every}th request malformed")
    print("| rows/request | good requests/s | rows/s | p50 ms | p99 ms | good ok | good failed | malformed 4xx as "
          "expected | model ms/request | lock wait ms/request | in-process predict/s (reference) | "
          "HTTP / in-process |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        sent, ok = sum(r["bad_sent"].values()), sum(r["bad_ok"].values())
        print(f"| {r['batch']} | {r['rps']:.0f} | {r['rows_per_s']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{r['good']} | {r['good_failed']} | {ok}/{sent} | {r['model_ms']:.3f} | {r['wait_ms']:.2f} | "
              f"{r['reference_rps']:.0f} | {r['rps'] / r['reference_rps']:.3f} |")
    print("\n| malformed kind | expected | " + " | ".join(f"batch {r['batch']}: ok/sent" for r in results) + " |")
    print("|---|---|" + "---|" * len(results))
    for kind, (_, _, want) in BAD.items():
        print(f"| {kind} | {want} | " + " | ".join(f"{r['bad_ok'][kind]}/{r['bad_sent'][kind]}" for r in results)
              + " |")
    print(f"\n# server still healthy after the run: {alive}")
    print(f"# command: {cmd}")
    for r in results:
        for f in r["failures"]:
            print(f"# failed good request (batch {r['batch']}): {f}")
    bad_wrong = any(sum(r["bad_ok"].values()) != sum(r["bad_sent"].values()) for r in results)
    return 0 if alive and not bad_wrong and not any(r["good_failed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
