"""The ``/api`` routes of the recent past and the console's links.

- ``GET /api/samples``: each pool's samples of the last fifteen minutes, one a second
  (see :mod:`poolwatch.samples`), so that the console's charts are full at once;
- ``GET /api/latency``: queue-wait and run-time quantiles per pool and per task name
  over a window, from the histogram buckets;
- ``GET /api/console``: the links the console builds (trace and Grafana URLs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from poolwatch.http.errors import ApiError
from poolwatch.http.fields import POOL_NAME_PATTERN, Field, FieldError, show
from poolwatch.http.schemas import parse_query
from poolwatch.http.serialize import JSONResponse, iso_time
from poolwatch.samples import SERIES, Latency, SampleHistory

if TYPE_CHECKING:
    from poolwatch.manager import PoolManager

__all__ = [
    "GRAFANA_DASHBOARD_PATH",
    "LATENCY_QUERY",
    "SAMPLES_QUERY",
    "RecentApi",
    "check_link",
]

#: Where the pool dashboard that poolwatch provisions lives under a Grafana base URL.
GRAFANA_DASHBOARD_PATH = "/d/poolwatch-pool/poolwatch-pool"
_MAX_SECONDS = 900


def _fields(*items: Field) -> dict[str, Field]:
    return {item.name: item for item in items}


SAMPLES_QUERY = _fields(
    Field("pool", "string", "Only this pool's samples.", pattern=POOL_NAME_PATTERN),
    Field(
        "seconds",
        "integer",
        "How far back, in seconds (default: all that is kept, 900).",
        minimum=1,
        maximum=_MAX_SECONDS,
        unit="seconds",
    ),
)
LATENCY_QUERY = _fields(
    Field("pool", "string", "Only this pool.", pattern=POOL_NAME_PATTERN),
    Field(
        "window",
        "integer",
        "The window, in seconds (default 300).",
        minimum=10,
        maximum=_MAX_SECONDS,
        unit="seconds",
        default=300,
    ),
)

_PLACEHOLDERS = {"trace_url": "{trace_id}", "grafana_url": "{pool}"}


def check_link(key: str, value: str | None) -> str | None:
    """A console link setting, checked: an http(s) URL; ``trace_url`` must hold
    ``{trace_id}``; ``grafana_url`` is a Grafana base URL or a template with ``{pool}``.
    Raises ``ValueError`` naming ``key`` and the fix."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a URL string, got {show(value)}")
    url = value.strip()
    if not url.lower().startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise ValueError(
            f"{key} must be an http:// or https:// URL such as "
            f'"http://jaeger:16686/trace/{{trace_id}}", got {show(value)}'
        )
    if key == "trace_url" and "{trace_id}" not in url:
        raise ValueError(
            f"{key} must contain {{trace_id}} where the trace id goes, e.g. "
            f'"http://jaeger:16686/trace/{{trace_id}}", got {show(value)}'
        )
    stray = url.replace(_PLACEHOLDERS.get(key, ""), "")
    if "{" in stray or "}" in stray:
        raise ValueError(
            f"{key} may only use the placeholder {_PLACEHOLDERS.get(key)}, got {show(value)}"
        )
    return url


def _latency_json(latency: Latency) -> dict[str, Any]:
    return {"count": latency.count, "p50": latency.p50, "p95": latency.p95, "p99": latency.p99}


class RecentApi:
    """The routes above for one manager and its sample history."""

    def __init__(
        self,
        manager: PoolManager,
        history: SampleHistory,
        *,
        trace_url: str | None = None,
        grafana_url: str | None = None,
    ) -> None:
        self.manager = manager
        self.history = history
        self.trace_url = check_link("trace_url", trace_url)
        self.grafana_url = check_link("grafana_url", grafana_url)

    def routes(self) -> list[Route]:
        return [
            Route("/samples", self.samples, methods=["GET"], name="samples"),
            Route("/latency", self.latency, methods=["GET"], name="latency"),
            Route("/console", self.console, methods=["GET"], name="console_settings"),
        ]

    @staticmethod
    def _query(request: Request, fields: dict[str, Field]) -> dict[str, Any]:
        try:
            return parse_query(request.query_params, fields)
        except FieldError as exc:
            raise ApiError(422, "invalid_field", exc.message) from None

    def _known_pool(self, name: str | None) -> None:
        if name is not None and name not in self.manager:
            raise ApiError(
                404, "pool_not_found", f"no pool named {show(name)}; GET /api/pools lists them"
            )

    async def samples(self, request: Request) -> Response:
        query = self._query(request, SAMPLES_QUERY)
        pool = query.get("pool")
        self._known_pool(pool)
        items = self.history.samples(pool, query.get("seconds"))
        return JSONResponse(
            {
                "interval": self.history.interval,
                "series": list(SERIES),
                "sampling": self.history.running,
                "data": [
                    {
                        "pool": item.pool,
                        "start": iso_time(item.start),
                        "values": item.values,
                    }
                    for item in sorted(items, key=lambda i: i.pool)
                ],
            }
        )

    async def latency(self, request: Request) -> Response:
        query = self._query(request, LATENCY_QUERY)
        name = query.get("pool")
        self._known_pool(name)
        window = query.get("window", 300)
        pools = sorted(self.manager.pools(), key=lambda p: p.name)
        if name is not None:
            pools = [p for p in pools if p.name == name]
        covered, results = self.history.latency(pools, window)
        return JSONResponse(
            {
                "window": window,
                "covered": round(covered, 3),
                "data": [
                    {
                        "pool": r.pool,
                        "queue_wait": _latency_json(r.queue_wait),
                        "run_time": _latency_json(r.run_time),
                        "tasks": [{"name": n, **_latency_json(lat)} for n, lat in r.tasks],
                    }
                    for r in results
                ],
            }
        )

    async def console(self, request: Request) -> Response:
        return JSONResponse(
            {
                "trace_url": self.trace_url,
                "grafana_url": self.grafana_url,
                "grafana_dashboard_path": GRAFANA_DASHBOARD_PATH,
            }
        )
