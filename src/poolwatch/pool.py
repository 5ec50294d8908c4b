"""``ManagedPool``: a ``concurrent.futures.Executor`` with live settings and full records.

The mechanics (worker loop, bookkeeping) live in ``_core.py``; this module holds what a
user calls: submitting, configuring, pausing, cancelling, shutting down and reading.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from time import monotonic
from typing import Any

from . import options
from ._core import PoolCore, _Worker
from .errors import RejectedError
from .future import TaskFuture
from .history import CANCELLED, QUEUED
from .records import PoolState, PoolStats, TaskInfo
from .tracing import capture_context
from .views import Builder, R, future_record, slot_record, task_info

__all__ = ["ManagedPool"]

_UNSET: Any = object()


class ManagedPool(PoolCore, Executor):
    """A named, observable thread pool. Create it with ``PoolManager.create_pool``.

    A drop-in ``concurrent.futures.Executor``: ``submit``, ``map``, ``shutdown`` and the
    context manager behave as ``ThreadPoolExecutor``'s. Every method is thread-safe.
    """

    @property
    def name(self) -> str:
        return self._name

    @property
    def state(self) -> PoolState:
        with self._lock:
            return self._state_locked()

    @property
    def rejection_policy(self) -> str:
        """What a full queue does now (``configure`` changes it): a cheap read."""
        return self._policy

    def __repr__(self) -> str:
        return f"<ManagedPool {self._name!r} max_workers={self._max_workers}>"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Schedule ``fn(*args, **kwargs)``; returns a ``TaskFuture``.

        When the queue is full the pool's rejection policy decides: ``abort`` raises
        ``RejectedError``, ``caller_runs`` runs the task in this thread, ``discard``
        returns a cancelled future, ``discard_oldest`` cancels the oldest queued task.
        After shutdown ``RejectedError`` (a ``RuntimeError``) is raised.
        """
        kind = self._kind_for(fn)
        now = monotonic()
        fut = TaskFuture(self, 0, fn, args, kwargs, kind, now)
        if self._tracing.tracer(now) is not None:
            fut._trace_ctx = capture_context()
        wake: _Worker | None = None
        notify: list[TaskFuture] | None = None  # made only when the queue is full
        with self._lock:
            if self._closing:
                self._rejected_shutdown += 1
                raise self._shutdown_error()
            if self._capacity is not None and self._full_locked():
                notify = []
                run_here = self._reject_locked(fut, now, notify)
            else:
                self._enqueue_locked(fut)
                if self._waking == 0:
                    wake = self._next_worker_locked()
        if notify is not None:
            for f in notify:
                f._mark_cancelled()
            if run_here:
                self._run_in_caller(fut)
        elif wake is not None:
            self._wake(wake)
        return fut

    def submit_many(
        self, fn: Callable[..., Any], arg_tuples: Iterable[tuple[Any, ...]]
    ) -> list[TaskFuture]:
        """Submit ``fn(*args)`` for each tuple, as one batch under one acquisition of the lock.

        With policy ``abort`` a batch that does not fit is refused whole (nothing is
        queued) with ``RejectedError``; other policies apply task by task. An empty batch
        returns ``[]``, full queue or not (after shutdown it raises, as ``submit`` does).
        """
        kind = self._kind_for(fn)
        # The tasks are submitted once the iterable is read (it may be a slow generator).
        batch = [tuple(args) for args in arg_tuples]
        now = monotonic()
        traced = self._tracing.tracer(now) is not None
        ctx = capture_context() if traced else None
        futs = [TaskFuture(self, 0, fn, args, {}, kind, now) for args in batch]
        if ctx is not None:
            for f in futs:
                f._trace_ctx = ctx
        run_here: list[TaskFuture] = []
        notify: list[TaskFuture] = []
        with self._lock:
            if self._closing:
                self._rejected_shutdown += len(futs)
                raise self._shutdown_error()
            if not futs:
                return futs
            if self._policy == "abort" and self._capacity is not None:
                room = self._room_locked()
                if room < len(futs):
                    self._rejected_full += len(futs)
                    raise self._full_error(f"a batch of {len(futs)} tasks does not fit")
            for fut in futs:
                if self._capacity is not None and self._full_locked():
                    if self._reject_locked(fut, now, notify):
                        run_here.append(fut)
                    continue
                self._enqueue_locked(fut)
            # A batch wakes as many workers as it needs at once, not one after another.
            woken = self._dispatch_locked(limit=len(futs))
        for w in woken:
            self._wake(w)
        for fut in notify:
            fut._mark_cancelled()
        for fut in run_here:
            self._run_in_caller(fut)
        return futs

    def _track_locked(self, fut: TaskFuture) -> None:
        """Accept a task: give it an id and a live record, and count it."""
        seq = self._next_seq
        self._next_seq = seq + 1
        fut._seq = seq
        self._submitted += 1
        self._live[seq] = fut

    def _enqueue_locked(self, fut: TaskFuture) -> None:
        self._track_locked(fut)
        self._queue.append(fut)
        self._queued += 1

    def _full_locked(self) -> bool:
        return self._room_locked() <= 0

    def _room_locked(self) -> int:
        """How many more tasks fit, counting tasks a free worker would start at once."""
        cap = self._capacity
        if cap is None:
            return 1 << 62
        room = cap - (self._queued - self._waking)
        if not self._paused:
            room += len(self._idle) + max(0, self._max_workers - self._nworkers)
        return room

    def _reject_locked(self, fut: TaskFuture, now: float, notify: list[TaskFuture]) -> bool:
        """Apply the rejection policy to ``fut``, the queue being full.

        Raises for ``abort``. Returns True when the caller must run the (already started)
        task itself; futures to resolve as cancelled once the lock is released go to
        ``notify``.
        """
        self._rejected_full += 1
        policy = self._policy
        if policy == "abort":
            raise self._full_error("")
        if policy == "caller_runs":
            self._track_locked(fut)
            caller = threading.current_thread()
            self._start_locked(fut, self._worker_slot(caller.name), now, queued=False)
            self._caller_runs[fut] = caller
            return True
        if policy == "discard_oldest":
            oldest = self._pop_oldest_locked()
            if oldest is not None:
                self._cancel_queued_locked(oldest, now)
                notify.append(oldest)
                self._enqueue_locked(fut)
                return False
        # discard (or nothing queued to drop): hand back a cancelled, untracked future
        fut._seq = self._next_seq  # ids stay unique, though no record is kept
        self._next_seq += 1
        fut._tstate = CANCELLED
        fut._finished = now
        fut._fn = fut._args = fut._kwargs = fut._trace_ctx = None
        fut._resolve_locked(CANCELLED, None)
        notify.append(fut)
        return False

    def _shutdown_error(self) -> RejectedError:
        return RejectedError(
            f"cannot schedule new futures after shutdown (pool {self._name!r} is "
            f"{self._state_locked().value})",
            pool=self._name,
            reason="shutdown",
        )

    def _full_error(self, detail: str) -> RejectedError:
        return RejectedError(
            f"pool {self._name!r} rejected the task: its queue is full ({self._queued} queued, "
            f"capacity {self._capacity}{'; ' + detail if detail else ''}); raise "
            "queue_capacity or max_workers, or choose another rejection_policy",
            pool=self._name,
            reason="queue_full",
        )

    def _cancel_future(self, fut: TaskFuture) -> bool:
        with self._lock:
            state = fut._tstate
            if state == QUEUED and fut._seq in self._live:
                self._tombstone_locked(fut, monotonic())
            elif state != CANCELLED:
                return False
        fut._mark_cancelled()
        return True

    def cancel(self, task_id: str) -> str:
        """Cancel a task by id.

        Returns ``"cancelled"`` (it was queued and is now cancelled), ``"requested"`` (it is
        running: a cooperative cancel was requested, see ``current_task()``) or
        ``"finished"`` (too late). ``KeyError`` if the id is not one of this pool's tasks.
        """
        uid, seq = self._manager._parse_id(task_id)
        if uid != self._uid:
            raise KeyError(task_id)
        with self._lock:
            task = self._live.get(seq)
            if task is None:
                if 0 < seq < self._next_seq:
                    return "finished"
                raise KeyError(task_id)
            now = monotonic()
            if task._tstate == QUEUED:
                self._tombstone_locked(task, now)
                result = "cancelled"
            else:
                if not task._cancel_requested:
                    task._cancel_requested = True
                    task._cancel_requested_at = now
                result = "requested"
        if result == "cancelled":
            task._mark_cancelled()
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
        woken: list[_Worker] = []
        with self._lock:
            if "queue_capacity" in changes:
                self._capacity = changes["queue_capacity"]
            if "rejection_policy" in changes:
                self._policy = changes["rejection_policy"]
            if "queue_timeout" in changes:
                self._queue_timeout = changes["queue_timeout"]
            if "run_timeout" in changes:
                self._run_timeout = changes["run_timeout"]
            if "max_workers" in changes:
                self._max_workers = changes["max_workers"]
                while self._nworkers > self._max_workers and self._idle:
                    w = self._idle.pop()
                    w.retire = True
                    self._nworkers -= 1
                    woken.append(w)
                woken += self._dispatch_locked(limit=self._max_workers)
        for w in woken:
            self._wake(w)
        if self._has_timeouts():
            self._manager._watch(self)

    def pause(self) -> None:
        """Stop starting tasks; the pool still accepts them up to capacity. Running tasks finish."""
        with self._lock:
            if not self._closing:
                self._paused = True

    def resume(self) -> None:
        """Start queued tasks again after ``pause()``."""
        with self._lock:
            self._paused = False
            woken = self._dispatch_locked(limit=self._max_workers)
        for w in woken:
            self._wake(w)

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
            self._refuse_waiting_for_itself("shutdown(wait=False)")
        self._shutdown(wait, cancel_futures, None)

    def _refuse_waiting_for_itself(self, instead: str) -> None:
        """Raise ``RuntimeError`` if the calling thread is one this pool's shutdown waits
        for: one of its workers, or a thread running a task ``caller_runs`` gave it."""
        me = threading.current_thread()
        with self._lock:
            own = me in self._threads or me in self._caller_runs.values()
        if own:
            raise RuntimeError(
                f"cannot wait for pool {self._name!r} to shut down from one of its own tasks "
                f"(or their done-callbacks): it would wait for itself; call {instead} there"
            )

    def _shutdown(self, wait: bool, cancel_futures: bool, deadline: float | None) -> bool:
        cancelled: list[TaskFuture] = []
        with self._lock:
            self._closing = True
            self._paused = False
            if cancel_futures:
                now = monotonic()
                while (task := self._pop_oldest_locked()) is not None:
                    self._cancel_queued_locked(task, now)
                    cancelled.append(task)
            # Every idle worker comes to drain the queue or to leave.
            woken, self._idle = self._idle, []
            for w in woken:
                w.woken = True
                self._waking += 1
            woken += self._dispatch_locked(limit=self._max_workers)
            self._maybe_terminated_locked()
        for task in cancelled:
            task._mark_cancelled()
        for w in woken:
            self._wake(w)
        if not wait:
            return self._terminated.is_set()
        return self._join(deadline)

    def _join(self, deadline: float | None) -> bool:
        me = threading.current_thread()
        timeout = None if deadline is None else max(0.0, deadline - monotonic())
        if not self._terminated.wait(timeout):
            return False
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            if t is not me:
                t.join(None if deadline is None else max(0.0, deadline - monotonic()))
        return True

    def _request_cancel_running(self) -> None:
        now = monotonic()
        with self._lock:
            running = [w.task for w in self._workers]
            running += self._caller_runs
            for task in running:
                if task is not None and not task._cancel_requested:
                    task._cancel_requested = True
                    task._cancel_requested_at = now

    def stats(self) -> PoolStats:
        """A consistent snapshot of the pool's settings, counts and load."""
        with self._lock:
            return self._stats_locked()

    def _task_id(self, seq: int) -> str:
        return f"{self._uid:x}-{seq:x}"

    def _info_of(self, fut: TaskFuture) -> TaskInfo:
        with self._lock:
            return future_record(self, fut, task_info)

    def _task_record(self, seq: int, build: Builder[R]) -> R | None:
        """The record of task ``seq`` of this pool, or ``None`` if unknown or evicted."""
        with self._lock:
            fut = self._live.get(seq)
            if fut is not None:
                return future_record(self, fut, build)
            slot = self._history.find(seq)
            return None if slot is None else slot_record(self, slot, build)
