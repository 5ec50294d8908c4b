"""A small service as gunicorn or ``uvicorn --workers`` runs it in the multi-process tests.

``GET /work?n=N&fail=F`` runs N tasks that succeed and F that fail on the pool ``work``,
waits for them and answers with the process's pid; everything else is poolwatch's app,
mounted at the root, whose lifespan the service's own lifespan enters (Starlette does
not pass it on to a mounted app).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from poolwatch import PoolManager, create_app

manager = PoolManager()
pool = manager.create_pool("work", max_workers=4)
service = create_app(manager, bind_host="127.0.0.1")


def job(i: int) -> int:
    return i * 2


def fail() -> None:
    raise ValueError("planned failure")


async def work(request: Request) -> Response:
    n = int(request.query_params.get("n", "1"))
    failures = int(request.query_params.get("fail", "0"))
    futures = [pool.submit(job, i) for i in range(n)] + [pool.submit(fail) for _ in range(failures)]
    await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
    return JSONResponse({"pid": os.getpid(), "succeeded": n, "failed": failures})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with service.router.lifespan_context(service):
        yield


app = Starlette(routes=[Route("/work", work), Mount("/", service)], lifespan=lifespan)
