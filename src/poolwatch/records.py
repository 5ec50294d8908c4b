"""Public, immutable snapshots of pools and tasks."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stacks import TaskStack

__all__ = ["PoolState", "PoolStats", "TaskInfo", "TaskPage", "TaskState"]


class TaskState(enum.Enum):
    """Where a task is in its life. ``value`` is the lowercase name used in JSON and metrics."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})


class PoolState(enum.Enum):
    """Where a pool is in its life. ``value`` is the lowercase name used in JSON and metrics."""

    RUNNING = "running"
    PAUSED = "paused"
    SHUTTING_DOWN = "shutting_down"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A consistent snapshot of one task.

    Times are epoch seconds (``None`` until the event happened); ``queue_wait`` and
    ``run_time`` are seconds measured on the monotonic clock. ``traceback`` is set for
    failed tasks only and is bounded in length. ``overdue_stack`` is the task's stack
    taken when it passed its run timeout (a ``poolwatch.TaskStack``), else ``None``.
    """

    id: str
    pool: str
    name: str
    state: TaskState
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    queue_wait: float | None
    run_time: float | None
    error_type: str | None
    error_message: str | None
    traceback: str | None
    cancel_requested: bool
    worker: str | None
    trace_id: str | None
    overdue_stack: TaskStack | None = None


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A consistent snapshot of one pool, taken under its lock.

    At any instant ``submitted == succeeded + failed + cancelled + queued + active``.
    ``workers`` counts live (or starting) worker threads, ``active`` the tasks running
    (including one a submitting thread runs under ``caller_runs``), ``idle`` the workers
    parked waiting for work; a worker just woken for a task is neither idle nor active
    until it starts it. ``queue_capacity`` is ``None`` for an unbounded queue.
    ``rejected`` counts every rejection; a task refused by ``abort``, ``discard`` or
    shutdown is not part of ``submitted``, while one run by ``caller_runs`` is (it runs),
    and under ``discard_oldest`` the new task is submitted and the oldest one cancelled.
    ``oldest_queued_age`` is in seconds, 0 when nothing is queued. ``queue_timeouts``
    counts tasks cancelled for waiting past ``queue_timeout``, ``run_timeouts`` tasks that
    ran past their run timeout (each once).
    """

    name: str
    state: PoolState
    max_workers: int
    workers: int
    active: int
    idle: int
    queued: int
    queue_capacity: int | None
    rejection_policy: str
    queue_timeout: float | None
    run_timeout: float | None
    submitted: int
    succeeded: int
    failed: int
    cancelled: int
    rejected: int
    overdue: int
    oldest_queued_age: float
    queue_timeouts: int
    run_timeouts: int


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of tasks, newest first, and the number of tasks that matched in all."""

    items: list[TaskInfo]
    total: int
