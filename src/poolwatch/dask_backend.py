"""``DaskBackend``: a pool's tasks run on a Dask distributed cluster.

Each of the pool's worker threads hands the task it took to the cluster
(``Client.submit``) and waits for its end, so the pool's queue, policies, timeouts,
records, metrics and spans stay the pool's, and ``max_workers`` bounds the tasks in
flight on the cluster. The worker thread's wait is the task's run time in the records:
scheduling, the run on a Dask worker and bringing the result back.

What Dask can stop: a task it has not started yet (queued on the scheduler or a worker)
is dropped. A task already running on a Dask worker keeps running there until its
function returns (Dask does not interrupt Python code); its result is discarded and the
pool's slot is free at once. Dask retries a task whose Dask worker died
(``distributed.scheduler.allowed-failures`` times), then fails it with ``KilledWorker``.

This module imports ``distributed``: it is imported only for ``kind="dask"``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, CancelledError
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

import distributed
from distributed import Client, Future
from opentelemetry import context as otel_context
from opentelemetry import propagate

from .errors import TaskCancelledError, TaskInterruptedError

if TYPE_CHECKING:
    from .work import WorkItem
    from .workers import Worker

__all__ = ["BrokenDaskPool", "DaskBackend", "run_in_context"]

log = logging.getLogger("poolwatch")

_LIVE = ("running", "newly-created", "connecting")


class BrokenDaskPool(BrokenExecutor):
    """A pool of ``kind="dask"`` whose client could not be used (closed, say): queued and
    later tasks fail with this."""


def run_in_context(carrier: dict[str, str], fn: Callable[..., Any], *args: Any) -> Any:
    """On the Dask worker: ``fn(*args)`` with the trace context of the task's span current,
    so that spans made inside it are its children."""
    token = otel_context.attach(propagate.extract(carrier))
    try:
        return fn(*args)
    finally:
        otel_context.detach(token)


_LOCAL_CODE = (os.path.dirname(distributed.__file__), __file__)


def _remote_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its leading frames in Dask's client code and this module."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_LOCAL_CODE):
        tb = tb.tb_next
    return tb


def _cancelled(item: WorkItem) -> bool:
    """Whether a cancel was requested other than by a run timeout, whose request cancels
    on Dask only with ``on_run_timeout="kill"`` (through ``interrupt``)."""
    return item.cancel_requested and not item.overdue_at


class _Outcome:
    """A task's result or error, brought back on the client's event loop."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.value: Any = None
        self.error: BaseException | None = None

    async def fetch(self, client: Client, future: Future[Any]) -> None:
        try:
            self.value = await client.gather(future, asynchronous=True)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.release()


class DaskBackend:
    """Runs a pool's tasks on a Dask cluster through ``client`` (see the module).

    ``owns_client``: the pool made the client (from an address) and closes it in
    ``close``; a client given by the caller is left open. Thread-safe.
    """

    kind: str = "dask"
    broken_error: type[Exception] = BrokenDaskPool
    broken_message = "the pool's Dask client is closed, the pool is not usable anymore"

    def __init__(self, client: Client, *, owns_client: bool) -> None:
        self.client = client
        self._owns_client = owns_client
        self._lock = threading.Lock()
        # worker index -> the task it waits for and that task's Dask future
        self._running: dict[int, tuple[WorkItem, Future[Any]]] = {}
        # Keys are unique on a cluster shared by many processes and pools.
        self._key_infix = f"-{os.urandom(4).hex()}-"
        self._closed = False

    def start_worker(self, worker: Worker) -> None:
        if self.client.status not in _LIVE:
            raise RuntimeError(f"the Dask client is {self.client.status}")

    def run(self, worker: Worker, item: WorkItem) -> Any:
        fn: Callable[..., Any] = item.fn
        args: tuple[Any, ...] = item.args
        if item.kwargs:  # never mixed with Client.submit's own keywords (key, priority, ...)
            fn = partial(fn, **item.kwargs)
        if item.trace_ctx is not None:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # the task's span is current in this thread
            if carrier:
                fn, args = run_in_context, (carrier, fn, *args)
        if _cancelled(item):  # before it reached Dask: it never will
            raise TaskCancelledError(f"task {item.task_id} was cancelled before it started")
        key = item.kind.name + self._key_infix + item.task_id
        future = self.client.submit(fn, *args, key=key, pure=False)
        index = worker.index
        with self._lock:
            self._running[index] = (item, future)
        try:
            if _cancelled(item):  # while it was handed over: request_cancel did not see it
                self._cancel(item, future)
            outcome = self._wait(future)
        finally:
            with self._lock:
                del self._running[index]
        error = outcome.error
        if error is None:
            return outcome.value
        if isinstance(error, CancelledError) and item.cancel_requested:
            if item.overdue_at:  # on_run_timeout="kill": the record keeps why
                raise TaskInterruptedError(
                    f"task {item.task_id} ran past its run timeout and was cancelled on Dask"
                ) from None
            raise TaskCancelledError(f"task {item.task_id} was cancelled on Dask") from None
        # The frames the error had on the Dask worker, not those of its way back.
        raise error.with_traceback(_remote_frames(error.__traceback__))

    def _wait(self, future: Future[Any]) -> _Outcome:
        """``future.result()``, for less: one coroutine on the client's loop brings the
        result (or error) back and releases this thread."""
        loop = self.client.loop
        if loop is None:
            raise BrokenDaskPool(self.broken_message)
        outcome = _Outcome()
        loop.add_callback(outcome.fetch, self.client, future)
        outcome.done.acquire()
        return outcome

    def request_cancel(self, index: int, seq: int) -> None:
        """A cancel was requested for task ``seq`` (by ``cancel(task_id)``, say): cancel it
        on Dask, unless it is a run timeout's request (see ``interrupt``). Under the
        engine's lock: the cancel is only scheduled on the client's loop."""
        with self._lock:
            entry = self._running.get(index)
        if entry is not None and entry[0].seq == seq and _cancelled(entry[0]):
            self._cancel(*entry)

    def interrupt(self, worker: Worker) -> bool:
        """Cancel on Dask the task ``worker`` waits for, past its run timeout
        (``on_run_timeout="kill"``)."""
        with self._lock:
            entry = self._running.get(worker.index)
        if entry is None or not entry[0].overdue_at:  # not the task meant: it has ended
            return False
        self._cancel(*entry)
        return True

    def _cancel(self, item: WorkItem, future: Future[Any]) -> None:
        """Have Dask cancel ``future``, from its client's loop: this never blocks."""
        loop = self.client.loop
        if loop is not None:
            msg = f"task {item.task_id} was cancelled by its poolwatch pool"
            loop.add_callback(self._cancel_on_loop, future, msg)

    async def _cancel_on_loop(self, future: Future[Any], msg: str) -> None:
        try:
            await self.client.cancel([future], asynchronous=True, reason="poolwatch", msg=msg)
        except Exception:  # the client is closing: the task ends with it anyway
            log.debug("cancelling %s on Dask failed", future.key, exc_info=True)

    def stop_worker(self, worker: Worker) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            closing, self._closed = self._owns_client and not self._closed, True
        if closing:
            self.client.close()
