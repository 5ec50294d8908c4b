"""``PoolManager``: owns named pools, finds tasks across them, exports their signals.

Pools made with ``create_pool`` are held by the manager until removed. Pools made by
``poolwatch.ThreadPoolExecutor(...)`` are held weakly, as code written for the stdlib
expects: one dropped without ``shutdown()`` is collected, leaves the manager's table and
lets its idle workers exit. Those whose name was derived (not given) join the
``PoolFamily`` of that name, which the manager holds instead (see ``family.py``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from opentelemetry import trace
from prometheus_client import REGISTRY, CollectorRegistry

from . import future, options
from .backend import Backend
from .dask_pool import DaskPool
from .engine import EngineServices, PoolEngine, interpreter_exiting, parse_task_id
from .errors import PoolExistsError, TaskNotRunningError
from .family import PoolFamily
from .kinds import check_kind, check_kind_options
from .metrics import PoolCollector
from .pool import ManagedPool, ManagedProcessPool, PoolBase
from .records import TaskInfo, TaskPage, TaskState
from .stacks import TaskStack, capture_stack
from .tracing import Tracing
from .views import STATE_CODES, page_of

__all__ = ["PoolManager", "default_max_workers"]

_P = TypeVar("_P", bound=PoolBase)

log = logging.getLogger("poolwatch")

_MAX_PAGE = 10_000


def default_max_workers() -> int:
    """``ThreadPoolExecutor``'s default: ``min(32, CPUs + 4)``, CPUs this process may use."""
    cpus = getattr(os, "process_cpu_count", os.cpu_count)()
    return min(32, (cpus or 1) + 4)


