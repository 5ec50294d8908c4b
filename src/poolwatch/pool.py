"""The pools users hold: ``PoolBase`` and one ``concurrent.futures`` executor per kind.

``PoolBase`` is what a user calls on any pool: submitting, configuring, pausing,
cancelling, shutting down, reading. Each kind adds it to the stdlib executor it stands
for, so ``isinstance`` checks keep working: ``ManagedPool`` is a ``ThreadPoolExecutor``
(kind ``"thread"``), ``ManagedProcessPool`` a ``ProcessPoolExecutor`` (kind
``"process"``); a kind with no stdlib twin derives from ``PoolBase`` alone (an
``Executor``). The manager's tables and the HTTP layer take any ``PoolBase``.

The pool's state and mechanics are its ``PoolEngine`` (``engine.py``), which its worker
threads hold instead of the pool itself, as ``ThreadPoolExecutor``'s workers hold only a
weak reference to theirs: a pool dropped without ``shutdown()`` is collected, and its
idle workers exit once the queue is drained.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from . import options
from .accounting import PoolSnapshot
from .engine import PoolEngine, parse_task_id
from .errors import RejectedError
from .future import TaskFuture
from .records import PoolState, PoolStats

__all__ = ["ManagedPool", "ManagedProcessPool", "PoolBase", "ProcessView"]

_UNSET: Any = object()


def _abandoned(engine: PoolEngine) -> None:
    """The pool was collected: shut its engine down as ``shutdown(wait=False)`` would.

    From a thread of its own: the collection may happen anywhere, even in one of the
    pool's workers while it holds the engine's lock (dropping a task's arguments that
    held the last reference), and taking that lock there would deadlock.
    """
    if engine.terminated:  # shut down already (the usual case): nothing to stop
        return
    stopper = threading.Thread(
        target=engine.shutdown, args=(False, False), name=f"{engine.name}-abandoned", daemon=True
    )
    with contextlib.suppress(RuntimeError):  # at interpreter exit the manager's hook stops it
        stopper.start()


class PoolBase(Executor):
    """A named, observable pool of any kind (see the module). Every method is thread-safe.

    ``submit``, ``map``, ``shutdown`` and the context manager behave as the stdlib's.
    """

    def __init__(self, engine: PoolEngine) -> None:
        # The stdlib executor's __init__ is not called: the engine replaces its machinery.
        self._engine = engine
        finalizer = weakref.finalize(self, _abandoned, engine)
        finalizer.atexit = False  # at exit the manager shuts every pool down itself

    @property
    def engine(self) -> PoolEngine:
        """The pool's engine (for its manager and the read side)."""
        return self._engine

    @property
    def name(self) -> str:
        return self._engine.name

    @property
    def kind(self) -> str:
        """Where tasks run: ``"thread"``, ``"process"``, ..."""
        return self._engine.kind

    @property
    def state(self) -> PoolState:
        return self._engine.state()

    @property
    def rejection_policy(self) -> str:
        """What a full queue does now (``configure`` changes it): a cheap read."""
        return self._engine.rejection_policy

    def __repr__(self) -> str:
        e = self._engine
        return f"<{type(self).__name__} {e.name!r} kind={e.kind} max_workers={e.max_workers}>"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Schedule ``fn(*args, **kwargs)``; returns a ``TaskFuture``.

        When the queue is full the pool's rejection policy decides: ``abort`` raises
        ``RejectedError``, ``caller_runs`` runs the task in this thread, ``discard``
        returns a cancelled future, ``discard_oldest`` cancels the oldest queued task.
        After shutdown ``RejectedError`` (a ``RuntimeError``) is raised; once an
        initializer failed, ``BrokenThreadPool``.
        """
        return self._engine.submit(fn, args, kwargs)

    def submit_many(
        self, fn: Callable[..., Any], arg_tuples: Iterable[tuple[Any, ...]]
    ) -> list[TaskFuture]:
        """Submit ``fn(*args)`` for each tuple, as one batch under one acquisition of the lock.

        With policy ``abort`` a batch that does not fit is refused whole (nothing is
        queued) with ``RejectedError``; other policies apply task by task. An empty batch
        returns ``[]``, full queue or not (after shutdown it raises, as ``submit`` does).
        """
        return self._engine.submit_many(fn, arg_tuples)

    def cancel(self, task_id: str) -> str:
        """Cancel a task by id.

        Returns ``"cancelled"`` (it was queued and is now cancelled), ``"requested"`` (it is
        running: a cooperative cancel was requested, see ``current_task()``) or
        ``"finished"`` (too late). ``KeyError`` if the id is not one of this pool's tasks.
        """
        ids = parse_task_id(task_id)
        result = None if ids is None or ids[0] != self._engine.uid else self._engine.cancel(ids[1])
        if result is None:
            raise KeyError(task_id)
        return result

    def configure(
        self,
        *,
        max_workers: int = _UNSET,
        queue_capacity: int | None = _UNSET,
        rejection_policy: str = _UNSET,
        queue_timeout: float | None = _UNSET,
        run_timeout: float | None = _UNSET,
    ) -> None:
        """Change settings at once, while tasks run. All are checked before any applies.

        Growing ``max_workers`` starts workers for waiting tasks; shrinking retires idle
        workers now and busy ones when their task ends (never interrupting it). A smaller
        ``queue_capacity`` keeps what is queued and rejects new tasks until there is room.
        """
        changes: dict[str, Any] = {}
        if max_workers is not _UNSET:
            changes["max_workers"] = options.check_max_workers(max_workers)
        if queue_capacity is not _UNSET:
            changes["queue_capacity"] = options.check_queue_capacity(queue_capacity)
        if rejection_policy is not _UNSET:
            changes["rejection_policy"] = options.check_rejection_policy(rejection_policy)
        if queue_timeout is not _UNSET:
            changes["queue_timeout"] = options.check_timeout("queue_timeout", queue_timeout)
        if run_timeout is not _UNSET:
            changes["run_timeout"] = options.check_timeout("run_timeout", run_timeout)
        self._configure_checked(changes)

    def _configure_checked(self, changes: dict[str, Any]) -> None:
        """Apply settings ``configure`` has checked."""
        self._engine.configure(changes)

    def pause(self) -> None:
        """Stop starting tasks; the pool still accepts them up to capacity. Running tasks finish."""
        self._engine.pause()

    def resume(self) -> None:
        """Start queued tasks again after ``pause()``."""
        self._engine.resume()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new tasks, run (or with ``cancel_futures``, cancel) queued ones, and stop.

        A paused pool is resumed so that its queue drains. With ``wait`` this returns when
        every worker has ended.

        Called with ``wait=True`` from one of this pool's own tasks, or from a done-callback
        running in one of its threads, it would wait for itself: it raises ``RuntimeError``
        and changes nothing (the pool keeps running); call ``shutdown(wait=False)`` there.
        ``ThreadPoolExecutor`` raises too, but only after it has begun shutting down.
        """
        if wait:
            self._engine.refuse_waiting_for_itself("shutdown(wait=False)")
        self._engine.shutdown(wait, cancel_futures)

    def stats(self) -> PoolStats:
        """A consistent snapshot of the pool's settings, counts and load."""
        return self._engine.stats()

    def metrics_snapshot(self) -> PoolSnapshot:
        """Everything the pool exports as metrics, at one instant."""
        return self._engine.metrics_snapshot()


