"""JSON errors: the ``{"error": {"code", "message"}}`` shape for every failure.

:class:`ApiError` is raised by handlers; the exception handlers here render it, and
turn Starlette's own 404/405 into the same shape. :class:`CatchAllMiddleware` is the
last resort: a bug becomes a logged, JSON 500, never a traceback in a response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poolwatch.http.serialize import JSONResponse

__all__ = ["ApiError", "CatchAllMiddleware", "error_response", "exception_handlers"]

logger = logging.getLogger("poolwatch.http")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer: HTTP ``status``, a short machine ``code`` and a human ``message``."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ApiError):  # pragma: no cover - registered for ApiError only
        raise exc
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # pragma: no cover
        raise exc
    status = exc.status_code
    code = _HTTP_CODES.get(status, "error")
    if status == 404:
        message = f"no such resource: {request.url.path}; see /openapi.json for the routes"
    elif status == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method {request.method} is not allowed on {request.url.path}" + (
            f"; use {allowed}" if allowed else ""
        )
    else:
        message = str(exc.detail)
    return error_response(status, code, message, exc.headers)


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    # Nobody is left to read an answer; this is routine, not an error of the server.
    logger.debug(
        "client %s disconnected before sending the whole body of %s %s",
        request.client.host if request.client else "unknown",
        request.method,
        request.url.path,
    )
    return error_response(
        400, "client_disconnected", "the client closed the connection before sending the body"
    )


exception_handlers = {
    ApiError: _api_error,
    HTTPException: _http_exception,
    ClientDisconnect: _client_disconnect,
}

_INTERNAL = json.dumps(
    {
        "error": {
            "code": "internal_error",
            "message": "the server hit an unexpected error; it has been logged",
        }
    }
).encode()


class CatchAllMiddleware:
    """Turn an unhandled exception into a logged JSON 500 (or a closed connection when
    the response had already started)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_INTERNAL)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _INTERNAL})
