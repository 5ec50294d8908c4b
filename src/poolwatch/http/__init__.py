"""The poolwatch service: control API, metrics, health checks and web console over HTTP.

``create_app(manager, ...)`` returns a Starlette application, to serve on its own
(``poolwatch serve``) or to mount inside another ASGI service.
"""

from __future__ import annotations

from poolwatch.http.app import create_app
from poolwatch.http.auth import AccessPolicy
from poolwatch.http.lifecycle import Lifecycle

__all__ = ["AccessPolicy", "Lifecycle", "create_app"]
