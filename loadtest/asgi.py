"""What each HTTP endpoint costs the application, without the network or the server.

    python loadtest/asgi.py              # the demo's pools, 2,000 finished tasks in history
    python loadtest/asgi.py --load       # ... with the demo's load generator running
    python loadtest/asgi.py --repeats 9 --requests 5000

Calls the ASGI app directly in a loop (no socket, no HTTP parsing) and reports the
median microseconds per request of each endpoint over ``--repeats`` rounds, beside a
trivial Starlette JSON endpoint called the same way. ``loadtest/load.py`` measures the
same endpoints through uvicorn; this runner isolates the part that is poolwatch's: the
difference between the two is the server's (and the operating system's) share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from poolwatch import PoolManager, create_app, demo

App = Callable[..., Awaitable[None]]
SUBMIT_BODY = json.dumps({"task": "demo.sleep", "args": [0]}).encode()

#: (label, method, path, query, body) in the order reported.
REQUESTS = [
    ("GET /healthz", "GET", "/healthz", b"", b""),
    ("GET /api/pools", "GET", "/api/pools", b"", b""),
    ("GET /api/tasks (20 a page)", "GET", "/api/tasks", b"per_page=20", b""),
    ("POST /api/pools/{name}/tasks", "POST", "/api/pools/bench/tasks", b"", SUBMIT_BODY),
    ("GET /metrics", "GET", "/metrics", b"", b""),
]


def _scope(method: str, path: str, query: bytes, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000")]
    if body:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query, "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip


async def _call(app: App, scope: dict[str, Any], body: bytes) -> int:
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # a disconnect never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _measure(app: App, request: tuple[str, str, str, bytes, bytes], n: int) -> float:
    """Microseconds per request over ``n`` requests; fails loudly on an error status."""
    label, method, path, query, body = request
    began = time.perf_counter()
    for _ in range(n):
        status = await _call(app, _scope(method, path, query, body), body)
        if status >= 400:
            raise SystemExit(f"{label} answered {status}")
    return (time.perf_counter() - began) / n * 1e6


def _trivial_app() -> Starlette:
    async def trivial(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/trivial", trivial)])


async def _run(args: argparse.Namespace, app: App) -> dict[str, list[float]]:
    trivial = _trivial_app()
    baseline = ("trivial Starlette endpoint", "GET", "/trivial", b"", b"")
    rows: dict[str, list[float]] = {r[0]: [] for r in [baseline, *REQUESTS]}
    for request in [baseline, *REQUESTS]:  # warm-up
        await _measure(trivial if request is baseline else app, request, 100)
    for _ in range(args.repeats):  # interleaved, so drift hits every endpoint alike
        rows[baseline[0]].append(await _measure(trivial, baseline, args.requests))
        for request in REQUESTS:
            n = max(1, args.requests // 10) if request[2] == "/metrics" else args.requests
            rows[request[0]].append(await _measure(app, request, n))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--load", action="store_true", help="run the demo's load generator")
    args = parser.parse_args()
    manager = PoolManager()
    generator = None
    try:
        demo.create_demo_pools(manager)
        manager.create_pool("bench", max_workers=4)
        futures = [manager.get_pool("io").submit(demo.sleep, 0) for _ in range(2000)]
        for future in futures:
            future.result(timeout=60)
        if args.load:
            generator = demo.LoadGenerator(manager, seed=1)
            generator.start()
        app = create_app(manager, bind_host="127.0.0.1")
        rows = asyncio.run(_run(args, app))
    finally:
        if generator is not None:
            generator.stop()
        manager.shutdown(wait=True, cancel_futures=True)
    base = statistics.median(next(iter(rows.values())))
    print(
        f"ASGI calls in process, {'with' if args.load else 'without'} the demo's load: "
        f"Python {sys.version.split()[0]}, medians of {args.repeats} rounds\n"
    )
    print("| endpoint | us per request | x trivial |")
    print("| --- | ---: | ---: |")
    for label, values in rows.items():
        median = statistics.median(values)
        print(f"| {label} | {median:.0f} | {median / base:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
