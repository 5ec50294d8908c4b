"""``create_app``: the Starlette application around one :class:`PoolManager`."""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from poolwatch._version import __version__
from poolwatch.http.api import ControlApi
from poolwatch.http.auth import TOKEN_RULE, AccessPolicy, token_problem
from poolwatch.http.errors import CatchAllMiddleware, error_response, exception_handlers
from poolwatch.http.guards import RequestGuard
from poolwatch.http.lifecycle import Lifecycle
from poolwatch.http.openapi import openapi_document
from poolwatch.http.otel import ServerSpanMiddleware
from poolwatch.http.recent import RecentApi
from poolwatch.http.serialize import JSONResponse
from poolwatch.metrics import render_metrics
from poolwatch.multiproc import ProcessPublisher, publisher_for
from poolwatch.samples import SampleHistory, served_history

if TYPE_CHECKING:
    from poolwatch.manager import PoolManager

__all__ = ["DEFAULT_MAX_BODY_BYTES", "AppOptions", "build_app", "create_app", "package_version"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024


def package_version() -> str:
    return __version__


def console_directory() -> Path:
    """Where the web console's files are (``poolwatch/console`` inside the package)."""
    return Path(str(importlib.resources.files("poolwatch") / "console"))


def _check_arguments(token: Any, max_body_bytes: Any, body_timeout: Any) -> None:
    """ValueError for ``create_app`` arguments it cannot use."""
    if token is not None:
        if not isinstance(token, str):
            raise ValueError(f"token must be a string or None, got {type(token).__name__}")
        problem = token_problem(token)
        if problem is not None:
            raise ValueError(f"token {problem}: {TOKEN_RULE}")
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 1
    ):
        raise ValueError(f"max_body_bytes must be an integer >= 1, got {max_body_bytes!r}")
    if body_timeout is not None and (
        isinstance(body_timeout, bool)
        or not isinstance(body_timeout, int | float)
        or not body_timeout > 0
    ):
        raise ValueError(
            f"body_timeout must be a number of seconds > 0 or None, got {body_timeout!r}"
        )


class AppOptions(TypedDict, total=False):
    """The options of :func:`create_app` besides its access rules (described there)."""

    max_body_bytes: int
    lifecycle: Lifecycle | None
    body_timeout: float | None
    trace_url: str | None
    grafana_url: str | None


def create_app(
    manager: PoolManager,
    *,
    token: str | None = None,
    read_only: bool = False,
    bind_host: str | None = None,
    **options: Unpack[AppOptions],
) -> Starlette:
    """The control API, metrics, health checks and web console of ``manager``.

    The app can be served on its own or mounted inside another ASGI service (all its
    links are relative). Mutating requests follow :class:`~poolwatch.http.auth.AccessPolicy`:

    - ``token``: require ``Authorization: Bearer <token>`` for POST, PATCH and DELETE. It
      must be an RFC 6750 token (ASCII letters, digits, ``-._~+/``, optionally ending in
      ``=``), or ``ValueError``: anything else no client could send;
    - ``read_only``: refuse every mutation with 403;
    - ``bind_host``: the address the server listens on. Without a token, mutations are
      allowed only when it is a loopback address, so an app mounted elsewhere with
      neither ``token`` nor ``bind_host`` refuses them (403) rather than guess; and only
      from the same origin, addressed by a loopback name (see ``AccessPolicy``).

    ``trace_url`` (a URL with ``{trace_id}``) makes the console link trace ids to a
    trace viewer; ``grafana_url`` (Grafana's base URL, or a URL with ``{pool}``) links
    each pool to its dashboard. While the app runs (its lifespan) one thread per
    manager samples the pools every second for ``/api/samples`` and ``/api/latency``.

    ``max_body_bytes`` bounds request bodies (413 past it; 64 KiB unless given).
    ``lifecycle`` is shared with whoever runs the server: after
    ``lifecycle.begin_shutdown()`` ``/readyz`` answers 503 and new work is refused; after
    ``lifecycle.close_requests()`` requests still waiting for a pool to drain (or a
    ``caller_runs`` task) are answered with 503.
    ``body_timeout`` (seconds) bounds how long a request body may take to arrive (408
    past it; None: no limit). Pages (the console) carry headers that forbid framing by
    other sites and a Content-Security-Policy fitting the console.
    """
    policy = AccessPolicy(token=token, read_only=read_only, bind_host=bind_host)
    return build_app(manager, policy, **options)