class PoolManager:
    """Owns pools by name. Thread-safe; usable as a context manager (shuts down on exit).

    ``registry`` is the prometheus_client registry the pools' metrics are exported to
    (default: the global one); ``tracer_provider`` the OpenTelemetry provider for task
    spans (default: the global one, once an SDK provider is installed). The ``task``
    label is capped at ``task_label_limit`` names per pool; more count as ``_other``.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        task_label_limit: int = 50,
    ) -> None:
        if not isinstance(task_label_limit, int) or task_label_limit < 1:
            raise ValueError(f"task_label_limit must be an integer >= 1, got {task_label_limit!r}")
        self._lock = threading.Lock()
        # name -> the pool, or a weak reference to it (made by the stdlib constructor)
        self._pools: dict[str, PoolBase | weakref.ref[PoolBase]] = {}
        self._by_uid: dict[int, str] = {}
        self._uid_of: dict[str, int] = {}  # name -> uid, for _by_uid's entry of that name
        self._next_uid = 1
        self._closed = False
        self._label_limit = task_label_limit
        # Records keep monotonic times; this offset, taken once, turns them into epoch times.
        self._wall_offset = time.time() - time.monotonic()
        self._tracing = Tracing(tracer_provider, self._wall_offset)
        self._services = EngineServices(
            self._tracing, self._wall_offset, self._watch, self._capture_overdue
        )
        self._watched: set[PoolEngine] = set()
        self._monitor: threading.Thread | None = None
        self._monitor_stop = threading.Event()
        self._registry = registry if registry is not None else REGISTRY
        self._collector = PoolCollector(self)
        try:
            self._registry.register(self._collector)
        except ValueError:
            holder = " (poolwatch.default_manager(): use it)" if self._registry is REGISTRY else ""
            raise ValueError(
                f"another PoolManager already exports poolwatch metrics to this registry"
                f"{holder}; shut it down first or pass registry=CollectorRegistry()"
            ) from None
        _managers.add(self)

    @property
    def registry(self) -> CollectorRegistry:
        """The prometheus_client registry the pools' metrics are exported to."""
        return self._registry

    @property
    def closed(self) -> bool:
        """Whether ``shutdown()`` was called: no new pools, metrics no longer exported."""
        return self._closed

    @property
    def collector(self) -> PoolCollector:
        """The collector registered in ``registry``."""
        return self._collector

    @property
    def tracer_provider(self) -> trace.TracerProvider | None:
        """The tracer provider given at construction (``None``: the global one)."""
        return self._tracing.provider

    # -- pools -----------------------------------------------------------------------

    @overload
    def create_pool(
        self, name: str, *, max_workers: int | None = ..., thread_name_prefix: str = ...,
        initializer: Callable[..., object] | None = ..., initargs: tuple[Any, ...] = ...,
        queue_capacity: int | None = ..., rejection_policy: str = ...,
        queue_timeout: float | None = ..., run_timeout: float | None = ...,
        history_size: int = ..., kind: Literal["thread"] = ...,
    ) -> ManagedPool: ...  # fmt: skip

    @overload
    def create_pool(
        self, name: str, *, max_workers: int | None = ..., thread_name_prefix: str = ...,
        initializer: Callable[..., object] | None = ..., initargs: tuple[Any, ...] = ...,
        queue_capacity: int | None = ..., rejection_policy: str = ...,
        queue_timeout: float | None = ..., run_timeout: float | None = ...,
        history_size: int = ..., kind: Literal["process"], mp_context: Any = ...,
        max_tasks_per_child: int | None = ..., on_run_timeout: str = ...,
    ) -> ManagedProcessPool: ...  # fmt: skip

    @overload
    def create_pool(
        self, name: str, *, max_workers: int | None = ..., thread_name_prefix: str = ...,
        queue_capacity: int | None = ..., rejection_policy: str = ...,
        queue_timeout: float | None = ..., run_timeout: float | None = ...,
        history_size: int = ..., kind: Literal["dask"], client: Any = ...,
        address: str | None = ..., on_run_timeout: str = ...,
    ) -> DaskPool: ...  # fmt: skip

    @overload
    def create_pool(
        self, name: str, *, max_workers: int | None = ..., thread_name_prefix: str = ...,
        initializer: Callable[..., object] | None = ..., initargs: tuple[Any, ...] = ...,
        queue_capacity: int | None = ..., rejection_policy: str = ...,
        queue_timeout: float | None = ..., run_timeout: float | None = ...,
        history_size: int = ..., kind: str, **kind_options: Any,
    ) -> PoolBase: ...  # fmt: skip

    def create_pool(
        self,
        name: str,
        *,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        queue_capacity: int | None = None,
        rejection_policy: str = "abort",
        queue_timeout: float | None = None,
        run_timeout: float | None = None,
        history_size: int = 10_000,
        kind: str = "thread",
        **kind_options: Any,
    ) -> PoolBase:
        """Create a pool named ``name`` (a metric label: ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$``).

        ``max_workers=None`` is ``ThreadPoolExecutor``'s default; ``thread_name_prefix``,
        ``initializer`` and ``initargs`` are as there (threads are named
        ``{prefix}_{index}``, the prefix defaulting to the pool's name). ``kind`` says
        where tasks run (``"thread"``, ``"process"``, see ``poolwatch.kinds``); options of
        that kind alone come as further keywords (``mp_context=``, ...). Raises
        ``PoolExistsError`` (a ``ValueError``) when the name is taken, ``ValueError`` for a
        bad value and ``TypeError`` for a value of the wrong type or an option the kind
        does not take.
        """
        options.check_pool_name(name)
        pool_kind = check_kind(kind)
        chosen = check_kind_options(pool_kind, kind_options)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        make_engine = functools.partial(
            self.new_engine, name, max_workers=max_workers, thread_name_prefix=thread_name_prefix,
            queue_capacity=queue_capacity, rejection_policy=rejection_policy,
            queue_timeout=queue_timeout, run_timeout=run_timeout, history_size=history_size,
            kind=pool_kind.name,
        )  # fmt: skip
        pool = pool_kind.build(make_engine, initializer, tuple(initargs), chosen)
        return self.register(pool, weak=False)

    def new_engine(self, name: str, *, max_workers: int | None, thread_name_prefix: str,
                    initializer: Callable[..., object] | None, initargs: tuple[Any, ...],
                    kind: str, backend: Backend | None = None, on_run_timeout: str = "request",
                    workers_default: Callable[[], int] = default_max_workers,
                    **settings: Any) -> PoolEngine:  # fmt: skip
        """A checked engine for a pool named ``name`` (not registered yet); a kind's
        ``workers_default`` gives ``max_workers`` when that is None."""
        check_kind(kind)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if not isinstance(thread_name_prefix, str):
            raise TypeError("thread_name_prefix must be a string")
        workers = options.check_max_workers(
            workers_default() if max_workers is None else max_workers
        )
        capacity = options.check_queue_capacity(settings.pop("queue_capacity", None))
        policy = options.check_rejection_policy(settings.pop("rejection_policy", "abort"))
        queue_timeout = options.check_timeout("queue_timeout", settings.pop("queue_timeout", None))
        run_timeout = options.check_timeout("run_timeout", settings.pop("run_timeout", None))
        history_size = options.check_history_size(settings.pop("history_size", 10_000))
        if settings:
            raise TypeError(f"unexpected pool setting {next(iter(settings))!r}")
        with self._lock:
            uid = self._next_uid
            self._next_uid += 1
        return PoolEngine(
            uid, name, self._services, max_workers=workers, thread_name_prefix=thread_name_prefix,
            initializer=initializer, initargs=tuple(initargs), queue_capacity=capacity,
            rejection_policy=policy, queue_timeout=queue_timeout, run_timeout=run_timeout,
            history_size=history_size, task_label_limit=self._label_limit, kind=kind,
            backend=backend, on_run_timeout=options.check_on_run_timeout(on_run_timeout),
        )  # fmt: skip

    def register(self, pool: _P, *, weak: bool) -> _P:
        """Register ``pool`` under its name: refused if the name is taken."""
        name = pool.name
        with self._lock:
            if self._closed:
                pool.engine.shutdown(False, False)
                raise RuntimeError("cannot create a pool after the manager was shut down")
            if self._live_locked(name) is not None:
                pool.engine.shutdown(False, False)
                raise PoolExistsError(
                    f"a pool named {name!r} already exists; choose another name or "
                    "remove_pool() it first"
                )
            self._pools[name] = weakref.ref(pool) if weak else pool
            self._by_uid[pool.engine.uid] = name
            self._uid_of[name] = pool.engine.uid
        if pool.engine.has_timeouts():
            self._watch(pool.engine)
        return pool

    def _live_locked(self, name: str) -> PoolBase | None:
        entry = self._pools.get(name)
        if isinstance(entry, weakref.ref):
            pool = entry()
            if pool is None:  # collected: the name is free again
                del self._pools[name]
                self._by_uid.pop(self._uid_of.pop(name, 0), None)
            return pool
        return entry

    def family_name(self, base: str, kind: str = "thread") -> str:
        """The family a pool of ``kind`` with derived name ``base`` joins: ``base``, or,
        when a pool given that name explicitly or a family of another kind holds it,
        ``base`` with the lowest free ``-N`` suffix."""
        with self._lock:
            for n in itertools.count(1):
                candidate = base if n == 1 else f"{base}-{n}"[-64:].lstrip("_.-")
                entry = self._live_locked(candidate)
                if entry is None or (isinstance(entry, PoolFamily) and entry.kind == kind):
                    return candidate
        raise AssertionError("unreachable")

    def adopt(self, pool: PoolBase) -> None:
        """Register a pool with a derived name in its family (made if need be); held weakly.
        ``PoolExistsError`` if a pool given that name explicitly, or a family of another
        kind, took it meanwhile."""
        name, engine = pool.name, pool.engine
        try:
            while True:
                with self._lock:
                    family = self._family_locked(name, engine.kind)
                if family is None:
                    raise PoolExistsError(f"a pool named {name!r} already exists")
                version = family.prepare(engine)
                with self._lock:  # the family may have been removed or changed meanwhile
                    if self._family_locked(name, engine.kind) is family and family.adopt(
                        engine, version
                    ):
                        break
        except BaseException:
            engine.shutdown(False, False)
            raise
        family.sweep()  # instances that ended are folded in, outside the manager's lock
        if engine.has_timeouts():
            self._watch(pool.engine)

    def _family_locked(self, name: str, kind: str) -> PoolFamily | None:
        """The family of ``kind`` named ``name``, made if need be; ``None`` if an explicit
        pool or a family of another kind has that name. Raises ``RuntimeError`` once the
        manager is shut down."""
        if self._closed:
            raise RuntimeError("cannot create a pool after the manager was shut down")
        entry = self._live_locked(name)
        if entry is None:
            entry = PoolFamily(name, self._next_uid, self._label_limit, kind)
            self._next_uid += 1
            self._pools[name] = entry
        return entry if isinstance(entry, PoolFamily) and entry.kind == kind else None

    def get_pool(self, name: str) -> PoolBase:
        """The pool named ``name``; ``KeyError`` if there is none."""
        with self._lock:
            pool = self._live_locked(name)
        if pool is None:
            raise KeyError(f"no pool named {name!r}")
        return pool

    def pools(self) -> list[PoolBase]:
        """The pools, in the order they were created."""
        with self._lock:
            found = [(n, self._live_locked(n)) for n in list(self._pools)]
        live = [p for _, p in found if p is not None]
        live.sort(key=_order)
        return live

    def _families(self) -> list[PoolFamily]:
        with self._lock:
            return [p for p in self._pools.values() if isinstance(p, PoolFamily)]

    def _engines(self) -> list[PoolEngine]:
        """The engine of every pool, the live instances of families included."""
        out: list[PoolEngine] = []
        for pool in self.pools():
            out.extend(pool.engines() if isinstance(pool, PoolFamily) else [pool.engine])
        return out

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return isinstance(name, str) and self._live_locked(name) is not None

    def remove_pool(self, name: str, *, wait: bool = True, cancel_futures: bool = False) -> Any:
        """Shut pool ``name`` down and forget it; returns its final ``PoolStats``.

        Its metric series are gone from the next scrape. ``KeyError`` if there is no such pool.
        Its queue and run timeouts still apply while it drains. With ``wait=True``, from one
        of the pool's own tasks (or a done-callback in one of its threads) it raises
        ``RuntimeError`` and changes nothing, since it would wait for itself.

        For a family (a derived name) every live instance shuts down as above and the
        family's counts and records are dropped; an executor created under that name
        afterwards starts a new family, from zero.
        """
        pool = self.get_pool(name)
        if isinstance(pool, PoolFamily):
            return self._remove_family(pool, wait, cancel_futures)
        while True:  # again if the name now stands for another pool than the one checked
            pool = self.get_pool(name)
            if wait:
                pool.engine.refuse_waiting_for_itself(f"remove_pool({name!r}, wait=False)")
            with self._lock:
                if self._live_locked(name) is pool:
                    del self._pools[name]
                    del self._by_uid[pool.engine.uid]
                    del self._uid_of[name]
                    break
        # The monitor keeps watching it until it has terminated (see _monitor_loop).
        pool.engine.shutdown(wait, cancel_futures)
        return pool.stats()

    def _remove_family(self, family: PoolFamily, wait: bool, cancel_futures: bool) -> Any:
        if wait:
            family.refuse_waiting_for_itself(f"remove_pool({family.name!r}, wait=False)")
        with self._lock:
            if self._pools.get(family.name) is not family:
                raise KeyError(f"no pool named {family.name!r}")
            del self._pools[family.name]
            family.retire()
        family.shutdown(wait, cancel_futures=cancel_futures)
        return family.stats()

    # -- tasks -----------------------------------------------------------------------

    def _engine_of(self, task_id: str) -> tuple[PoolEngine, int]:
        """The engine running a task and the task's number there; ``KeyError`` if none (a
        task of a family's ended instance has no engine any more: see ``get_task``)."""
        ids = parse_task_id(task_id)
        if ids is None:
            raise KeyError(task_id)
        with self._lock:
            name = self._by_uid.get(ids[0])
            pool = None if name is None else self._live_locked(name)
        if pool is not None and not isinstance(pool, PoolFamily) and pool.engine.uid == ids[0]:
            return pool.engine, ids[1]
        for family in self._families():
            engine = family.engine_of(ids[0])
            if engine is not None:
                return engine, ids[1]
        raise KeyError(task_id)

    def get_task(self, task_id: str) -> TaskInfo:
        """The record of a task; ``KeyError`` if the id is unknown or evicted from history."""
        try:
            engine, seq = self._engine_of(task_id)
        except KeyError:
            if parse_task_id(task_id) is None:
                raise
            for family in self._families():
                info = family.archived(task_id)
                if info is not None:
                    return info
            raise
        return engine.task_info(seq)

    def tasks(
        self,
        *,
        pool: str | None = None,
        state: TaskState | str | None = None,
        name: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> TaskPage:
        """A page of task records, newest first, and how many match in all.

        Unfinished tasks come first (newest submission first), then finished ones (most
        recently finished first). ``pool`` and ``name`` filter by exact name; ``state`` is
        a ``TaskState`` or its lowercase value; an unknown pool matches no task.
        """
        states = None if state is None else frozenset({STATE_CODES[_task_state(state)]})
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= _MAX_PAGE:
            raise ValueError(f"limit must be an integer from 0 to {_MAX_PAGE}, got {limit!r}")
        if pool is None:
            parts = self.pools()
        else:
            with self._lock:
                found = self._live_locked(pool) if isinstance(pool, str) else None
            if found is None:
                return TaskPage([], 0)  # a filter that matches nothing, like any other
            if not isinstance(found, PoolFamily):  # one pool skips inside its own parts
                items, total = page_of([found.engine], states=states, name=name, skip=offset,
                                       offset=0, limit=limit)  # fmt: skip
                return TaskPage(items, total)
            parts = [found]
        wanted = None if state is None else _task_state(state)
        return _page(parts, wanted, name, offset, limit)

    # -- live stacks -------------------------------------------------------------------

    def task_stack(self, task_id: str) -> TaskStack:
        """The live Python stack of a running task, innermost frame last.

        ``KeyError`` for an unknown id, ``TaskNotRunningError`` when the task is queued or
        finished. The stack is taken on request from the worker thread's current frame
        and costs nothing until then.
        """
        try:
            engine, seq = self._engine_of(task_id)
        except KeyError:
            self.get_task(task_id)  # a task of an ended instance is not running
            raise
        where = engine.running_thread(seq)
        stack = None
        if where is not None:
            ident, thread = where
            stack = capture_stack(ident, task_id=task_id, pool=engine.name, thread=thread)
        # Read again: a task that ended meanwhile is not running, whatever was captured.
        if stack is None or engine.running_thread(seq) != where:
            state = engine.task_info(seq).state
            raise TaskNotRunningError(
                f"task {task_id} is {state.value}, not running: only a running task has a "
                "live stack"
            )
        return stack

    def _capture_overdue(self, task_id: str, pool: str, ident: int, thread: str) -> Any:
        try:
            return capture_stack(ident, task_id=task_id, pool=pool, thread=thread)
        except Exception:  # a stack is evidence, never a reason to stop the monitor
            log.exception("taking the stack of overdue task %s failed", task_id)
            return None

    # -- timeouts ----------------------------------------------------------------------

    def _watch(self, pool: PoolEngine) -> None:
        """Have the monitor thread check ``pool``'s queue and run timeouts."""
        with self._lock:
            if self._closed or pool.terminated:
                return
            self._watched.add(pool)
            if self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._monitor_loop, name="poolwatch-monitor", daemon=True
                )
                self._monitor.start()

    def _monitor_loop(self) -> None:
        """Enforce the watched pools' timeouts until stopped; pools removed or shut down
        stay watched while they drain. Ends by itself once the manager is shut down and
        every pool it watched has terminated."""
        stop = self._monitor_stop
        while not stop.is_set():
            with self._lock:
                self._watched = {p for p in self._watched if not p.terminated}
                watched = list(self._watched)
                if self._closed and not watched:
                    return
            shortest = 2.5
            for pool in watched:
                for limit in pool.timeout_limits():
                    shortest = min(shortest, limit)
                try:
                    pool.check_deadlines(time.monotonic())
                except Exception:  # never let one pool stop the monitor
                    log.exception("checking timeouts of pool %r failed", pool.name)
            # A tenth of the shortest timeout: timeouts fire within ~10 % of their value.
            stop.wait(min(0.25, max(0.002, shortest / 10)))

    # -- lifecycle -------------------------------------------------------------------

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None
    ) -> bool:
        """Shut every pool down; returns True when all of them have terminated.

        With ``timeout`` (seconds) waits at most that long, then requests a cooperative
        cancel of the tasks still running and returns False if some are. Threads are never
        killed. Queue and run timeouts still apply to the pools while they drain.

        With ``wait=True``, from a task of one of the pools (or a done-callback in one of
        their threads) it raises ``RuntimeError`` and changes nothing, since it would wait
        for itself; call ``shutdown(wait=False)`` there.
        """
        if wait:
            for engine in self._engines():
                engine.refuse_waiting_for_itself("the manager's shutdown(wait=False)")
        with self._lock:
            self._closed = True
        engines = self._engines()
        for engine in engines:
            engine.shutdown(False, cancel_futures)
        done = True
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for engine in engines:
                if not engine.join(deadline):
                    done = False
            if not done:
                for engine in engines:
                    engine.request_cancel_running()
        else:
            done = all(engine.terminated for engine in engines)
        if done:
            self._monitor_stop.set()
            monitor = self._monitor
            if monitor is not None and monitor is not threading.current_thread():
                monitor.join()
        # Else the monitor goes on timing out the pools still draining, and ends by itself.
        with contextlib.suppress(KeyError):  # already unregistered by an earlier shutdown
            self._registry.unregister(self._collector)
        return done

    def reset_after_fork(self) -> None:
        """In a forked child: new locks, no monitor, every pool empty with zero counts."""
        self._lock = threading.Lock()
        self._monitor = None
        self._monitor_stop = threading.Event()
        self._watched = set()
        for pool in self.pools():
            if isinstance(pool, PoolFamily):
                pool.reset_after_fork()
            else:
                pool.engine.reset_after_fork()
        for engine in self._engines():
            if engine.has_timeouts():
                self._watch(engine)

    def __enter__(self) -> PoolManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)


