"""The poolwatch service: control API, metrics, health checks and web console over HTTP.

``create_app(manager, ...)`` returns a Starlette application, to serve on its own
(``poolwatch serve``) or to mount inside another ASGI service; ``start_service(...)``
serves it on a side port from a thread of any process (WSGI apps, task workers).
"""

from __future__ import annotations

from poolwatch.http.app import create_app
from poolwatch.http.auth import AccessPolicy
from poolwatch.http.lifecycle import Lifecycle
from poolwatch.http.server import ServeError
from poolwatch.http.side import ServiceHandle, start_service

__all__ = [
    "AccessPolicy",
    "Lifecycle",
    "ServeError",
    "ServiceHandle",
    "create_app",
    "start_service",
]
