"""``PoolEngine``: the state and mechanics of one pool, behind ``ManagedPool``.

The design, in short:

- One lock per pool guards everything that changes (queue, counters, workers, history).
  Correctness never leans on the GIL. On the hot paths (submit, a worker's step) a thread
  that finds the lock taken yields and retries before it sleeps on it, so that threads
  do not queue on the lock behind the GIL (``_acquire_contended``).
- A task is a ``WorkItem`` (what to run, and its record) and a ``TaskFuture``. Queued
  items wait in a deque; cancelling one marks it and leaves a tombstone that workers
  skip, so a cancel is O(1).
- Idle workers park on a lock of their own, and a submit wakes one of them when none is
  on its way already; a worker that finds more work behind its task wakes the next. With
  no idle worker and room to grow, a submit starts a thread, as ``ThreadPoolExecutor``
  does. A worker that finishes a task records it and takes the next one in a single
  acquisition of the lock, and resolves the finished future after releasing it.
- Counts and histograms are plain numbers updated under that same lock; the metrics
  collector reads them at scrape time.
- The engine is separate from the public ``ManagedPool`` so that its workers never keep
  that object alive: an executor dropped without ``shutdown()`` is collected, and its
  engine then shuts down as with ``shutdown(wait=False)`` (queued work still runs).
"""

from __future__ import annotations

import logging
import re
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from concurrent.futures.thread import BrokenThreadPool
from dataclasses import dataclass
from time import monotonic, sleep
from typing import Any

from .accounting import BUCKETS, Histogram, PoolSnapshot, TaskKind, TaskKinds
from .backend import Backend
from .backlog import Backlog
from .errors import RejectedError, TaskCancelledError, TaskInterruptedError
from .future import TaskFuture
from .history import History, error_info
from .records import PoolState, PoolStats, TaskInfo
from .states import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from .tracing import Tracing, capture_context
from .views import PoolReader, find_info
from .work import CURRENT, Running, WorkItem
from .workers import Worker, WorkerSet

__all__ = ["EngineServices", "PoolEngine", "interpreter_exiting", "parse_task_id"]

log = logging.getLogger("poolwatch")
# Initializer failures are logged where ThreadPoolExecutor logs them.
futures_log = logging.getLogger("concurrent.futures")

_ID_RE = re.compile(r"^([0-9a-f]{1,12})-([0-9a-f]{1,16})$")
_BROKEN = "A thread initializer failed, the thread pool is not usable anymore"
_owner = threading.local()  # .engine: the engine whose worker (or caller_runs task) this is
_interpreter_exiting = False
_SPINS = 64  # yields before sleeping on a contended pool lock (a few to 60 are typical)
_SPIN_SECONDS = 0.0005  # nor longer than this: a busy machine may run others on a yield

try:
    from os import sched_yield as _yield_cpu
except ImportError:  # not on every platform: a zero sleep also lets other threads run

    def _yield_cpu() -> None:
        sleep(0)


def _acquire_contended(lock: threading.Lock) -> None:
    """Take ``lock`` after a non-blocking try failed, without sleeping on it at first.

    Under the GIL, a running thread that finds the pool's lock taken has met a holder
    that lost the GIL while it held it. A thread that sleeps on the lock is woken when it
    is released and takes it before it has the GIL back; the thread still running then
    sleeps on the lock in turn, and the two trade places through the kernel on every
    task (a convoy). Yielding the CPU (and the GIL) lets the holder finish and release
    the lock instead, and the lock is then taken by a thread that is running. After a
    few tries, or once a yield gave the CPU to other processes for long, the thread
    sleeps on the lock. Without a GIL this is a bounded spin before blocking: the lock
    alone decides who enters, either way.
    """
    give_up = monotonic() + _SPIN_SECONDS
    for _ in range(_SPINS):
        _yield_cpu()  # releases the GIL, so the holder can run
        if lock.acquire(False):
            return
        if monotonic() > give_up:
            break
    lock.acquire()


def parse_task_id(task_id: object) -> tuple[int, int] | None:
    """(pool number, task number) of a task id, or ``None`` if it is not one."""
    m = _ID_RE.fullmatch(task_id) if isinstance(task_id, str) else None
    return None if m is None else (int(m.group(1), 16), int(m.group(2), 16))


def interpreter_exiting() -> None:
    """From now on, refusals say the interpreter is shutting down (as the stdlib's do)."""
    global _interpreter_exiting
    _interpreter_exiting = True


@dataclass(frozen=True, slots=True)
class EngineServices:
    """What a pool needs from the manager that owns it, handed down as plain callables."""

    tracing: Tracing
    wall_offset: float  # epoch = monotonic + wall_offset
    watch: Callable[[PoolEngine], None]  # have the timeout monitor check this pool
    # (task id, pool, thread ident, thread name) -> the thread's stack now
    capture_stack: Callable[[str, str, int, str], Any] | None = None


