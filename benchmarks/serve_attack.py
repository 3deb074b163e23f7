"""``fusednn serve`` under attack on 127.0.0.1: good-request success rate and the server's
peak memory while (A) slowloris and idle clients and (B) concurrent large uploads hit it.

Starts the real server (``python -m fusednn serve``, its default limits unless flags
are given after ``--``) in a subprocess and samples its RSS (/proc/PID/status) every
20 ms. Phase A: --slow connections (more than the server's connection cap) that
send a partial request head and then one byte every 100 ms, plus as many that send
nothing, while one client sends good 1-row /predict requests on fresh connections
for --seconds. Phase B: --uploads clients each announce a --upload-mb MB body and
send it in 256 KiB pieces every 50 ms (held in the server for seconds), while the
same good client runs. A good request counts as succeeded only on 200 with the
right number of outputs (one retry after a 503, as a client's retry policy would).

Run: python benchmarks/serve_attack.py [--slow 1100] [--uploads 40] [--upload-mb 15] [--seconds 10]
     [-- extra serve flags, e.g. --max-inflight-body 64MiB]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import fusednn
from fusednn import keras

ROW = [0.25] * 10


class RSS:
    """Samples a process's resident memory until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.samples, self._stop = pid, 0, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.now())
            except OSError:
                return
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def good_requests(port: int, seconds: float) -> tuple[int, int, list[float]]:
    ok = total = 0
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        total += 1
        t0 = time.perf_counter()
        for attempt in range(2):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("POST", "/predict", body=json.dumps({"inputs": [ROW]}),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 200 and len(json.loads(data)["outputs"]) == 1:
                    ok += 1
                    break
            except (OSError, http.client.HTTPException, ValueError):
                pass
            finally:
                conn.close()
            time.sleep(0.05)
        latencies.append(time.perf_counter() - t0)
        time.sleep(0.01)
    return ok, total, latencies


def slowloris(port: int, n: int, stop: threading.Event) -> dict:
    socks, refused = [], 0
    for k in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if k % 2 == 0:
                s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        except OSError:
            refused += 1
    closed = 0
    while not stop.is_set():
        for s in socks[::2]:
            try:
                s.send(b"X")
            except OSError:
                pass
        time.sleep(0.1)
    for s in socks:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return {"opened": len(socks), "refused": refused, "closed_by_server": closed}


def upload_body(mb: float) -> bytes:
    """One plain body of ``mb`` MB (shared by all uploaders, so the clients stay small)."""
    size = int(mb * 1e6)
    head = b'{"inputs": [[' + b"0.25," * 9 + b"0.25]]"
    return head + b" " * (size - len(head) - 1) + b"}"


def upload(port: int, body: bytes, results: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        for k in range(0, len(body), 1 << 18):
            conn.send(body[k:k + (1 << 18)])
            time.sleep(0.05)
        resp = conn.getresponse()
        resp.read()
        results.append(resp.status)
    except (OSError, http.client.HTTPException):
        results.append("closed")
    finally:
        conn.close()


def _server_limits() -> None:
    """The server gets the common 1024 open-file limit (the clients keep theirs)."""
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def main() -> int:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slow", type=int, default=1100, help="slow + idle connections in phase A")
    p.add_argument("--uploads", type=int, default=40, help="concurrent large uploads in phase B")
    p.add_argument("--upload-mb", type=float, default=15.0)
    p.add_argument("--seconds", type=float, default=10.0, help="good-request time per phase")
    args = p.parse_args(argv)
    fusednn.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(64, activation="relu", input_shape=(10,)), keras.layers.Dense(1)])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        model.save(path)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # stderr to a file, not a pipe: asyncio logs every failed accept() while the open-file
        # limit is reached, and a full pipe nobody reads would block the server
        log = open(os.path.join(tmp, "server.log"), "w+")
        server = subprocess.Popen([sys.executable, "-m", "fusednn", "serve", path, "--port", str(port),
                                   "--log-level", "critical", *extra], stdout=subprocess.DEVNULL,
                                  stderr=log, text=True, preexec_fn=_server_limits)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        print(log.read()[-3000:], file=sys.stderr)
                        return 1
                    time.sleep(0.1)
            rss = RSS(server.pid)
            base = rss.now()
            base_good = good_requests(port, 1.0)
            stop, info = threading.Event(), {}
            attacker = threading.Thread(target=lambda: info.update(slowloris(port, args.slow, stop)))
            attacker.start()
            time.sleep(1.0)
            a_ok, a_total, a_lat = good_requests(port, args.seconds)
            stop.set()
            attacker.join()
            peak_a = rss.peak
            results: list = []
            body = upload_body(args.upload_mb)
            uploaders = [threading.Thread(target=upload, args=(port, body, results))
                         for _ in range(args.uploads)]
            for t in uploaders:
                t.start()
            b_ok, b_total, b_lat = good_requests(port, args.seconds)
            for t in uploaders:
                t.join(120)
            peak = rss.stop()
            alive = server.poll() is None
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:  # uvicorn's graceful shutdown waits for open requests
                server.kill()
                server.wait(10)
    mib = 2**20
    print(f"# fusednn serve {' '.join(extra) or '(default limits)'}; {os.cpu_count()} cores; clients in one "
          "process on the same machine")
    print("| phase | attack | good requests ok/sent | success | good p50 ms | good max ms | server peak RSS MiB "
          "(idle: %.0f) |" % (base / mib))
    print("|---|---|---|---|---|---|---|")
    print(f"| baseline | none | {base_good[0]}/{base_good[1]} | {base_good[0] / max(base_good[1], 1):.1%} | "
          f"{1e3 * np.median(base_good[2]):.1f} | {1e3 * max(base_good[2]):.1f} | {base / mib:.0f} |")
    print(f"| A | {info.get('opened')} slow/idle connections ({info.get('refused')} refused at connect, "
          f"{info.get('closed_by_server')} closed by the server) | {a_ok}/{a_total} | {a_ok / max(a_total, 1):.1%} | "
          f"{1e3 * np.median(a_lat):.1f} | {1e3 * max(a_lat):.1f} | {peak_a / mib:.0f} |")
    statuses = {str(k): results.count(k) for k in sorted(set(results), key=str)}
    print(f"| B | {args.uploads} x {args.upload_mb:g} MB uploads (answers: {statuses}) | {b_ok}/{b_total} | "
          f"{b_ok / max(b_total, 1):.1%} | {1e3 * np.median(b_lat):.1f} | {1e3 * max(b_lat):.1f} | "
          f"{peak / mib:.0f} |")
    print(f"# server alive after the run: {alive}")
    print("# command: python benchmarks/serve_attack.py " + " ".join(sys.argv[1:]))
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
