"""An HTTP prediction server for a saved model (``fusednn serve MODEL``).

Built on Starlette (ASGI) and uvicorn; install with ``pip install "fusednn[serve]"``.

- ``POST /predict`` with ``{"inputs": [[x11, x12, ...], [x21, ...], ...]}`` (one row
  per sample; a flat list ``[x1, x2, ...]`` is one sample) answers
  ``{"outputs": [[...], ...]}``: exactly the float32 values ``model.predict(inputs)``
  gives, plus ``"labels"`` when the model file names its classes (models trained
  by ``fusednn train`` for classification).
- ``GET /health``: ``{"status": "ok"}`` with request counts and the time spent in
  the model and waiting for it.
- ``GET /metadata``: input and output shapes, backend, model name, fusednn
  version, the layers, the limits and the model's saved metadata.

Every bad request gets a 4xx JSON ``{"error": message}`` and the server goes on
serving: malformed JSON (400), a body over ``max_body`` bytes (413, refused from
its Content-Length before it is read, or while a chunked body streams in),
more than ``max_batch`` rows (413), and inputs that are not a list of rows of
the model's feature count, hold non-numbers, or non-finite values (422) --
JSON's ``NaN``/``Infinity`` tokens and numbers beyond float32's range such as
``1e39`` included. A body of plain numeric rows (``{"inputs": [[1, 2.5e-3, ...], ...]}``,
what every client library writes) is parsed straight into float32 without Python
objects per number: its peak memory is at most about 4x the body's size (3x plus
the float32 array); other JSON up to ``FALLBACK_JSON_BYTES`` (64 KiB) goes through
``json.loads``, and larger bodies that are not plain numeric rows get 422. All
bodies held at once share ``max_inflight_body`` bytes (503 beyond it), and the
connection limits of :mod:`fusednn.serve_limits` shed slow and idle clients.
Parsing and prediction run in a worker thread, so the event
loop keeps answering ``/health`` while a large batch computes; model calls
are serialised by a lock, because a model reuses its per-batch-size buffers.
"""
from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import numpy as np

from ._version import __version__

DEFAULT_MAX_BATCH = 10_000
DEFAULT_MAX_BODY = 16 << 20
DEFAULT_MAX_INFLIGHT_BODY = 64 << 20
#: bodies up to this size that are not plain numeric rows are parsed by json.loads
#: (whose peak is up to ~11x the body); larger ones must be plain numeric rows
FALLBACK_JSON_BYTES = 64 << 10
#: bodies up to this size do not count against max_inflight_body, so that large
#: uploads holding it cannot starve ordinary requests; they are bounded by the
#: connection limit instead (max_connections x SMALL_BODY)
SMALL_BODY = 64 << 10
_F32_MAX = float(np.finfo(np.float32).max)


def _require() -> tuple[Any, Any]:
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise ImportError('serving needs Starlette and uvicorn: pip install "fusednn[serve]"') from None
    return starlette, uvicorn


def parse_size(text: str) -> int:
    """Bytes from a size such as '16MiB', '512KiB', '1MB', '2GiB' or '1048576'."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*", str(text), re.I)
    if not m:
        raise ValueError(f"not a size: {text!r} (examples: 1048576, 512KiB, 16MiB, 1MB)")
    unit = (m.group(2) or "b").lower().rstrip("b") or "b"
    scale = {"b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}[unit]
    size = int(float(m.group(1)) * scale)
    if size < 1:
        raise ValueError(f"size must be at least 1 byte, got {text!r}")
    return size


class BadRequest(Exception):
    """A client error: the HTTP status and the message sent back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _NonFiniteToken(ValueError):
    pass


def _reject_constant(token: str) -> None:
    raise _NonFiniteToken(token)


def _bad_cell(rows: list[list[Any]]) -> tuple[int, int, Any]:
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if type(v) is not float and type(v) is not int:
                return i, j, v
    raise AssertionError("no bad cell")


_WS = rb"[ \t\n\r]*+"
_NUMBER = rb"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"
_ROW = rb"\[" + _WS + _NUMBER + rb"(?:" + _WS + rb"," + _WS + _NUMBER + rb")*+" + _WS + rb"\]"
# possessive quantifiers: one linear pass, no backtracking (0.4 s for 20 MB here)
_PLAIN_BODY = re.compile(_WS + rb"\{" + _WS + rb'"inputs"' + _WS + rb":" + _WS + rb"(\[" + _WS + _ROW + rb"(?:" + _WS
                         + rb"," + _WS + _ROW + rb")*+" + _WS + rb"\]|" + _ROW + rb")" + _WS + rb"\}" + _WS)
