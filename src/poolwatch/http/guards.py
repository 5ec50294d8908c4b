"""Rules every response and request body follows, as one ASGI middleware.

- Security headers: every response says ``X-Content-Type-Options: nosniff``; every
  page (``text/html``: the console) may not be framed by another site
  (``X-Frame-Options: DENY``, CSP ``frame-ancestors 'none'``) and may load scripts,
  styles and data only from this server (the console uses no inline code). JSON and
  scripts get no CSP: a policy applies to documents only.
- A request body must arrive within ``body_timeout`` seconds of the handler asking for
  it, or the answer is a JSON 408 and the connection closes.
- A request still running when the server cuts it off at shutdown is answered with a
  JSON 503 instead of a plain-text 500 and a ``CancelledError`` traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poolwatch.http.errors import ApiError

__all__ = ["CONTENT_SECURITY_POLICY", "PAGE_HEADERS", "SECURITY_HEADERS", "RequestGuard"]

logger = logging.getLogger("poolwatch.http")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: On every response.
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"),)
#: On every page (``text/html``) as well.
PAGE_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"same-origin"),
)
_CUT_OFF = json.dumps(
    {
        "error": {
            "code": "shutting_down",
            "message": "the server stopped while handling this request; its outcome is "
            "unknown here: check on another instance or after a restart",
        }
    }
).encode()


class RequestGuard:
    """See the module docstring. ``body_timeout`` None: no limit."""

    def __init__(self, app: ASGIApp, body_timeout: float | None = None) -> None:
        self.app = app
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", ()), *SECURITY_HEADERS]
                if any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                    headers.extend(PAGE_HEADERS)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, self._receive(receive), guarded_send)
        except asyncio.CancelledError:
            logger.info(
                "%s %s was still running when the server stopped; answered 503",
                scope.get("method"),
                scope.get("path"),
            )
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_CUT_OFF)).encode()),
                            (b"connection", b"close"),
                            (b"retry-after", b"1"),
                            *SECURITY_HEADERS,
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _CUT_OFF})

    def _receive(self, receive: Receive) -> Receive:
        timeout = self.body_timeout
        if timeout is None:
            return receive
        deadline: float | None = None
        complete = False

        async def receive_with_deadline() -> Message:
            nonlocal deadline, complete
            if complete:  # the body is in: later calls only listen for a disconnect
                return await receive()
            if deadline is None:
                deadline = time.monotonic() + timeout
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise ApiError(
                    408,
                    "body_timeout",
                    f"the request body did not arrive within {timeout:g} seconds; send it "
                    "at once, or raise [server] body_timeout",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        return receive_with_deadline
