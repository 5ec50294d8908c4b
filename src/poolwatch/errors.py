"""Exceptions raised by poolwatch."""

from __future__ import annotations

__all__ = [
    "PoolExistsError",
    "RejectedError",
    "TaskCancelledError",
    "TaskInterruptedError",
    "TaskNotRunningError",
]


class RejectedError(RuntimeError):
    """A pool refused a task: its queue is full (policy ``"abort"``) or it is shut down.

    ``reason`` is ``"queue_full"`` or ``"shutdown"``, as in the
    ``poolwatch_tasks_rejected_total`` metric.
    """

    def __init__(self, message: str, *, pool: str, reason: str) -> None:
        super().__init__(message)
        self.pool = pool
        self.reason = reason


class TaskCancelledError(Exception):
    """Raised inside a task by ``current_task().raise_if_cancel_requested()``.

    A task that ends with this exception after a cancel request finishes
    ``CANCELLED``, not ``FAILED``.
    """


class TaskInterruptedError(TaskCancelledError):
    """A task its pool ended where it ran (its worker process killed past its run
    timeout, say). It finishes ``CANCELLED`` and its record keeps this error as the
    reason."""


class PoolExistsError(ValueError):
    """``create_pool`` was given the name of a pool that already exists."""


class TaskNotRunningError(RuntimeError):
    """The task exists but is not running (still queued, or finished), so it has no
    live stack; ``PoolManager.task_stack`` raises it."""