_SEPARATORS = bytes.maketrans(b"[],", b"   ")


def _check_range(x: np.ndarray) -> np.ndarray:
    if x.size and not (np.isfinite(x).all() and np.abs(x).max() <= _F32_MAX):
        raise BadRequest(422, "inputs must be finite float32 numbers: NaN, infinite values and magnitudes "
                              f"above {_F32_MAX:.4g} (float32's largest) are not allowed")
    return x


def _parse_plain(body: bytes, input_dim: int, max_batch: int) -> np.ndarray | None:
    """The inputs of a body of plain numeric rows, parsed with at most ~4x the body's
    size in memory (the body, one translated copy, the float32 array); None when the
    body is not of that form."""
    match = _PLAIN_BODY.fullmatch(body)
    if match is None:
        return None
    start, end = match.span(1)
    rows = body.count(b"[", start, end) - 1 or 1  # the outer bracket, or a flat list: one sample
    if rows > max_batch:
        raise BadRequest(413, f"{rows} rows exceed the limit of {max_batch} per request (--max-batch)")
    row_start = body.index(b"[", start + 1) if rows > 1 or body.count(b"[", start, end) > 1 else start
    for i in range(rows):  # bounded by max_batch; counting commas copies nothing
        row_end = body.index(b"]", row_start)
        n = body.count(b",", row_start, row_end) + 1
        if n != input_dim:
            raise BadRequest(422, f"row {i} has {n} values but the model takes {input_dim} features")
        row_start = body.find(b"[", row_end)
    text = body[start:end].translate(_SEPARATORS)
    # NumPy parses each number as a C double and rounds it to float32: the same value
    # as float32(float(token)), so the same as the json.loads path below.
    with np.errstate(over="ignore"):
        x = np.fromstring(text, dtype=np.float32, sep=" ", count=rows * input_dim)
        if x.size and np.isfinite(x).all() and np.abs(x).max() == _F32_MAX:
            # a value may lie just above float32's largest and have rounded down to it: the
            # json.loads path rejects those, so check the doubles (rare, so the 2x cost is too)
            x = np.fromstring(text, dtype=np.float64, sep=" ", count=rows * input_dim)
    del text
    if x.size != rows * input_dim:
        raise BadRequest(400, "the body's numbers could not all be read")
    return _check_range(x.reshape(rows, input_dim)).astype(np.float32, copy=False)


def parse_inputs(body: bytes, input_dim: int, max_batch: int) -> np.ndarray:
    """The float32 (rows, input_dim) array of a /predict body; raises BadRequest
    saying what is wrong with it."""
    plain = _parse_plain(body, input_dim, max_batch)
    if plain is not None:
        return plain
    if len(body) > FALLBACK_JSON_BYTES:
        raise BadRequest(422, f"a body over {FALLBACK_JSON_BYTES} bytes must be plain numeric rows: "
                              '{"inputs": [[number, ...], ...]} (no NaN/Infinity, strings or other keys)')
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except _NonFiniteToken as e:
        raise BadRequest(422, f"inputs must be finite numbers; JSON's {e} is not allowed") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise BadRequest(422, 'the body must be a JSON object with an "inputs" key: {"inputs": [[...], ...]}')
    rows = doc["inputs"]
    if not isinstance(rows, list) or not rows:
        raise BadRequest(422, '"inputs" must be a non-empty list of rows (lists of numbers)')
    if not isinstance(rows[0], list):
        rows = [rows]  # a flat list of numbers is one sample
    if len(rows) > max_batch:
        raise BadRequest(413, f"{len(rows)} rows exceed the limit of {max_batch} per request (--max-batch)")
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise BadRequest(422, f"row {i} is not a list of numbers (rows must all be lists)")
        if len(row) != input_dim:
            raise BadRequest(422, f"row {i} has {len(row)} values but the model takes {input_dim} features")
    # bool is not a number here (type(True) is bool), nor are numeric strings
    if not all(type(v) is float or type(v) is int for row in rows for v in row):
        i, j, v = _bad_cell(rows)
        raise BadRequest(422, f"row {i}, column {j}: {json.dumps(v)[:40]} is not a number")
    try:
        x = np.array(rows, dtype=np.float64)
    except OverflowError:  # integers beyond float64's range
        x = None
    if x is None or not (np.isfinite(x).all() and np.abs(x).max() <= _F32_MAX):
        raise BadRequest(422, "inputs must be finite float32 numbers: NaN, infinite values and magnitudes "
                              f"above {_F32_MAX:.4g} (float32's largest) are not allowed")
    return x.astype(np.float32)


