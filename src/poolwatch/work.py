"""``WorkItem``: a task as its pool tracks it, and ``current_task()``.

A work item holds what to run and the task's record until the task finishes; then the
pool copies the record into its history and drops the item. Only the pool engine writes
its fields, under the pool's lock. Inside a running task ``current_task()`` returns it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .errors import TaskCancelledError
from .states import QUEUED

if TYPE_CHECKING:
    from .accounting import TaskKind
    from .future import TaskFuture
    from .history import ErrorInfo

__all__ = [
    "WorkItem",
    "cancel_requested",
    "current_task",
    "raise_if_cancel_requested",
    "set_current",
]

_local = threading.local()


def current_task() -> WorkItem | None:
    """The task running in this thread, or ``None`` outside a poolwatch task.

    Its ``task_id``, ``cancel_requested`` and ``raise_if_cancel_requested()`` let a task
    cooperate with cancellation and run timeouts.
    """
    return getattr(_local, "item", None)


def set_current(item: WorkItem | None) -> WorkItem | None:
    """Make ``item`` this thread's current task; returns the one it replaces."""
    previous: WorkItem | None = getattr(_local, "item", None)
    _local.item = item
    return previous


def cancel_requested() -> bool:
    """Whether the running task was asked to stop; ``False`` outside a task."""
    item: WorkItem | None = getattr(_local, "item", None)
    return item is not None and item.cancel_requested


def raise_if_cancel_requested() -> None:
    """``current_task().raise_if_cancel_requested()``; does nothing outside a task."""
    item: WorkItem | None = getattr(_local, "item", None)
    if item is not None and item.cancel_requested:
        item.raise_if_cancel_requested()


class WorkItem:
    """One task of a pool: what to run, and its record while it is queued or running.

    Times are the pool's monotonic clock. ``worker`` is the index of the thread that runs
    it (-1 before it starts). Read-only for everyone but the pool engine.
    """

    __slots__ = (
        "args",
        "cancel_requested",
        "cancel_requested_at",
        "error",
        "finished",
        "fn",
        "future",
        "kind",
        "kwargs",
        "overdue_at",
        "overdue_stack",
        "seq",
        "started",
        "state",
        "submitted",
        "trace_ctx",
        "trace_id",
        "worker",
    )

    def __init__(
        self,
        future: TaskFuture,
        seq: int,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kind: TaskKind,
        submitted: float,
    ) -> None:
        self.future = future
        self.seq = seq
        # Dropped (set to None) when the task finishes, so records never keep them alive.
        self.fn: Any = fn
        self.args: Any = args
        self.kwargs: Any = kwargs
        self.kind = kind
        self.submitted = submitted
        self.started = 0.0
        self.finished = 0.0
        self.state = QUEUED
        self.cancel_requested = False
        self.cancel_requested_at = 0.0
        self.overdue_at = 0.0
        self.overdue_stack: Any = None
        self.worker = -1
        self.trace_ctx: Any = None
        self.trace_id = 0
        self.error: ErrorInfo | None = None

    @property
    def task_id(self) -> str:
        """The task's id, as ``TaskFuture.task_id``."""
        return self.future.task_id

    def raise_if_cancel_requested(self) -> None:
        """Raise ``TaskCancelledError`` if a cancel was requested; the task ends CANCELLED."""
        if self.cancel_requested:
            raise TaskCancelledError(f"task {self.task_id} was asked to stop")

    def request_cancel(self, now: float) -> None:
        """Ask the task to stop (the pool calls this under its lock)."""
        if not self.cancel_requested:
            self.cancel_requested = True
            self.cancel_requested_at = now
