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
    "Running",
    "WorkItem",
    "cancel_requested",
    "current_task",
    "raise_if_cancel_requested",
]

#: ``.holder``: whatever holds the task running in this thread as its ``item``: the
#: pool's worker in a worker thread (set once, when the thread starts), a ``Running``
#: around a task a submitting thread runs itself. Set by the pool engine.
CURRENT = threading.local()


class Running:
    """Holds a task that runs outside a pool's workers (``caller_runs``)."""

    __slots__ = ("item",)

    def __init__(self, item: WorkItem) -> None:
        self.item = item


def current_task() -> WorkItem | None:
    """The task running in this thread, or ``None`` outside a poolwatch task.

    Its ``task_id``, ``cancel_requested`` and ``raise_if_cancel_requested()`` let a task
    cooperate with cancellation and run timeouts.
    """
    holder = getattr(CURRENT, "holder", None)
    return None if holder is None else holder.item


def cancel_requested() -> bool:
    """Whether the running task was asked to stop; ``False`` outside a task."""
    item = current_task()
    return item is not None and item.cancel_requested


def raise_if_cancel_requested() -> None:
    """``current_task().raise_if_cancel_requested()``; does nothing outside a task."""
    item = current_task()
    if item is not None and item.cancel_requested:
        item.raise_if_cancel_requested()


class WorkItem:
    """One task of a pool: what to run, and its record while it is queued or running.

    Times are the pool's monotonic clock. ``worker`` is the index of the thread that runs
    it (-1 before it starts). Read-only for everyone but the pool engine.
    """

    __slots__ = ("__dict__", "args", "finished", "fn", "future", "kind", "kwargs", "marked",
                 "seq", "started", "state", "submitted", "worker")  # fmt: skip

    seq: int  # set when the pool accepts the task
    started: float  # set when it starts
    finished: float  # set when it ends
    # Rarely set: read from these defaults until the pool sets them (in __dict__), each
    # through a method that sets ``marked`` too (a slot: a cheap read), so that a task's
    # end reads these only when one is set.
    cancel_requested = False
    cancel_requested_at = 0.0
    overdue_at = 0.0
    overdue_stack: Any = None
    trace_ctx: Any = None
    trace_id = 0
    error: ErrorInfo | None = None

    def __init__(
        self,
        future: TaskFuture,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kind: TaskKind,
        submitted: float,
    ) -> None:
        # Only what every task needs is set here; the rest is read from the class's
        # defaults until the pool sets it, which saves a store per field on every task.
        self.future = future
        # Dropped (set to None) when the task finishes, so records never keep them alive.
        self.fn: Any = fn
        self.args: Any = args
        self.kwargs: Any = kwargs
        self.kind = kind
        self.submitted = submitted
        self.state = QUEUED
        self.worker = -1
        self.marked = False

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
            self.marked = True

    # The pool's steps for the rare fields (each under its lock, or before the task is
    # shared); a task's end reads them only when ``marked``.

    def set_trace_context(self, ctx: Any) -> None:
        self.trace_ctx = ctx
        self.marked = True

    def set_trace_id(self, trace_id: int) -> None:
        self.trace_id = trace_id
        self.marked = True

    def set_error(self, error: ErrorInfo) -> None:
        self.error = error
        self.marked = True

    def set_overdue(self, now: float) -> None:
        self.overdue_at = now
        self.marked = True

    def set_overdue_stack(self, stack: Any) -> None:
        self.overdue_stack = stack
        self.marked = True

    def release(self) -> None:
        """Drop what the task ran with: a record never keeps the user's objects alive."""
        self.fn = self.args = self.kwargs = None
        if self.marked:
            self.trace_ctx = None