class Predictor:
    """A model behind a lock, with the request statistics /health reports."""

    def __init__(self, model: Any, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if not model.built:
            raise ValueError("the model is not built (no input shape), so it cannot serve predictions")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model, self.max_batch = model, int(max_batch)
        self.input_dim, self.output_dim = model.input_shape[1], model.output_shape[1]
        classes = model.metadata.get("classes") if model.metadata.get("task") == "classification" else None
        self.classes = classes if isinstance(classes, list) and len(classes) == max(2, self.output_dim) else None
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests = self.rows = 0
        self.model_seconds = self.wait_seconds = 0.0

    def predict(self, body: bytes) -> dict[str, Any]:
        """The /predict answer for a request body (runs in a worker thread)."""
        x = parse_inputs(body, self.input_dim, self.max_batch)
        t0 = time.perf_counter()
        with self._lock:
            t1 = time.perf_counter()
            out = self.model.predict(x, verbose=0)  # predict's batching, so its exact numbers
            t2 = time.perf_counter()
            self.requests, self.rows = self.requests + 1, self.rows + len(x)
            self.wait_seconds += t1 - t0
            self.model_seconds += t2 - t1
        if not np.isfinite(out).all():
            raise BadRequest(422, "the model's outputs for these inputs are not finite (inputs too large?)")
        answer: dict[str, Any] = {"outputs": out.tolist()}
        if self.classes is not None:
            index = (out[:, 0] >= 0.5).astype(int) if self.output_dim == 1 else out.argmax(axis=1)
            answer["labels"] = [self.classes[k] for k in index]
        return answer

    def health(self) -> dict[str, Any]:
        """Liveness and counters."""
        return {"status": "ok", "uptime_s": round(time.time() - self.started, 3), "requests": self.requests,
                "rows": self.rows, "model_seconds": round(self.model_seconds, 6),
                "lock_wait_seconds": round(self.wait_seconds, 6)}

    def metadata(self, max_body: int, limits: dict[str, Any] | None = None) -> dict[str, Any]:
        """What /metadata says about the model and the limits."""
        model = self.model
        layers, dim = [], model.input_shape[1]
        for layer in model.layers:
            dim = layer.output_dim(dim)
            layers.append({"name": layer.name, "class_name": type(layer).__name__, "output_shape": [None, dim],
                           "params": layer.count_params(), "config": layer.get_config()})
        return {"model": model.name, "fusednn_version": __version__, "backend": model.backend.name,
                "input_shape": [None, self.input_dim], "output_shape": [None, self.output_dim],
                "params": model.count_params(), "layers": layers,
                "limits": {"max_batch": self.max_batch, "max_body": max_body, **(limits or {})},
                "metadata": model.metadata}


def create_app(model: Any, max_batch: int = DEFAULT_MAX_BATCH, max_body: int = DEFAULT_MAX_BODY,
               max_inflight_body: int = DEFAULT_MAX_INFLIGHT_BODY) -> Any:
    """The Starlette application serving ``model`` (see the module docstring);
    ``max_inflight_body`` bounds the bytes of all request bodies held at once (503
    beyond it)."""
    _require()
    from .serve_limits import BodyBudget

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if max_body < 1:
        raise ValueError(f"max_body must be >= 1 byte, got {max_body}")
    predictor = Predictor(model, max_batch)
    budget = BodyBudget(max_inflight_body)
    busy = "the server holds its limit of request bodies (--max-inflight-body); retry"

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status,
                            headers={"Retry-After": "1"} if status == 503 else None)

    async def read_body(request: Request, held: list[int]) -> bytes:
        """The body, its bytes reserved in ``budget`` (recorded in ``held`` for the caller
        to give back) before they are kept: from Content-Length up front, else per chunk."""
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise BadRequest(400, f"invalid Content-Length {length!r}")
            if int(length) > max_body:
                raise BadRequest(413, f"the body of {int(length)} bytes exceeds the limit of {max_body} (--max-body)")
            if int(length) > SMALL_BODY:
                if not budget.take(int(length)):
                    raise BadRequest(503, busy)
                held[0] = int(length)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise BadRequest(413, f"the body exceeds the limit of {max_body} bytes (--max-body)")
            if size > max(held[0], SMALL_BODY):
                if not budget.take(size - held[0]):
                    raise BadRequest(503, busy)
                held[0] = size
            chunks.append(chunk)
        return b"".join(chunks)

    async def predict(request: Request) -> Response:
        held = [0]
        try:
            body = await read_body(request, held)
            return JSONResponse(await run_in_threadpool(predictor.predict, body))
        except BadRequest as e:
            return error(e.status, e.message)
        except ClientDisconnect:
            return Response(status_code=400)
        finally:  # the body and its parse are gone once the answer is built
            budget.give(held[0])

    async def health(request: Request) -> Response:
        return JSONResponse(predictor.health())

    async def metadata(request: Request) -> Response:
        return JSONResponse(predictor.metadata(max_body, {"max_inflight_body": max_inflight_body}))

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error(exc.status_code, exc.detail)

    async def server_error(request: Request, exc: Exception) -> Response:
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health, methods=["GET"]),
                            Route("/metadata", metadata, methods=["GET"])],
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.predictor = predictor
    app.state.body_budget = budget
    return app