def _order(pool: PoolBase) -> int:
    return pool.order if isinstance(pool, PoolFamily) else pool.engine.uid


def _page(
    parts: list[PoolBase], state: TaskState | None, name: str | None, offset: int, limit: int
) -> TaskPage:
    """A page of the tasks of ``parts`` (pools and families) matching the filter."""
    states = None if state is None else frozenset({STATE_CODES[state]})
    owners: list[PoolEngine] = []
    archived: list[TaskInfo] = []
    archived_total = 0
    for part in parts:
        if isinstance(part, PoolFamily):
            engines, records, count = part.tasks_view(state, name, offset + limit)
            owners.extend(engines)
            archived.extend(records)
            archived_total += count
        else:
            owners.append(part.engine)
    if not archived_total:
        items, total = page_of(owners, states=states, name=name, skip=0, offset=offset,
                               limit=limit)  # fmt: skip
        return TaskPage(items, total)
    items, total = page_of(owners, states=states, name=name, skip=0, offset=0,
                           limit=offset + limit)  # fmt: skip
    merged = sorted([*items, *archived], key=_newest_first)
    return TaskPage(merged[offset : offset + limit], total + archived_total)


def _newest_first(info: TaskInfo) -> tuple[int, float]:
    """Unfinished tasks first, newest submission first; then most recently finished."""
    if info.finished_at is None:
        return (0, -info.submitted_at)
    return (1, -info.finished_at)


