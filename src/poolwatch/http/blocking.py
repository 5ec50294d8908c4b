"""Blocking work for request handlers, on threads of its own.

Removing a pool waits for it to drain and a ``caller_runs`` submission may run the task
in the caller; neither may take the shared thread pool that ``/metrics`` rendering and
file responses use, or a burst of them would starve scrapes and health checks. Each
call gets a short-lived daemon thread of its own, at most ``limit`` at once (further
calls wait their turn without holding a thread), and a call still waiting when the
server stops is answered with 503 at once, while its work goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from poolwatch.http.errors import ApiError
from poolwatch.http.lifecycle import Lifecycle

__all__ = ["DEFAULT_LIMIT", "BlockingRunner"]

#: Blocking calls running at once; more wait their turn without holding a thread.
DEFAULT_LIMIT = 16

T = TypeVar("T")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def _first(*futures: asyncio.Future[Any]) -> None:
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)


class BlockingRunner:
    """Runs blocking calls for async handlers; see the module's docstring."""

    def __init__(self, lifecycle: Lifecycle, limit: int = DEFAULT_LIMIT) -> None:
        self.lifecycle = lifecycle
        self.limit = limit
        # One semaphore per event loop (an app can be served by several, one at a time).
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _semaphore(self, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.limit)
        return slots

    async def run(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on its own thread; ``what`` words the 503 answer."""
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()

        def on_close() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(_settle, closed, None, None)

        forget = self.lifecycle.on_close(on_close)
        semaphore = self._semaphore(loop)
        try:
            acquire = asyncio.ensure_future(semaphore.acquire())
            await _first(acquire, closed)
            if not acquire.done() or acquire.cancelled():
                acquire.cancel()
                raise self._closed(what)
            done: asyncio.Future[T] = loop.create_future()
            context = contextvars.copy_context()  # the request's span parents the task's

            def work() -> None:
                try:
                    result: Any = context.run(fn, *args, **kwargs)
                    error: BaseException | None = None
                except BaseException as exc:
                    result, error = None, exc
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, done, result, error)
                    loop.call_soon_threadsafe(semaphore.release)

            threading.Thread(target=work, name="poolwatch-http-blocking", daemon=True).start()
            await _first(done, closed)
            if not done.done():
                raise self._closed(what)
            return done.result()
        finally:
            forget()

    @staticmethod
    def _closed(what: str) -> ApiError:
        return ApiError(
            503,
            "shutting_down",
            f"the server stopped before {what} finished; its outcome is unknown here: "
            "check on another instance or after a restart",
            headers={"Retry-After": "1"},
        )
