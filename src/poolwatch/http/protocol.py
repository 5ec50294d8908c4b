"""uvicorn's HTTP/1.1 protocol with the limits a service exposed to slow or broken
clients needs, and JSON answers where uvicorn would answer in plain text.

- ``header_timeout``: a request's line and headers must arrive within this many seconds
  of its first byte (or of the connection opening); else a JSON 408 and the connection
  closes. A connection that sends nothing at all is closed silently.
- ``max_connections``: connections past this many are answered with a JSON 503 and
  closed at once, so slow clients cannot hold every socket and thread.
- A malformed request line or header gets the JSON error shape (400) where the server
  can still answer at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionLimits", "protocol_class"]

logger = logging.getLogger("poolwatch.http")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    max_connections: int = 1000


def _json_error(status: int, reason: str, code: str, message: str, *extra: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """See the module docstring; :func:`protocol_class` sets ``limits``."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._pending_bytes = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit = self.limits.max_connections
        if len(self.connections) > limit:
            logger.warning(
                "refused a connection: %d are open, the limit is %d", len(self.connections), limit
            )
            transport.write(
                _json_error(
                    503,
                    "Service Unavailable",
                    "too_many_connections",
                    f"the server has {limit} connections open, its limit; retry shortly",
                    "retry-after: 1",
                )
            )
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            if self._header_timer is None:
                self._arm()
            self._pending_bytes = True
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()
            self._pending_bytes = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._pending_bytes = False
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is still being written; keep-alive rules apply after it
        if self._pending_bytes:
            seconds = f"{self.limits.header_timeout:g}"
            self.transport.write(
                _json_error(
                    408,
                    "Request Timeout",
                    "header_timeout",
                    f"the request line and headers did not arrive within {seconds} seconds",
                )
            )
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "bad_request",
                    "message": "the request line or headers are not valid HTTP/1.1; "
                    "check what the client sends",
                }
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            output = self.conn.send(
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
            )
            output = (output or b"") + (self.conn.send(h11.Data(data=body)) or b"")
            output += self.conn.send(h11.EndOfMessage()) or b""
            self.transport.write(output)
        except h11.LocalProtocolError:  # a response was under way: all we can do is close
            pass
        self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type("PoolwatchH11Protocol", (GuardedH11Protocol,), {"limits": limits})