def _task_state(state: TaskState | str) -> TaskState:
    if isinstance(state, TaskState):
        return state
    try:
        return TaskState(state)
    except ValueError:
        choices = ", ".join(s.value for s in TaskState)
        raise ValueError(f"state must be one of {choices}, got {state!r}") from None


_managers: weakref.WeakSet[PoolManager] = weakref.WeakSet()


def exporting_globally() -> PoolManager | None:
    """The live manager that exports to prometheus_client's global registry, if any."""
    for manager in list(_managers):
        if manager.registry is REGISTRY and not manager.closed:
            return manager
    return None


def _at_exit() -> None:
    # Like ThreadPoolExecutor: at interpreter exit, let queued work finish and join workers.
    interpreter_exiting()
    for manager in list(_managers):
        try:
            manager.shutdown(wait=True)
        except Exception:  # one manager's failure must not keep the others running
            log.exception("shutting a PoolManager down at interpreter exit failed")


def _after_fork_in_child() -> None:
    future.reinit_after_fork()
    for manager in list(_managers):
        manager.reset_after_fork()


# Run before threading joins non-daemon threads at exit, as concurrent.futures does: the
# workers must be told to leave first, and user atexit hooks then see pools shut down.
threading._register_atexit(_at_exit)  # type: ignore[attr-defined]  # noqa: SLF001
os.register_at_fork(after_in_child=_after_fork_in_child)
