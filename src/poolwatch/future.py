"""``TaskFuture``: the future returned by ``ManagedPool.submit``, and ``current_task()``.

A ``TaskFuture`` is also the live record of its task while the task is queued or running:
one object per task, no separate work item. When the task finishes its function,
arguments and trace context are dropped; the pool keeps a compact copy of the record in
its history, never the future.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from typing import TYPE_CHECKING, Any

from .errors import TaskCancelledError
from .history import FAILED, QUEUED, SUCCEEDED

if TYPE_CHECKING:
    from .accounting import TaskKind
    from .pool import ManagedPool
    from .records import TaskInfo

__all__ = ["TaskFuture", "current_task"]

log = logging.getLogger("poolwatch")

_local = threading.local()


def current_task() -> TaskFuture | None:
    """The task running in this thread, or ``None`` outside a poolwatch task.

    Its ``task_id``, ``cancel_requested`` and ``raise_if_cancel_requested()`` let a task
    cooperate with cancellation and run timeouts.
    """
    return getattr(_local, "task", None)


def _set_current(task: TaskFuture | None) -> TaskFuture | None:
    previous: TaskFuture | None = getattr(_local, "task", None)
    _local.task = task
    return previous


class TaskFuture(Future[Any]):
    """A ``concurrent.futures.Future`` that knows its task: ``task_id``, ``info()``.

    Thread-safe like ``Future``. ``cancel()`` cancels a queued task at once (the pool
    counts it); a running task cannot be cancelled through the future, use
    ``ManagedPool.cancel(task_id)`` to request a cooperative cancel.

    A done-callback that raises, even ``SystemExit`` or ``KeyboardInterrupt``, is logged
    (logger ``poolwatch``, with the task id) and the next callbacks still run: callbacks
    run in the pool's workers and amid its bookkeeping, which must carry on.
    ``ThreadPoolExecutor`` logs ``Exception`` only and lets the others end its worker.

    The future's condition (and its waiter and callback lists) are made on first use,
    under the pool's lock: most futures are never waited on before they finish, and the
    pool then resolves them under the lock it holds anyway, with no condition at all.
    """

    __slots__ = (
        "_args",
        "_cancel_requested",
        "_cancel_requested_at",
        "_cond",
        "_done_callbacks",
        "_error",
        "_exception",
        "_finished",
        "_fn",
        "_kind",
        "_kwargs",
        "_overdue_at",
        "_pool",
        "_result",
        "_seq",
        "_started",
        "_state",
        "_submitted",
        "_trace_ctx",
        "_trace_id",
        "_tstate",
        "_waiters",
        "_worker",
    )

    def __init__(
        self,
        pool: ManagedPool,
        seq: int,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kind: TaskKind,
        submitted: float,
    ) -> None:
        # Future.__init__ is not called: it would make the condition eagerly.
        self._cond: threading.Condition | None = None
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._pool = pool
        self._seq = seq
        # Dropped (set to None) when the task finishes, so records never keep them alive.
        self._fn: Any = fn
        self._args: Any = args
        self._kwargs: Any = kwargs
        self._kind = kind
        self._submitted = submitted
        self._started = 0.0
        self._finished = 0.0
        self._tstate = QUEUED
        self._cancel_requested = False
        self._cancel_requested_at = 0.0
        self._overdue_at = 0.0
        self._worker = -1
        self._trace_ctx: Any = None
        self._trace_id = 0
        self._error: Any = None

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with self._pool._lock:
                cond = self._cond
                if cond is None:
                    self._waiters: list[Any] = []
                    self._done_callbacks: list[Any] = []
                    cond = self._cond = threading.Condition()
        return cond

    @property
    def task_id(self) -> str:
        """The task's id: opaque, URL-safe, unique within its ``PoolManager``."""
        return self._pool._task_id(self._seq)

    @property
    def cancel_requested(self) -> bool:
        """Whether someone asked this task to stop (a cancel request or its run timeout)."""
        return self._cancel_requested

    def raise_if_cancel_requested(self) -> None:
        """Raise ``TaskCancelledError`` if a cancel was requested; the task ends CANCELLED."""
        if self._cancel_requested:
            raise TaskCancelledError(f"task {self.task_id} was asked to stop")

    def info(self) -> TaskInfo:
        """A consistent snapshot of the task's record."""
        return self._pool._info_of(self)

    def cancel(self) -> bool:
        """Cancel the task if it is still queued; ``True`` if it is (now) cancelled."""
        return self._pool._cancel_future(self)

    def done(self) -> bool:
        if self._state in _DONE:  # final states never change: no lock needed
            return True
        return super().done()

    def result(self, timeout: float | None = None) -> Any:
        # A finished future never changes again: skip the condition on the common path.
        # _result is always written before _state (under the pool's lock or the condition).
        if self._state == FINISHED and self._exception is None:
            return self._result
        return super().result(timeout)

    def _resolve_locked(self, outcome: int, payload: Any) -> bool:
        """Resolve under the pool's lock if nobody waits or listens; False if that must be
        done after the lock is released (``_resolve``)."""
        if self._cond is not None:
            return False
        if outcome == SUCCEEDED:
            self._result = payload
            self._state = FINISHED
        elif outcome == FAILED:
            self._exception = payload
            self._state = FINISHED
        else:
            self._state = CANCELLED_AND_NOTIFIED
        return True

    def _resolve(self, outcome: int, payload: Any) -> None:
        """Resolve through the condition, notifying waiters and running callbacks."""
        if outcome == SUCCEEDED:
            self.set_result(payload)
        elif outcome == FAILED:
            self.set_exception(payload)
        else:
            self._mark_cancelled()

    def _mark_cancelled(self) -> None:
        """Resolve as cancelled from any pending or running state, notifying waiters."""
        if self._state in _DONE:  # already resolved under the pool's lock
            return
        with self._condition:
            if self._state in _DONE:
                return
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()

    def _invoke_callbacks(self) -> None:
        for callback in self._done_callbacks:
            try:
                callback(self)
            except BaseException:
                log.exception("done-callback %r of task %s raised", callback, self.task_id)


_DONE = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})