class PoolEngine:
    """The state and mechanics of one pool. Thread-safe; see the module's notes."""

    def __init__(
        self,
        uid: int,
        name: str,
        services: EngineServices,
        *,
        max_workers: int,
        thread_name_prefix: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        queue_capacity: int | None,
        rejection_policy: str,
        queue_timeout: float | None,
        run_timeout: float | None,
        history_size: int,
        task_label_limit: int,
        kind: str = "thread",
        backend: Backend | None = None,
        on_run_timeout: str = "request",
    ) -> None:
        self.uid = uid
        self.name = name
        self.kind = kind
        self._backend = backend  # None: workers run tasks themselves (kind "thread")
        self._kill_overdue = on_run_timeout == "kill" and backend is not None
        self._services = services
        self._tracing = services.tracing
        self._lock = threading.Lock()
        self._initializer = initializer
        self._initargs = initargs
        # settings
        self._max_workers = max_workers
        self._capacity = queue_capacity
        self._policy = rejection_policy
        self._queue_timeout = queue_timeout
        self._run_timeout = run_timeout
        # the queue and the tasks not finished yet
        self._backlog = Backlog()
        self._live: dict[int, WorkItem] = {}
        self._next_seq = 1
        self._workers = WorkerSet(thread_name_prefix or name)
        # Tasks the caller_runs policy started, and the threads running them.
        self._caller_runs: dict[WorkItem, threading.Thread] = {}
        self._active = 0
        # lifecycle
        self._paused = False
        self._closing = False
        self._broken: str | None = None
        self._terminated = threading.Event()
        self._gone: list[threading.Thread] = []  # workers that left while shutting down
        # Where refusals after the pool ended are counted once its family took its counts.
        self._late_refusals: Callable[[int], None] | None = None
        self._zero_counts()
        self._kinds = TaskKinds(task_label_limit)
        self._history = History(history_size)
        self._reader = self._make_reader()

    def _zero_counts(self) -> None:
        self._submitted = self._succeeded = self._failed = self._cancelled = 0
        self._rejected_full = self._rejected_shutdown = 0
        self._timeouts_queue = self._timeouts_run = self._overdue = 0
        self._queue_wait = Histogram()

    def _make_reader(self) -> PoolReader:
        return PoolReader(
            self.name, self._live, self._history, self._kinds, self._workers,
            self._services.wall_offset, self.task_id,
        )  # fmt: skip

    # -- what futures and the read side use ---------------------------------------------

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    @property
    def reader(self) -> PoolReader:
        """The containers the read side reads (under ``lock``)."""
        return self._reader

    def task_id(self, seq: int) -> str:
        return f"{self.uid:x}-{seq:x}"

    def task_info(self, seq: int) -> TaskInfo:
        info = find_info(self, seq)
        if info is None:
            raise KeyError(self.task_id(seq))
        return info

    # -- state ---------------------------------------------------------------------------

    @property
    def broken(self) -> str | None:
        """Why the pool is broken (an initializer failed), else ``None``."""
        return self._broken

    @property
    def max_workers(self) -> int:
        return self._max_workers

    @property
    def rejection_policy(self) -> str:
        return self._policy

    @property
    def terminated(self) -> bool:
        return self._terminated.is_set()

    def state(self) -> PoolState:
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> PoolState:
        if self._closing:
            return PoolState.TERMINATED if self._terminated.is_set() else PoolState.SHUTTING_DOWN
        return PoolState.PAUSED if self._paused else PoolState.RUNNING

    def threads(self) -> set[threading.Thread]:
        """The worker threads started and not yet gone."""
        with self._lock:
            return self._workers.threads()

    # -- submitting ----------------------------------------------------------------------

    def _kind_for(self, fn: Callable[..., Any]) -> TaskKind:
        kind = self._kinds.lookup(fn)
        if kind is None:
            with self._lock:
                kind = self._kinds.add(fn)
            if kind.run_timeout is not None:
                self._services.watch(self)
        return kind

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
               ) -> TaskFuture:  # fmt: skip
        kind = self._kinds.lookup(fn) or self._kind_for(fn)
        now = monotonic()
        future = TaskFuture(self, 0)
        item = WorkItem(future, fn, args, kwargs, kind, now)
        if self._tracing.tracer(now) is not None:
            item.set_trace_context(capture_context())
        # acquire/release rather than ``with``: on the hot path the difference shows.
        lock = self._lock
        if not lock.acquire(False):
            _acquire_contended(lock)
        try:
            if self._closing or self._capacity is not None:
                wake, notify, run_here = self._admit_locked(item, now)
            else:
                # The common case, inline: the shorter the hold, the less often another
                # thread finds the lock taken (and pays a sleep and a GIL hand-over).
                seq = self._next_seq
                self._next_seq = seq + 1
                item.seq = seq
                future.number_locked(seq)
                self._submitted += 1
                self._live[seq] = item
                self._backlog.push(item)
                notify, run_here = None, False
                wake = None if self._backlog.count <= self._workers.waking else self._pick_locked()
        finally:
            lock.release()
        if notify is not None:
            self._settle_cancelled(notify)
            if run_here:
                self._run_in_caller(item)
        elif wake is not None:
            self._wake(wake, raise_errors=True)
        return future

    def _admit_locked(self, item: WorkItem, now: float
                      ) -> tuple[Worker | None, list[WorkItem] | None, bool]:  # fmt: skip
        """``submit`` when shutting down or with a bounded queue: (worker to wake, items
        to resolve as cancelled or ``None``, whether the caller runs the task itself)."""
        if self._closing:
            self._count_refused_locked(1)
            raise self._refusal_locked()
        if self._room_locked() <= 0:
            notify: list[WorkItem] = []
            return None, notify, self._reject_locked(item, now, notify)
        self._enqueue_locked(item)
        return self._pick_locked(), None, False

    def submit_many(self, fn: Callable[..., Any], arg_tuples: Iterable[tuple[Any, ...]]
                    ) -> list[TaskFuture]:  # fmt: skip
        kind = self._kind_for(fn)
        # The tasks are submitted once the iterable is read (it may be a slow generator).
        batch = [tuple(args) for args in arg_tuples]
        now = monotonic()
        ctx = capture_context() if self._tracing.tracer(now) is not None else None
        no_kwargs: dict[str, Any] = {}  # shared: calls unpack it, nothing changes it
        items = [WorkItem(TaskFuture(self, 0), fn, args, no_kwargs, kind, now) for args in batch]
        if ctx is not None:
            for item in items:
                item.set_trace_context(ctx)
        run_here: list[WorkItem] = []
        notify: list[WorkItem] = []
        with self._lock:
            if self._closing:
                self._count_refused_locked(len(items))
                raise self._refusal_locked()
            if not items:
                return []
            abort = self._policy == "abort" and self._capacity is not None
            if abort and self._room_locked() < len(items):
                self._rejected_full += len(items)
                raise self._full_error(f"a batch of {len(items)} tasks does not fit")
            if self._capacity is None:
                self._enqueue_batch_locked(items)
            for item in items if self._capacity is not None else ():
                if self._room_locked() <= 0:
                    if self._reject_locked(item, now, notify):
                        run_here.append(item)
                    continue
                self._enqueue_locked(item)
            # A batch wakes as many workers as it needs at once, not one after another.
            woken = self._dispatch_locked(limit=len(items))
        for w in woken:
            self._wake(w)
        self._settle_cancelled(notify)
        for item in run_here:
            self._run_in_caller(item)
        return [item.future for item in items]

    def _track_locked(self, item: WorkItem) -> None:
        """Accept a task: give it an id and a live record, and count it."""
        seq = self._next_seq
        self._next_seq = seq + 1
        item.seq = seq
        item.future.number_locked(seq)
        self._submitted += 1
        self._live[seq] = item

    def _enqueue_locked(self, item: WorkItem) -> None:
        self._track_locked(item)
        self._backlog.push(item)

    def _enqueue_batch_locked(self, items: list[WorkItem]) -> None:
        """``_enqueue_locked`` for each of ``items``, in one pass (an unbounded queue)."""
        seq = self._next_seq
        live = self._live
        for item in items:
            item.seq = seq
            item.future.number_locked(seq)
            live[seq] = item
            seq += 1
        self._next_seq = seq
        self._submitted += len(items)
        self._backlog.push_all(items)

    def _room_locked(self) -> int:
        """How many more tasks fit, counting tasks a free worker would start at once."""
        cap = self._capacity
        if cap is None:
            return 1 << 62
        ws = self._workers
        room = cap - (self._backlog.count - ws.waking)
        if not self._paused:
            room += len(ws.idle) + max(0, self._max_workers - ws.count)
        return room

    def _reject_locked(self, item: WorkItem, now: float, notify: list[WorkItem]) -> bool:
        """Apply the rejection policy to ``item``, the queue being full.

        Raises for ``abort``. Returns True when the caller must run the (already started)
        task itself; items to resolve as cancelled once the lock is released go to
        ``notify``.
        """
        self._rejected_full += 1
        policy = self._policy
        if policy == "abort":
            raise self._full_error("")
        if policy == "caller_runs":
            self._track_locked(item)
            caller = threading.current_thread()
            self._start_locked(item, self._workers.caller_index(caller.name), now)
            self._caller_runs[item] = caller
            return True
        if policy == "discard_oldest":
            oldest = self._backlog.pop()
            if oldest is not None:
                self._cancel_queued_locked(oldest, now)
                notify.append(oldest)
                self._enqueue_locked(item)
                return False
        # discard (or nothing queued to drop): hand back a cancelled, untracked future
        seq = self._next_seq  # ids stay unique, though no record is kept
        self._next_seq += 1
        item.future.number_locked(seq)
        item.state = CANCELLED
        item.release()
        if not item.future.settle_locked(CANCELLED, None):
            notify.append(item)
        return False

    def _count_refused_locked(self, n: int) -> None:
        late = self._late_refusals
        if late is None:
            self._rejected_shutdown += n
        else:  # the family holds this pool's counts now (see ``final_snapshot``)
            late(n)

    def _refusal_locked(self) -> Exception:
        if self._broken is not None:
            backend = self._backend
            return (BrokenThreadPool if backend is None else backend.broken_error)(self._broken)
        if _interpreter_exiting:  # as the stdlib words it, for code that matches on it
            return RuntimeError("cannot schedule new futures after interpreter shutdown")
        after = "shutdown"
        return RejectedError(
            f"cannot schedule new futures after {after} (pool {self.name!r} is "
            f"{self._state_locked().value})",
            pool=self.name,
            reason="shutdown",
        )

    def _full_error(self, detail: str) -> RejectedError:
        return RejectedError(
            f"pool {self.name!r} rejected the task: its queue is full "
            f"({self._backlog.count} queued, capacity {self._capacity}"
            f"{'; ' + detail if detail else ''}); raise "
            "queue_capacity or max_workers, or choose another rejection_policy",
            pool=self.name,
            reason="queue_full",
        )

    @staticmethod
    def _settle_cancelled(items: list[WorkItem]) -> None:
        for item in items:
            item.future.settle(CANCELLED, None)

    # -- workers -------------------------------------------------------------------------

    def _pick_locked(self) -> Worker | None:
        """The worker a submit should wake or start for the task it queued, if any.

        An idle worker is woken only when none is on its way already (waking one thread
        per task would cost a futex wake and a GIL handover on every submit); a thread is
        started whenever none is idle and the pool may grow, as ``ThreadPoolExecutor``
        does, so a burst of blocking tasks gets its threads at once.
        """
        ws = self._workers
        if self._paused or self._backlog.count <= ws.waking:
            return None
        if ws.idle:
            return ws.wake_idle() if ws.waking == 0 else None
        if ws.count < self._max_workers:
            return ws.reserve()
        return None

    def _next_worker_locked(self) -> Worker | None:
        """An idle worker, or a new one if allowed, to come for queued work."""
        if self._paused:
            return None
        w = self._workers.wake_idle()
        if w is None and self._workers.count < self._max_workers:
            w = self._workers.reserve()
        return w

    def _dispatch_locked(self, limit: int) -> list[Worker]:
        """Choose up to ``limit`` workers for queued tasks nobody is coming for; the caller
        wakes them (``_wake``) once the lock is released."""
        chosen: list[Worker] = []
        while len(chosen) < limit and self._backlog.count > self._workers.waking:
            w = self._next_worker_locked()
            if w is None:
                break
            chosen.append(w)
        return chosen

    def _wake(self, w: Worker, *, raise_errors: bool = False) -> None:
        """Wake or start a worker chosen under the lock (call without it).

        A thread that cannot start (thread limits, interpreter shutdown) is logged; when
        the pool has no worker left, what is queued fails with that error rather than
        wait for nobody. ``raise_errors`` (a submit) re-raises it, as the stdlib does.
        """
        if w.thread is not None:
            w.wake.release()
            return
        t = threading.Thread(target=self._work, args=(w,), name=w.name)
        with self._lock:
            w.thread = t
        try:
            t.start()
        except RuntimeError as exc:
            log.exception("pool %r could not start a worker thread", self.name)
            failed: list[WorkItem] = []
            with self._lock:
                w.thread = None
                self._workers.arrived(w)
                self._leave_locked(w, counted=not w.retire)
                if self._workers.count == 0:
                    now = monotonic()
                    while (item := self._backlog.pop()) is not None:
                        if not self._cancel_queued_locked(item, now, exc):
                            failed.append(item)
                    self._maybe_terminated_locked()
            for item in failed:
                item.future.settle(FAILED, exc)
            if raise_errors:
                raise

    def _initialize(self, w: Worker) -> bool:
        """Run the pool's initializer in a new worker; on failure break the pool."""
        initializer = self._initializer
        try:
            if initializer is not None:
                initializer(*self._initargs)
        except BaseException:
            futures_log.critical("Exception in initializer:", exc_info=True)
            self._break(w)
            return False
        return True

    def _set_up(self, w: Worker) -> bool:
        """A new worker's initializer, then its backend's start; False if either failed
        (the pool is broken then)."""
        if self._initializer is not None and not self._initialize(w):
            return False
        return self._backend is None or self._start_backend(w)

    def _start_backend(self, w: Worker) -> bool:
        """Have the backend set up a new worker (its process, say); on failure break the
        pool, as a failing initializer does."""
        assert self._backend is not None
        try:
            self._backend.start_worker(w)
        except BaseException:
            futures_log.critical("Exception in initializer:", exc_info=True)
            self._break(w)
            return False
        return True

    def broken_error(self) -> Exception:
        """The error queued and later tasks get once the pool is broken."""
        backend = self._backend
        if backend is None:
            return BrokenThreadPool(_BROKEN)
        return backend.broken_error(backend.broken_message)

    def _break(self, w: Worker) -> None:
        """An initializer failed: fail every queued task, refuse new ones, stop."""
        failed: list[WorkItem] = []
        error = self.broken_error()
        with self._lock:
            self._broken = str(error)
            self._closing = True
            now = monotonic()
            while (item := self._backlog.pop()) is not None:
                if not self._cancel_queued_locked(item, now, error):
                    failed.append(item)
            woken = self._wake_all_idle_locked()
            self._workers.arrived(w)
            self._leave_locked(w, counted=True)
        for item in failed:
            item.future.settle(FAILED, error)
        for other in woken:
            self._wake(other)
        self._close_backend_if_terminated()

    def _work(self, w: Worker) -> None:
        """A worker thread's loop: take a task, run it, record it, repeat."""
        _owner.engine = self
        CURRENT.holder = w  # current_task() here: the task w runs (w.item)
        w.ident = threading.get_ident()
        if not self._set_up(w):
            return
        done: WorkItem | None = None
        outcome, payload = SUCCEEDED, None
        while True:
            item, park, leave, resolved, chain = self._next_locked(w, done, outcome, payload)
            if done is not None:
                if not resolved:
                    # Callbacks run here; TaskFuture logs whatever they raise. This worker
                    # is already booked idle or busy: nothing may stop its loop.
                    try:
                        done.future.settle(outcome, payload)
                    except BaseException:
                        log.exception("resolving task %s failed", done.task_id)
                done = payload = None
            if chain is not None:
                self._wake(chain)
            if leave:
                if self._backend is not None:
                    self._stop_backend(w)
                return
            if park:
                w.wake.acquire()
                continue
            if item is None:  # for the type checker: not parked and not leaving
                continue
            try:
                outcome, payload = self._execute(item, w.name, w)
            except BaseException as exc:  # not the task's (_execute catches those)
                outcome, payload = self._engine_failed(item, exc)
            done = item

    def _next_locked(
        self, w: Worker, done: WorkItem | None, outcome: int, payload: Any
    ) -> tuple[WorkItem | None, bool, bool, bool, Worker | None]:
        """Record ``done`` and choose the worker's next step in one hold of the lock:
        (next item, park, leave, whether ``done`` is resolved, a worker to wake)."""
        lock = self._lock
        if not lock.acquire(False):
            _acquire_contended(lock)
        try:
            now = monotonic()
            resolved = False
            if done is not None:
                resolved = self._finish_locked(done, outcome, payload, now)
                w.item = None
            ws = self._workers
            if w.woken:
                ws.arrived(w)
            item: WorkItem | None = None
            park = leave = False
            if w.retire:
                leave = True
            elif ws.count > self._max_workers:
                ws.count -= 1
                w.retire = leave = True
            elif self._paused and not self._closing:
                park = True
            else:
                item = self._backlog.pop()
                if item is not None:
                    self._start_locked(item, w.index, now)
                    w.item = item
                elif self._closing:
                    leave = True
                else:
                    park = True
            if park:
                ws.idle.append(w)
            if leave:
                self._leave_locked(w, counted=not w.retire)
            chain = None
            if (not park and self._backlog.count > ws.waking == 0
                    and (ws.idle or ws.count < self._max_workers)):  # fmt: skip
                # More work behind this task (or a worker leaving): send the next worker.
                chain = self._next_worker_locked()
        finally:
            lock.release()
        return item, park, leave, resolved, chain

    def _start_locked(self, item: WorkItem, worker: int, now: float) -> None:
        item.state = RUNNING
        item.started = now
        item.worker = worker
        item.future.start_locked()
        self._active += 1
        wait = now - item.submitted
        h = self._queue_wait
        h.counts[bisect_left(BUCKETS, wait)] += 1
        h.sum += wait

    def _stop_backend(self, w: Worker) -> None:
        """A worker leaves: the backend lets go of what it kept for it."""
        assert self._backend is not None
        try:
            self._backend.stop_worker(w)
        except Exception:
            log.exception("pool %r failed to stop worker %s", self.name, w.name)
        self._close_backend_if_terminated()

    def _close_backend_if_terminated(self) -> None:
        """Once terminated, the backend releases what it holds (it may be told twice)."""
        if self._backend is not None and self._terminated.is_set():
            try:
                self._backend.close()
            except Exception:
                log.exception("pool %r failed to close its %s backend", self.name, self.kind)

    def _execute(self, item: WorkItem, thread: str, w: Worker | None = None) -> tuple[int, Any]:
        """Run a started task (on the backend when a worker ``w`` of a pool with one runs
        it); returns (outcome, result or exception). The thread's ``current_task()`` is
        ``item`` already (see ``CURRENT``)."""
        span = None
        traced = item.marked and item.trace_ctx is not None
        tracer = self._tracing.tracer(item.started) if traced else None
        if tracer is not None:
            opened = self._tracing.start(
                tracer, item, self.name, thread, item.started - item.submitted
            )
            if opened is not None:
                span, token = opened
        outcome = SUCCEEDED
        try:
            if w is None or self._backend is None:
                payload = item.fn(*item.args, **item.kwargs)
            else:
                payload = self._backend.run(w, item)
        except TaskCancelledError as exc:
            outcome = CANCELLED if item.cancel_requested else FAILED
            payload = exc
        except BaseException as exc:
            outcome = FAILED
            payload = exc
        if outcome == FAILED or (
            outcome == CANCELLED and isinstance(payload, TaskInterruptedError)
        ):
            item.set_error(error_info(payload))  # a task interrupted keeps why in its record
        if span is not None:
            failed = payload if outcome == FAILED else None
            item.set_trace_id(self._tracing.end(span, token, item, failed, outcome == CANCELLED))
        return outcome, payload

    def _engine_failed(self, item: WorkItem, exc: BaseException) -> tuple[int, Any]:
        """Outcome of a task whose run or recording failed inside poolwatch (tracing, say):
        it fails with that error, so that its future is resolved all the same."""
        log.exception("pool %r failed to run or record task %s", self.name, item.task_id)
        item.set_error(error_info(exc))
        return FAILED, exc

    def _run_in_caller(self, item: WorkItem) -> None:
        """Run a task the ``caller_runs`` policy started in the submitting thread."""
        previous = getattr(_owner, "engine", None)
        holder = getattr(CURRENT, "holder", None)
        _owner.engine = self
        CURRENT.holder = Running(item)
        try:
            try:
                outcome, payload = self._execute(item, threading.current_thread().name)
            except BaseException as exc:  # not the task's (_execute catches those)
                outcome, payload = self._engine_failed(item, exc)
            finally:
                CURRENT.holder = holder
            with self._lock:
                del self._caller_runs[item]
                resolved = self._finish_locked(item, outcome, payload, monotonic())
                self._maybe_terminated_locked()
            if not resolved:
                item.future.settle(outcome, payload)
        finally:
            _owner.engine = previous

    def _finish_locked(self, item: WorkItem, outcome: int, payload: Any, now: float) -> bool:
        """Record a task's end; resolves its future too when nobody watches it (returns
        True), else the caller resolves it once the lock is released."""
        item.state = outcome
        item.finished = now
        self._active -= 1
        stats = item.kind.stats
        if outcome == SUCCEEDED:
            self._succeeded += 1
            stats.succeeded += 1
        elif outcome == FAILED:
            self._failed += 1
            stats.failed += 1
        else:
            self._cancelled += 1
            stats.cancelled += 1
        started = item.started
        run = now - started
        h = stats.run
        i = bisect_left(BUCKETS, run)
        h.counts[i] += 1
        h.sum += run
        seq = item.seq
        if item.marked:
            self._finish_marked_locked(item, outcome, now, run, i)
        else:
            self._history.append(seq, item.kind.index, outcome, item.worker, item.submitted,
                                 started, now, 0, False, None)  # fmt: skip
            item.fn = item.args = item.kwargs = None  # item.release(), inline for a plain task
        del self._live[seq]
        return item.future.settle_locked(outcome, payload)

    def _finish_marked_locked(self, item: WorkItem, outcome: int, now: float, run: float,
                              bucket: int) -> None:  # fmt: skip
        """``_finish_locked`` for a task with a rare field set (traced, failed, overdue,
        asked to stop)."""
        trace_id = item.trace_id
        if trace_id:
            exemplar = (trace_id, run, now + self._services.wall_offset)
            item.kind.stats.run.exemplars[bucket] = exemplar
        if item.overdue_at:
            self._overdue -= 1
        self._history.append(
            item.seq, item.kind.index, outcome, item.worker, item.submitted, item.started,
            now, trace_id, item.cancel_requested, item.error, item.overdue_stack,
        )  # fmt: skip
        item.release()

    # -- cancelling ----------------------------------------------------------------------

    def _cancel_queued_locked(
        self, item: WorkItem, now: float, failure: BaseException | None = None
    ) -> bool:
        """Record a queued task as cancelled, or failed with ``failure`` without running
        (it is out of the queue or a tombstone); returns whether its future is resolved
        already (see ``_finish_locked``)."""
        outcome = CANCELLED if failure is None else FAILED
        item.state = outcome
        item.finished = now
        if failure is None:
            self._cancelled += 1
            item.kind.stats.cancelled += 1
        else:
            item.set_error(error_info(failure))
            self._failed += 1
            item.kind.stats.failed += 1
        self._history.append(
            item.seq, item.kind.index, outcome, -1, item.submitted, float("nan"), now, 0,
            item.cancel_requested, item.error,
        )  # fmt: skip
        del self._live[item.seq]
        item.release()
        return item.future.settle_locked(outcome, failure)

    def _tombstone_locked(self, item: WorkItem, now: float) -> bool:
        """Cancel a queued task in place; the worker that meets it in the deque skips it."""
        resolved = self._cancel_queued_locked(item, now)
        self._backlog.tombstone()
        return resolved

    def cancel_future(self, seq: int, request_running: bool) -> bool:
        """``TaskFuture.cancel()``, under one hold of the lock: cancel task ``seq`` if it
        is queued (``True``); if it runs, ``False``, and with ``request_running`` its
        cooperative cancel is requested (asyncio cancelling the coroutine awaiting it)."""
        with self._lock:
            item = self._live.get(seq)
            if item is None:
                return False
            if item.state != QUEUED:
                if request_running:
                    self._request_cancel_locked(item, monotonic())
                return False
            resolved = self._tombstone_locked(item, monotonic())
        if not resolved:
            item.future.settle(CANCELLED, None)
        return True

    def cancel(self, seq: int) -> str | None:
        """Cancel task ``seq``: "cancelled", "requested", "finished", or ``None`` if unknown."""
        with self._lock:
            item = self._live.get(seq)
            if item is None:
                return "finished" if 0 < seq < self._next_seq else None
            now = monotonic()
            if item.state == QUEUED:
                resolved = self._tombstone_locked(item, now)
                result = "cancelled"
            else:
                self._request_cancel_locked(item, now)
                resolved, result = True, "requested"
        if not resolved:
            item.future.settle(CANCELLED, None)
        return result

    def request_cancel_running(self) -> None:
        """Ask every running task to stop (cooperatively)."""
        now = monotonic()
        with self._lock:
            for item in self._running_locked():
                self._request_cancel_locked(item, now)

    def _request_cancel_locked(self, item: WorkItem, now: float) -> None:
        """Ask a running task to stop, and tell the backend running it (if any)."""
        item.request_cancel(now)
        if self._backend is not None and item.worker >= 0:
            self._backend.request_cancel(item.worker, item.seq)

    def _running_locked(self) -> list[WorkItem]:
        running = [w.item for w in self._workers.all if isinstance(w.item, WorkItem)]
        running += self._caller_runs
        return running

    # -- settings ------------------------------------------------------------------------

    def configure(self, changes: dict[str, Any]) -> None:
        """Apply settings already checked (``options.check_settings``) at once."""
        woken: list[Worker] = []
        with self._lock:
            self._capacity = changes.get("queue_capacity", self._capacity)
            self._policy = changes.get("rejection_policy", self._policy)
            self._queue_timeout = changes.get("queue_timeout", self._queue_timeout)
            self._run_timeout = changes.get("run_timeout", self._run_timeout)
            if "max_workers" in changes:
                self._max_workers = changes["max_workers"]
                woken = self._workers.retire_idle(keep=self._max_workers)
                woken += self._dispatch_locked(limit=self._max_workers)
        for w in woken:
            self._wake(w)
        if self.has_timeouts():
            self._services.watch(self)

    def pause(self) -> None:
        with self._lock:
            if not self._closing:
                self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            woken = self._dispatch_locked(limit=self._max_workers)
        for w in woken:
            self._wake(w)

    # -- shutting down -------------------------------------------------------------------

    def refuse_waiting_for_itself(self, instead: str) -> None:
        """Raise ``RuntimeError`` if the calling thread is one this pool's shutdown waits
        for: one of its workers, or a thread running a task ``caller_runs`` gave it."""
        if getattr(_owner, "engine", None) is self:
            raise RuntimeError(
                f"cannot wait for pool {self.name!r} to shut down from one of its own tasks "
                f"(or their done-callbacks): it would wait for itself; call {instead} there"
            )

    def _wake_all_idle_locked(self) -> list[Worker]:
        woken, self._workers.idle = self._workers.idle, []
        for w in woken:
            w.woken = True
            self._workers.waking += 1
        return woken

    def shutdown(self, wait: bool, cancel_futures: bool, deadline: float | None = None) -> bool:
        """Refuse new tasks, run (or cancel) queued ones, stop; True once terminated."""
        cancelled: list[WorkItem] = []
        with self._lock:
            self._closing = True
            self._paused = False
            if cancel_futures:
                now = monotonic()
                while (item := self._backlog.pop()) is not None:
                    if not self._cancel_queued_locked(item, now):
                        cancelled.append(item)
            # Every idle worker comes to drain the queue or to leave.
            woken = self._wake_all_idle_locked()
            woken += self._dispatch_locked(limit=self._max_workers)
            self._maybe_terminated_locked()
        self._settle_cancelled(cancelled)
        for w in woken:
            self._wake(w)
        self._close_backend_if_terminated()
        if not wait:
            return self._terminated.is_set()
        return self.join(deadline)

    def join(self, deadline: float | None) -> bool:
        """Wait until terminated and its threads have ended; False if ``deadline`` passed."""
        timeout = None if deadline is None else max(0.0, deadline - monotonic())
        if not self._terminated.wait(timeout):
            return False
        me = threading.current_thread()
        with self._lock:
            threads = self._workers.threads() | set(self._gone)
        for t in threads:
            if t is not me:
                t.join(None if deadline is None else max(0.0, deadline - monotonic()))
        return True

    def _leave_locked(self, w: Worker, *, counted: bool) -> None:
        self._workers.leave(w, counted=counted)
        if self._closing and w.thread is not None:
            self._gone.append(w.thread)  # joined by shutdown(wait=True); bounded by the pool
        self._maybe_terminated_locked()

    def _maybe_terminated_locked(self) -> None:
        if (self._closing and self._workers.count == 0 and self._backlog.count == 0
                and self._active == 0):  # fmt: skip
            self._terminated.set()

    def reset_after_fork(self) -> None:
        """In a child process: no thread of the parent runs here and none of its tasks is
        the child's. Start with an empty pool and zero counts, settings kept."""
        self._lock = threading.Lock()
        self._backlog = Backlog()
        self._live = {}
        self._active = 0
        self._zero_counts()
        self._caller_runs = {}
        self._workers = WorkerSet(self._workers.prefix)
        self._gone = []
        self._kinds.reset_counts()
        self._history = History(self._history.capacity)
        self._terminated = threading.Event()
        self._maybe_terminated_locked()
        self._reader = self._make_reader()

    # -- timeouts ------------------------------------------------------------------------

    def has_timeouts(self) -> bool:
        return (
            self._queue_timeout is not None
            or self._run_timeout is not None
            or self._kinds.has_timeouts
        )

    def timeout_settings(self) -> tuple[float | None, float | None]:
        """The pool's ``queue_timeout`` and ``run_timeout``."""
        with self._lock:
            return self._queue_timeout, self._run_timeout

    def timeout_limits(self) -> list[float]:
        limits = self._kinds.run_timeouts()
        for limit in (self._queue_timeout, self._run_timeout):
            if limit is not None:
                limits.append(limit)
        return limits

    def check_deadlines(self, now: float) -> None:
        """Cancel tasks queued too long and flag tasks running too long (the monitor's
        tick); a task that becomes overdue has its stack taken once."""
        expired: list[WorkItem] = []
        overdue: list[tuple[WorkItem, int, str]] = []
        kill: list[Worker] = []
        with self._lock:
            limit = self._queue_timeout
            backlog = self._backlog
            while limit is not None and (head := backlog.oldest()) is not None:
                if now - head.submitted <= limit:
                    break
                backlog.pop()
                if not self._cancel_queued_locked(head, now):
                    expired.append(head)
                self._timeouts_queue += 1
            for item, ident, thread in self._running_threads_locked():
                if item.overdue_at:
                    continue
                run_limit = item.kind.run_timeout or self._run_timeout
                if run_limit is not None and now - item.started > run_limit:
                    item.set_overdue(now)
                    self._overdue += 1
                    self._timeouts_run += 1
                    self._request_cancel_locked(item, now)
                    overdue.append((item, ident, thread))
            if self._kill_overdue:
                kill = [w for w in self._workers.all
                        if isinstance(w.item, WorkItem) and w.item.overdue_at == now]  # fmt: skip
        self._settle_cancelled(expired)
        for w in kill:
            assert self._backend is not None
            self._backend.interrupt(w)
        capture = self._services.capture_stack
        if capture is None:
            return
        for item, ident, thread in overdue:
            stack = capture(item.task_id, self.name, ident, thread)
            with self._lock:
                if item.state == RUNNING:
                    item.set_overdue_stack(stack)

    def _running_threads_locked(self) -> list[tuple[WorkItem, int, str]]:
        """Each running task with the ident and name of the thread running it."""
        out = [(w.item, w.ident, w.name) for w in self._workers.all
               if isinstance(w.item, WorkItem)]  # fmt: skip
        out += [(item, t.ident or 0, t.name) for item, t in self._caller_runs.items()]
        return out

    def running_thread(self, seq: int) -> tuple[int, str] | None:
        """(ident, name) of the thread running task ``seq``; ``None`` if it is not running.
        ``KeyError`` if the pool never had such a task."""
        with self._lock:
            item = self._live.get(seq)
            if item is None:
                if 0 < seq < self._next_seq:
                    return None
                raise KeyError(self.task_id(seq))
            if item.state != RUNNING:
                return None
            for running, ident, thread in self._running_threads_locked():
                if running is item:
                    return ident, thread
        return None

    # -- reading -------------------------------------------------------------------------

    def stats(self) -> PoolStats:
        with self._lock:
            return self._stats_locked()

    def _stats_locked(self) -> PoolStats:
        ws = self._workers
        return PoolStats(
            name=self.name,
            state=self._state_locked(),
            max_workers=self._max_workers,
            workers=len(ws.all),
            active=self._active,
            idle=len(ws.idle),
            queued=self._backlog.count,
            queue_capacity=self._capacity,
            rejection_policy=self._policy,
            queue_timeout=self._queue_timeout,
            run_timeout=self._run_timeout,
            submitted=self._submitted,
            succeeded=self._succeeded,
            failed=self._failed,
            cancelled=self._cancelled,
            rejected=self._rejected_full + self._rejected_shutdown,
            overdue=self._overdue,
            oldest_queued_age=self._oldest_age_locked(monotonic()),
            queue_timeouts=self._timeouts_queue,
            run_timeouts=self._timeouts_run,
        )

    def _oldest_age_locked(self, now: float) -> float:
        head = self._backlog.oldest()
        return 0.0 if head is None else max(0.0, now - head.submitted)

    def metrics_snapshot(self) -> PoolSnapshot:
        """Everything the metrics collector exports, copied under the lock."""
        with self._lock:
            return self._snapshot_locked()

    def final_snapshot(self, late_refusals: Callable[[int], None]) -> PoolSnapshot:
        """The numbers of a terminated pool, handed over to whoever keeps counting them:
        submits refused from now on are counted by ``late_refusals(n)`` (called under this
        pool's lock: it must take no lock but its own)."""
        with self._lock:
            self._late_refusals = late_refusals
            return self._snapshot_locked()

    def _snapshot_locked(self) -> PoolSnapshot:
        return PoolSnapshot(
            stats=self._stats_locked(),
            rejected_full=self._rejected_full,
            rejected_shutdown=self._rejected_shutdown,
            timeouts_queue=self._timeouts_queue,
            timeouts_run=self._timeouts_run,
            queue_wait=self._queue_wait.snapshot(),
            labels=[
                (s.label, s.succeeded, s.failed, s.cancelled, s.run.snapshot())
                for s in self._kinds.labels.values()
            ],
            kind=self.kind,
        )
