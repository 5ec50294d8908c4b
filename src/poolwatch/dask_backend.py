"""``DaskBackend``: a pool's tasks run on a Dask distributed cluster.

Each of the pool's worker threads hands the task it took over and waits for its end, so
the pool's queue, policies, timeouts, records, metrics and spans stay the pool's, and
``max_workers`` bounds the tasks in flight on the cluster. The worker thread's wait is
the task's run time in the records: scheduling, the run on a Dask worker and bringing the
result back.

Tasks go to Dask in batches: the first task handed over schedules a send on the client's
event loop, and the send takes every task handed over by then, in one ``Client.map``
(one graph, one message to the scheduler). Sending from the loop, in batches, costs the
client process, which on a ``LocalCluster`` also runs the scheduler, far less than a
``Client.submit`` per task from each waiting thread (docs/performance.md). Results come
back as Dask brings them: one request for the tasks that end together.

What Dask can stop: a task it has not started yet (queued on the scheduler or a worker)
is dropped. A task already running on a Dask worker keeps running there until its
function returns (Dask does not interrupt Python code); its result is discarded and the
pool's slot is free at once. Dask retries a task whose Dask worker died
(``distributed.scheduler.allowed-failures`` times), then fails it with ``KilledWorker``.

This module imports ``distributed``: it is imported only for ``kind="dask"``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import BrokenExecutor, CancelledError
from functools import partial
from inspect import iscoroutinefunction
from itertools import islice
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dask.utils import apply
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


def run_in_context(
    carrier: dict[str, str], fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    """On the Dask worker: ``fn(*args, **kwargs)`` with the trace context of the task's
    span current, so that spans made inside it are its children."""
    token = otel_context.attach(propagate.extract(carrier))
    try:
        return fn(*args, **kwargs)
    finally:
        otel_context.detach(token)


async def run_in_context_async(
    carrier: dict[str, str], fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    """``run_in_context`` for a coroutine function, which Dask awaits on its worker."""
    token = otel_context.attach(propagate.extract(carrier))
    try:
        return await fn(*args, **kwargs)
    finally:
        otel_context.detach(token)


# The frames of a task's error before its own: Dask's worker, dask.utils.apply and this
# module, matched by the end of their paths (the worker's install may be elsewhere).
_DISTRIBUTED = f"{os.sep}distributed{os.sep}"
_LOCAL_ENDINGS = (
    os.path.join("dask", "utils.py"),
    os.path.join("poolwatch", "dask_backend.py"),
)


def _local(filename: str) -> bool:
    return _DISTRIBUTED in filename or filename.endswith(_LOCAL_ENDINGS)


def _remote_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its leading frames in Dask's code and this module."""
    while tb is not None and _local(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


_SCANNED = 64


def _holds_future(args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> bool:
    """Whether Dask futures are among the arguments (at the top or one container down):
    Dask makes them the task's dependencies, and a graph with one that is gone is
    cancelled whole, so such a task goes to Dask on its own."""
    return _any_future(args) or (kwargs is not None and _any_future(kwargs.values()))


def _any_future(values: Iterable[Any]) -> bool:
    for value in values:
        if isinstance(value, Future):
            return True
        if isinstance(value, dict):
            inner: Any = value.values()
        elif isinstance(value, (list, tuple, set, frozenset)):
            inner = value
        else:
            continue
        # The first _SCANNED of a container only: this runs for every task.
        if any(isinstance(v, Future) for v in islice(inner, _SCANNED)):
            return True
    return False


def _cancelled(item: WorkItem) -> bool:
    """Whether a cancel was requested other than by a run timeout, whose request cancels
    on Dask only with ``on_run_timeout="kill"`` (through ``interrupt``)."""
    return item.cancel_requested and not item.overdue_at


#: How often a thread waiting for its task's end checks that the client still runs.
_CHECK_EVERY = 5.0


class _Handoff:
    """One task on its way to Dask and back: what to run, then its Dask future, then its
    result or error. ``done`` is released once the task has ended (or never reached Dask).
    ``future`` and ``cancel_asked`` change under the backend's lock."""

    __slots__ = (
        "alone", "args", "cancel_asked", "done", "error", "fetching", "fn", "future", "item",
        "key", "kwargs", "value",
    )  # fmt: skip

    def __init__(self, item: WorkItem, key: str, fn: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> None:  # fmt: skip
        self.item = item
        self.key = key
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] | None = args
        self.kwargs = kwargs
        # Sent on its own: a coroutine function (Dask awaits it only as the task's own
        # function, not under apply) or one whose arguments hold Dask futures.
        self.alone = iscoroutinefunction(fn) or _holds_future(args, kwargs)
        self.done = threading.Lock()
        self.done.acquire()
        self.future: Future[Any] | None = None
        self.fetching: asyncio.Task[None] | None = None
        self.cancel_asked = False
        self.value: Any = None
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.release()

    async def fetch(self, client: Client, future: Future[Any]) -> None:
        """On the client's loop: wait for the task's end and bring its result back (Dask
        brings back in one request the results of the tasks that end together)."""
        try:
            self.value = await client.gather(future, asynchronous=True)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.release()


def _refusal(handoff: _Handoff, exc: BaseException) -> BaseException:
    """The error of a task Dask would not take: for one that does not serialize, its
    innermost reason ("cannot pickle ..."), not the whole graph's repr."""
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    # A new error, without the refused graph's frames and chain: those hold the graph,
    # its tasks' arguments and their registered keys.
    error_type = TypeError if isinstance(exc, TypeError) else RuntimeError
    return error_type(
        f"task {handoff.item.task_id} could not be sent to Dask: {type(root).__name__}: {root}"
    )


class _NotSent(Exception):
    """A task whose cancel came before its batch left for Dask: it never ran there."""


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
        # worker index -> the hand-off of the task it waits for
        self._running: dict[int, _Handoff] = {}
        # tasks handed over and not yet sent: the next batch
        self._outbox: list[_Handoff] = []
        # worker indexes interrupted (on_run_timeout="kill") before their hand-off was
        # registered
        self._interrupted: set[int] = set()
        # Keys are unique on a cluster shared by many processes and pools.
        self._key_infix = f"-{os.urandom(4).hex()}-"
        self._closed = False

    def unsent(self) -> int:
        """How many tasks were handed over and wait for the next batch to Dask."""
        with self._lock:
            return len(self._outbox)

    def start_worker(self, worker: Worker) -> None:
        if self.client.status not in _LIVE:
            raise RuntimeError(f"the Dask client is {self.client.status}")

    def run(self, worker: Worker, item: WorkItem) -> Any:
        fn: Callable[..., Any] = item.fn
        args: tuple[Any, ...] = item.args
        kwargs: dict[str, Any] | None = item.kwargs or None
        if item.trace_ctx is not None:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # the task's span is current in this thread
            if carrier:
                wrapper = run_in_context_async if iscoroutinefunction(fn) else run_in_context
                fn, args = wrapper, (carrier, fn, *args)
        if _cancelled(item):  # before it reached Dask: it never will
            raise TaskCancelledError(f"task {item.task_id} was cancelled before it started")
        loop = self.client.loop
        if loop is None or self.client.status not in _LIVE:
            raise BrokenDaskPool(self.broken_message)
        key = item.kind.name + self._key_infix + item.task_id
        handoff = _Handoff(item, key, fn, args, kwargs)
        index = worker.index
        with self._lock:
            self._running[index] = handoff
            first = not self._outbox
            self._outbox.append(handoff)
            # A cancel requested, or an interrupt, since the check above found no
            # hand-off to cancel.
            interrupted = index in self._interrupted
            if interrupted:
                self._interrupted.discard(index)
            handoff.cancel_asked = _cancelled(item) or (interrupted and bool(item.overdue_at))
        try:
            if first:  # the batch's first task: send the batch once the loop is free
                loop.add_callback(self._send)
            self._wait(handoff)
        finally:
            with self._lock:
                del self._running[index]
        error = handoff.error
        if error is None:
            return handoff.value
        if isinstance(error, _NotSent):
            if item.overdue_at:  # on_run_timeout="kill" before the batch left
                raise TaskInterruptedError(
                    f"task {item.task_id} ran past its run timeout before it reached Dask"
                )
            raise TaskCancelledError(f"task {item.task_id} was cancelled before it started")
        if isinstance(error, CancelledError) and item.cancel_requested:
            if item.overdue_at:  # on_run_timeout="kill": the record keeps why
                raise TaskInterruptedError(
                    f"task {item.task_id} ran past its run timeout and was cancelled on Dask"
                ) from None
            raise TaskCancelledError(f"task {item.task_id} was cancelled on Dask") from None
        # The frames the error had on the Dask worker, not those of its way back.
        raise error.with_traceback(_remote_frames(error.__traceback__))

    def _wait(self, handoff: _Handoff) -> None:
        """Wait for the task's end; a client closed meanwhile (its loop may never send
        the batch or bring the result) fails the task rather than leave it waiting."""
        while not handoff.done.acquire(True, _CHECK_EVERY):
            if self.client.status not in _LIVE:
                handoff.error = BrokenDaskPool(self.broken_message)
                return

    def _send(self) -> None:
        """On the client's loop: send every task handed over since the last batch to
        Dask in one graph (one message to the scheduler, whatever the batch's size)."""
        with self._lock:
            batch, self._outbox = self._outbox, []
            dropped = [h for h in batch if h.cancel_asked]
            if dropped:
                batch = [h for h in batch if not h.cancel_asked]
        for h in dropped:
            h.fail(_NotSent())
        together = [h for h in batch if not h.alone]
        for h in batch:
            if h.alone:
                self._submit([h])
        if together:
            self._submit(together)

    def _submit(self, batch: list[_Handoff]) -> None:
        """On the client's loop: hand ``batch`` to Dask as one graph. Should Dask refuse it
        (an argument that does not pickle, say), each task is sent again on its own, so
        that only the task at fault fails, with its own error."""
        try:
            futures = self._graph(batch)
        except BaseException as exc:
            if len(batch) > 1:
                for h in batch:
                    h.key += "-alone"  # the refused graph's keys may still be let go of
                    self._submit([h])
            else:
                batch[0].fail(_refusal(batch[0], exc))
            return
        with self._lock:
            for h, future in zip(batch, futures, strict=True):
                h.future = future
                h.fn = h.args = h.kwargs = None
            late = [h for h in batch if h.cancel_asked]
        start = asyncio.get_running_loop().create_task  # this runs on the client's loop
        for h, future in zip(batch, futures, strict=True):
            h.fetching = start(h.fetch(self.client, future))  # held: asyncio holds it weakly
        for h in late:  # a cancel that came while the batch was on its way
            self._cancel(h)

    def _graph(self, batch: list[_Handoff]) -> list[Future[Any]]:
        """The tasks' futures: each task is ``apply(fn, args[, kwargs])``
        (``dask.utils.apply``, which the workers have), so that its own keywords never
        meet ``Client.map``'s (``key``, ``priority``, ...). A coroutine function goes as
        itself, Dask awaiting it on its worker."""
        client = self.client
        if len(batch) == 1 and iscoroutinefunction(fn := batch[0].fn):
            h = batch[0]
            task = partial(fn, **h.kwargs) if h.kwargs else fn
            return [client.submit(task, *(h.args or ()), key=h.key, pure=False)]
        columns: list[list[Any]] = [[h.fn for h in batch], [h.args for h in batch]]
        if any(h.kwargs for h in batch):
            columns.append([h.kwargs for h in batch])
        futures: list[Future[Any]] = client.map(
            apply, *columns, key=[h.key for h in batch], pure=False
        )
        return futures

    def request_cancel(self, index: int, seq: int) -> None:
        """A cancel was requested for task ``seq`` (by ``cancel(task_id)``, say): cancel it
        on Dask, unless it is a run timeout's request (see ``interrupt``). Under the
        engine's lock: the cancel is only scheduled on the client's loop."""
        with self._lock:
            handoff = self._running.get(index)
        if handoff is not None and handoff.item.seq == seq and _cancelled(handoff.item):
            self._cancel(handoff)

    def interrupt(self, worker: Worker) -> bool:
        """Cancel on Dask the task ``worker`` waits for, past its run timeout
        (``on_run_timeout="kill"``)."""
        with self._lock:
            handoff = self._running.get(worker.index)
            if handoff is None:  # not handed over yet (or ended): run() sees this
                self._interrupted.add(worker.index)
                return True
        if not handoff.item.overdue_at:  # not the task meant: it ended
            return False
        self._cancel(handoff)
        return True

    def _cancel(self, handoff: _Handoff) -> None:
        """Have Dask cancel the task, from its client's loop: this never blocks. A task
        still in the next batch is kept out of it instead."""
        with self._lock:
            handoff.cancel_asked = True
            future = handoff.future
        loop = self.client.loop
        if future is not None and loop is not None:
            msg = f"task {handoff.item.task_id} was cancelled by its poolwatch pool"
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