def uvicorn_config(app: Any, header_timeout: float | None = None, body_timeout: float | None = None,
                   keep_alive: int | None = None, max_connections: int | None = None, **kwargs: Any) -> Any:
    """A ``uvicorn.Config`` for ``app`` with the limits of :mod:`fusednn.serve_limits`
    (None: their defaults); ``kwargs`` go to uvicorn (host, port, log_level, ...)."""
    _, uvicorn = _require()
    from . import serve_limits as sl

    protocol = sl.guarded_protocol(sl.DEFAULT_HEADER_TIMEOUT if header_timeout is None else header_timeout,
                                   sl.DEFAULT_BODY_TIMEOUT if body_timeout is None else body_timeout,
                                   sl.DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections)
    return uvicorn.Config(app, http=protocol, timeout_keep_alive=sl.DEFAULT_KEEP_ALIVE if keep_alive is None
                          else keep_alive, **kwargs)


def _ensure_open_files(max_connections: int) -> None:
    """Raise the soft open-file limit to fit ``max_connections`` plus a margin (up to the
    hard limit), so that the connection cap, not accept() failing, is what sheds load;
    warn when the hard limit is too low."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + 64
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < want:
        print(f"fusednn serve: warning: the open-file limit {new} is below --max-connections {max_connections} + 64; "
              "lower --max-connections or raise the limit (ulimit -n)", flush=True)


def serve(model_path: str, host: str = "127.0.0.1", port: int = 8000, max_batch: int = DEFAULT_MAX_BATCH,
          max_body: int = DEFAULT_MAX_BODY, log_level: str = "info", access_log: bool = False,
          max_inflight_body: int = DEFAULT_MAX_INFLIGHT_BODY, header_timeout: float | None = None,
          body_timeout: float | None = None, keep_alive: int | None = None,
          max_connections: int | None = None) -> None:
    """Load the model file and serve it with uvicorn until interrupted (the limits:
    see :mod:`fusednn.serve_limits` and :func:`create_app`)."""
    from .saving import load_model

    _, uvicorn = _require()
    model = load_model(model_path, compile=False)
    app = create_app(model, max_batch=max_batch, max_body=max_body, max_inflight_body=max_inflight_body)
    from .serve_limits import DEFAULT_MAX_CONNECTIONS

    _ensure_open_files(DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections)
    print(f"serving {model_path} ({model.name}: {model.input_shape[1]} features -> {model.output_shape[1]} outputs, "
          f"{model.backend.name} backend) on http://{host}:{port}", flush=True)
    config = uvicorn_config(app, header_timeout, body_timeout, keep_alive, max_connections, host=host, port=port,
                            log_level=log_level, access_log=access_log)
    uvicorn.Server(config).run()