class ManagedPool(PoolBase, ThreadPoolExecutor):
    """A named, observable thread pool (kind ``"thread"``). Create it with
    ``PoolManager.create_pool`` or ``poolwatch.ThreadPoolExecutor``.

    A real ``ThreadPoolExecutor``: ``isinstance`` checks and ``loop.set_default_executor``
    accept it.
    """

    # ThreadPoolExecutor's attributes that code and tests written for it read.
    @property
    def _max_workers(self) -> int:  # type: ignore[override]
        return self._engine.max_workers

    @property
    def _broken(self) -> str | bool:  # type: ignore[override]
        return self._engine.broken or False

    @property
    def _threads(self) -> set[Any]:  # type: ignore[override]
        return self._engine.threads()


class _Stopped:
    """What ``ProcessPoolExecutor``'s manager thread and call queue stand for to code that
    waits for them (``join()``, ``join_thread()``): the pool's machinery, stopped once
    the pool has terminated and its worker threads (which own the children) have ended."""

    __slots__ = ("_engine",)

    def __init__(self, engine: PoolEngine) -> None:
        self._engine = engine

    def join(self, timeout: float | None = None) -> None:
        self._engine.join(None if timeout is None else time.monotonic() + timeout)

    join_thread = join

    def is_alive(self) -> bool:
        return not self._engine.terminated


class ProcessView(Protocol):
    """What a process pool's backend shows of its children (for the stdlib's attributes)."""

    @property
    def mp_context(self) -> Any: ...

    def processes(self, *, settle: bool = True) -> dict[int, Any]: ...


class ManagedProcessPool(PoolBase, ProcessPoolExecutor):
    """A named, observable pool of worker processes (kind ``"process"``). Create it with
    ``PoolManager.create_pool(..., kind="process")`` or ``poolwatch.ProcessPoolExecutor``.

    A real ``ProcessPoolExecutor``: ``map(..., chunksize=)`` batches as the stdlib's does.
    """

    def __init__(self, engine: PoolEngine, children: ProcessView) -> None:
        super().__init__(engine)
        self._children = children

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """As ``PoolBase.submit``; a worker that cannot be started (no new thread, at
        interpreter exit say) raises ``BrokenProcessPool`` from that error, as the
        stdlib's process pool does (the task stays queued for the workers there are)."""
        try:
            return self._engine.submit(fn, args, kwargs)
        except RuntimeError as exc:
            if isinstance(exc, RejectedError | BrokenExecutor) or self._engine.state() in (
                PoolState.SHUTTING_DOWN,
                PoolState.TERMINATED,
            ):
                raise  # a refusal, in the stdlib's words
            raise BrokenProcessPool(f"the pool could not start a worker: {exc}") from exc

    def worker_pids(self) -> list[int]:
        """The process ids of the pool's worker processes now, started or starting (a
        crashed or killed one is replaced at once), in no particular order."""
        return list(self._children.processes(settle=False))

    # ProcessPoolExecutor's attributes that code and tests written for it read.
    @property
    def _max_workers(self) -> int:
        return self._engine.max_workers

    @property
    def _broken(self) -> str | bool:  # type: ignore[override]
        return self._engine.broken or False

    @property
    def _processes(self) -> dict[int, Any]:  # type: ignore[override]
        return self._children.processes()

    @property
    def _mp_context(self) -> Any:  # type: ignore[override]
        return self._children.mp_context

    @property
    def _executor_manager_thread(self) -> _Stopped:  # type: ignore[override]
        return _Stopped(self._engine)

    @property
    def _call_queue(self) -> _Stopped:
        return _Stopped(self._engine)
