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
``1e39`` included. Parsing and prediction run in a worker thread, so the event
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


def parse_inputs(body: bytes, input_dim: int, max_batch: int) -> np.ndarray:
    """The float32 (rows, input_dim) array of a /predict body; raises BadRequest
    saying what is wrong with it."""
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

    def metadata(self, max_body: int) -> dict[str, Any]:
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
                "limits": {"max_batch": self.max_batch, "max_body": max_body},
                "metadata": model.metadata}


def create_app(model: Any, max_batch: int = DEFAULT_MAX_BATCH, max_body: int = DEFAULT_MAX_BODY) -> Any:
    """The Starlette application serving ``model`` (see the module docstring)."""
    _require()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if max_body < 1:
        raise ValueError(f"max_body must be >= 1 byte, got {max_body}")
    predictor = Predictor(model, max_batch)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise BadRequest(400, f"invalid Content-Length {length!r}")
            if int(length) > max_body:
                raise BadRequest(413, f"the body of {int(length)} bytes exceeds the limit of {max_body} (--max-body)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise BadRequest(413, f"the body exceeds the limit of {max_body} bytes (--max-body)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def predict(request: Request) -> Response:
        try:
            body = await read_body(request)
            return JSONResponse(await run_in_threadpool(predictor.predict, body))
        except BadRequest as e:
            return error(e.status, e.message)
        except ClientDisconnect:
            return Response(status_code=400)

    async def health(request: Request) -> Response:
        return JSONResponse(predictor.health())

    async def metadata(request: Request) -> Response:
        return JSONResponse(predictor.metadata(max_body))

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error(exc.status_code, exc.detail)

    async def server_error(request: Request, exc: Exception) -> Response:
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health, methods=["GET"]),
                            Route("/metadata", metadata, methods=["GET"])],
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.predictor = predictor
    return app


def serve(model_path: str, host: str = "127.0.0.1", port: int = 8000, max_batch: int = DEFAULT_MAX_BATCH,
          max_body: int = DEFAULT_MAX_BODY, log_level: str = "info", access_log: bool = False) -> None:
    """Load the model file and serve it with uvicorn until interrupted."""
    from .saving import load_model

    _, uvicorn = _require()
    model = load_model(model_path, compile=False)
    app = create_app(model, max_batch=max_batch, max_body=max_body)
    print(f"serving {model_path} ({model.name}: {model.input_shape[1]} features -> {model.output_shape[1]} outputs, "
          f"{model.backend.name} backend) on http://{host}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
