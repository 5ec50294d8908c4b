"""Execution backends: where a pool's tasks run when not in its own worker threads.

A pool's queue, rejection policies, timeouts, records, metrics and spans live in its
``PoolEngine`` whatever the pool's kind. The engine's worker threads take tasks from the
queue; for ``kind="thread"`` a worker runs the task itself, for other kinds it hands the
task to a ``Backend`` and waits for its end: the worker's own process for
``kind="process"``, the cluster for ``kind="dask"``. So live resize, pause, capacity and
the policies mean the same for every kind, and ``max_workers`` bounds the tasks in flight.

A backend is called by the engine only:

- ``start_worker`` in a new worker thread before its first task (start a process, say);
  raising breaks the pool as a failing ``initializer`` does, with ``broken_message``.
- ``run`` in that worker thread for each task: return the task's result or raise its
  exception. Raise ``TaskCancelledError`` for a task ended because ``interrupt`` was
  called on it (the engine counts it cancelled when its cancel was requested).
- ``interrupt`` from any thread: end the task the worker runs now, if the backend can
  (``on_run_timeout="kill"``); returns whether it could. Raise ``TaskInterruptedError``
  from ``run`` for the task so ended: it counts cancelled, the error kept as the reason.
- ``request_cancel(index, seq)`` when a cooperative cancel is requested for task ``seq``
  running on the worker with ``index``, so that ``poolwatch.cancel_requested()`` where it
  runs sees it. Called under the engine's lock: it must not block or call the engine.
- ``stop_worker`` in the worker thread as it leaves the pool.
- ``close`` once the pool has terminated and every worker has left.

Backends receive workers and work items but never change them: those belong to the
engine. Per-worker state a backend needs it keeps itself, keyed by ``Worker.index``
(unique among a pool's live workers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .work import WorkItem
    from .workers import Worker

__all__ = ["Backend"]


class Backend(Protocol):
    """Runs a pool's tasks somewhere other than its worker threads (see the module)."""

    kind: str
    broken_error: type[Exception]  # raised for queued and later work once broken
    broken_message: str

    def start_worker(self, worker: Worker) -> None: ...

    def run(self, worker: Worker, item: WorkItem) -> Any: ...

    def interrupt(self, worker: Worker) -> bool: ...

    def request_cancel(self, index: int, seq: int) -> None: ...

    def stop_worker(self, worker: Worker) -> None: ...

    def close(self) -> None: ...
