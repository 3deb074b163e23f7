"""The limits that keep ``fusednn serve`` answering under slow, idle and greedy clients.

uvicorn's own settings do not suffice: its keep-alive timer is reset by every byte
received, a connection that never completes its request head has no timer at all,
and ``limit_concurrency`` counts those connections too, so 1,000 slowloris clients
turn every good request into a 503. :class:`GuardedH11Protocol` (uvicorn's h11
protocol with three additions) fixes that:

- **header timeout**: a connection must deliver a complete request head within
  ``header_timeout`` seconds of connecting (or of its previous response), however
  it trickles bytes; otherwise it gets ``408`` and is closed;
- **body timeout**: once the head is in, the whole body must arrive within
  ``body_timeout`` seconds; otherwise the connection is closed;
- **connection cap**: at most ``max_connections`` open connections. A new
  connection beyond the cap evicts the oldest connection that is only *waiting*
  for a request head (idle keep-alive or slowloris); only when every connection is
  busy with a request is the new one answered ``503`` and closed. So good clients,
  which send their head at once, keep being served while slow ones come and go.

Request heads are bounded by h11 (16 KiB) and bodies by the app's ``max_body`` and
:class:`BodyBudget`, which bounds the bytes of all request bodies held at once.
"""
from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_KEEP_ALIVE = 5
DEFAULT_MAX_CONNECTIONS = 512

_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_BUSY = b'{"error": "too many connections busy with requests (--max-connections); retry"}'
_503 = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"retry-after: 1\r\nconnection: close\r\n\r\n%s" % (len(_BUSY), _BUSY))


class BodyBudget:
    """Bytes of request bodies held at once, across all requests; used on the event
    loop's thread only, so it needs no lock."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the in-flight body limit must be >= 1 byte, got {limit}")
        self.limit, self.used, self.peak = int(limit), 0, 0

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; False (nothing reserved) when that would pass the limit."""
        if self.used + n > self.limit:
            return False
        self.used += n
        self.peak = max(self.peak, self.used)
        return True

    def give(self, n: int) -> None:
        self.used -= n


def guarded_protocol(header_timeout: float = DEFAULT_HEADER_TIMEOUT, body_timeout: float = DEFAULT_BODY_TIMEOUT,
                     max_connections: int = DEFAULT_MAX_CONNECTIONS) -> type:
    """The uvicorn ``http`` protocol class enforcing these limits (pass it as
    ``uvicorn.Config(app, http=...)``)."""
    if header_timeout <= 0 or body_timeout <= 0:
        raise ValueError(f"timeouts must be > 0 seconds, got {header_timeout} and {body_timeout}")
    if max_connections < 1:
        raise ValueError(f"max_connections must be >= 1, got {max_connections}")

    class GuardedH11Protocol(H11Protocol):
        HEADER_TIMEOUT, BODY_TIMEOUT, MAX_CONNECTIONS = float(header_timeout), float(body_timeout), \
            int(max_connections)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline: asyncio.TimerHandle | None = None
            self._in_head = True
            self._waiting_since = self.loop.time()
            self._arm(self.HEADER_TIMEOUT, self._head_timed_out)
            if len(self.connections) > self.MAX_CONNECTIONS:
                idle = [c for c in self.connections if c is not self and c._waiting_for_head()]
                if idle:
                    min(idle, key=lambda c: c._waiting_since)._drop(None)
                else:
                    self._drop(_503)

        def _waiting_for_head(self) -> bool:
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

        def _arm(self, seconds: float, callback: Any) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(seconds, callback)

        def _drop(self, answer: bytes | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            if not self.transport.is_closing():
                if answer is not None and self.conn.our_state is h11.IDLE:
                    self.transport.write(answer)
                self.transport.close()
            self.connections.discard(self)

        def _head_timed_out(self) -> None:
            if self._waiting_for_head():
                self._drop(_408)

        def _body_timed_out(self) -> None:
            if self.conn.their_state is h11.SEND_BODY:
                self._drop(None)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_head and not self._waiting_for_head():
                # the head is in: from now on only the body's deadline counts (never re-armed by data)
                self._in_head = False
                if self._deadline is not None:
                    self._deadline.cancel()
                    self._deadline = None
                if self.conn.their_state is h11.SEND_BODY:
                    self._arm(self.BODY_TIMEOUT, self._body_timed_out)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._in_head = True
                self._waiting_since = self.loop.time()
                self._arm(self.HEADER_TIMEOUT, self._head_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

    return GuardedH11Protocol