def build_app(
    manager: PoolManager,
    policy: AccessPolicy,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    lifecycle: Lifecycle | None = None,
    body_timeout: float | None = None,
    trace_url: str | None = None,
    grafana_url: str | None = None,
) -> Starlette:
    """:func:`create_app` with its access rules given whole, for servers that word their
    errors in their own settings' names (``poolwatch serve``, ``poolwatch run``)."""
    _check_arguments(policy.token, max_body_bytes, body_timeout)
    publisher = publisher_for(manager)  # None unless PROMETHEUS_MULTIPROC_DIR is set
    lifecycle = lifecycle if lifecycle is not None else Lifecycle()
    version = package_version()
    api = ControlApi(
        manager,
        policy=policy,
        lifecycle=lifecycle,
        max_body_bytes=max_body_bytes,
        version=version,
        publisher=publisher,
    )
    history = served_history(manager)
    recent = RecentApi(manager, history, trace_url=trace_url, grafana_url=grafana_url)
    console = console_directory()
    pages = _page_routes(manager, lifecycle, openapi_document(version), console, publisher)
    routes, templates = _routes(api.routes() + recent.routes(), pages, console)
    app = Starlette(
        routes=routes,
        middleware=_middleware(manager, templates, body_timeout),
        exception_handlers=dict(exception_handlers),
        lifespan=_lifespan(history, publisher),
    )
    app.state.poolwatch_lifecycle = lifecycle
    return app


def _middleware(
    manager: PoolManager, templates: dict[Any, str], body_timeout: float | None
) -> list[Middleware]:
    """Outermost first: the request guard, the catch-all error handler, the server span."""
    return [
        Middleware(RequestGuard, body_timeout=body_timeout),
        Middleware(CatchAllMiddleware),
        Middleware(
            ServerSpanMiddleware,
            tracer_provider=manager.tracer_provider,
            route_templates=templates,
        ),
    ]


def _lifespan(
    history: SampleHistory, publisher: ProcessPublisher | None
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Hold ``history`` (its sampler thread) while the app runs; in a multi-process
    server, publish this process's numbers meanwhile, and as exited at the end."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if publisher is not None:
            publisher.acquire()
        history.acquire()
        try:
            yield
        finally:
            await run_in_threadpool(history.release)
            if publisher is not None:  # the last requests are done: say so (see multiproc.py)
                await run_in_threadpool(publisher.release)

    return lifespan


def _routes(
    api_routes: list[Route], pages: list[Route], console: Path
) -> tuple[list[BaseRoute], dict[Any, str]]:
    """All routes, and the path template of each endpoint (for span names)."""
    static = StaticFiles(directory=console, check_dir=False)
    # Routes are tried in order and no two overlap: the busiest come first.
    routes: list[BaseRoute] = [
        Mount("/api", routes=list(api_routes)),
        *pages,
        Mount("/console", app=static, name="console"),
    ]
    templates: dict[Any, str] = {
        route.endpoint: route.path for route in routes if isinstance(route, Route)
    }
    templates.update({route.endpoint: "/api" + route.path for route in api_routes})
    templates[static] = "/console/{path}"
    return routes, templates


def _page_routes(
    manager: PoolManager,
    lifecycle: Lifecycle,
    document: dict[str, Any],
    console: Path,
    publisher: ProcessPublisher | None,
) -> list[Route]:
    """The routes outside ``/api``: metrics, health checks, the console page, OpenAPI."""

    async def index(request: Request) -> Response:
        page = console / "index.html"
        if not page.is_file():
            return error_response(
                404, "console_missing", "the web console is not installed with this package"
            )
        return FileResponse(page, media_type="text/html")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if lifecycle.shutting_down:
            return error_response(
                503,
                "shutting_down",
                "the server is shutting down; send traffic elsewhere",
            )
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        accept = request.headers.get("accept", "")
        if publisher is None:
            body, content_type = await run_in_threadpool(render_metrics, manager, accept)
        else:  # the whole server: every process's numbers
            body, content_type = await run_in_threadpool(publisher.render_metrics, accept)
        return Response(body, headers={"Content-Type": content_type})

    async def openapi(request: Request) -> Response:
        root = request.scope.get("root_path", "") or "/"
        return JSONResponse({**document, "servers": [{"url": root}]})

    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/", index, methods=["GET"], name="console_index"),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
