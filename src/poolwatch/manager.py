"""``PoolManager``: owns named pools, finds tasks across them, exports their signals."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import re
import threading
import time
import weakref
from operator import itemgetter
from types import TracebackType
from typing import Any

from opentelemetry import trace
from prometheus_client import REGISTRY, CollectorRegistry

from . import options
from ._core import PoolCore
from .errors import PoolExistsError
from .metrics import PoolCollector
from .pool import ManagedPool
from .records import TaskInfo, TaskPage, TaskState
from .tracing import Tracing
from .views import (
    STATE_CODES,
    Builder,
    FinishedCursor,
    R,
    SortKey,
    TaskRef,
    resolve_refs,
    select_parts,
    task_info,
)

__all__ = ["PoolManager"]

log = logging.getLogger("poolwatch")

_ID_RE = re.compile(r"^([0-9a-f]{1,12})-([0-9a-f]{1,16})$")
_MAX_PAGE = 10_000


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
        self._pools: dict[str, ManagedPool] = {}
        self._by_uid: dict[int, ManagedPool] = {}
        self._next_uid = 1
        self._closed = False
        self._label_limit = task_label_limit
        # Records keep monotonic times; this offset, taken once, turns them into epoch times.
        self._wall_offset = time.time() - time.monotonic()
        self._tracing = Tracing(tracer_provider, self._wall_offset)
        self._watched: set[PoolCore] = set()
        self._monitor: threading.Thread | None = None
        self._monitor_stop = threading.Event()
        self._registry = registry if registry is not None else REGISTRY
        self._collector = PoolCollector(self)
        try:
            self._registry.register(self._collector)
        except ValueError as exc:
            raise ValueError(
                "another PoolManager already exports poolwatch metrics to this registry "
                f"({exc}); shut it down first or pass registry=CollectorRegistry()"
            ) from None
        _managers.add(self)

    @property
    def registry(self) -> CollectorRegistry:
        """The prometheus_client registry the pools' metrics are exported to."""
        return self._registry

    @property
    def tracer_provider(self) -> trace.TracerProvider | None:
        """The tracer provider given at construction (``None``: the global one)."""
        return self._tracing.provider

    # -- pools -----------------------------------------------------------------------

    def create_pool(
        self,
        name: str,
        *,
        max_workers: int,
        queue_capacity: int | None = None,
        rejection_policy: str = "abort",
        queue_timeout: float | None = None,
        run_timeout: float | None = None,
        history_size: int = 10_000,
    ) -> ManagedPool:
        """Create a pool named ``name`` (a metric label: ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$``).

        Raises ``PoolExistsError`` (a ``ValueError``) when the name is taken, ``ValueError``
        for a bad value and ``TypeError`` for a value of the wrong type.
        """
        options.check_pool_name(name)
        settings: dict[str, Any] = {
            "max_workers": options.check_max_workers(max_workers),
            "queue_capacity": options.check_queue_capacity(queue_capacity),
            "rejection_policy": options.check_rejection_policy(rejection_policy),
            "queue_timeout": options.check_timeout("queue_timeout", queue_timeout),
            "run_timeout": options.check_timeout("run_timeout", run_timeout),
            "history_size": options.check_history_size(history_size),
        }
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot create a pool after the manager was shut down")
            if name in self._pools:
                raise PoolExistsError(
                    f"a pool named {name!r} already exists; choose another name or "
                    "remove_pool() it first"
                )
            uid = self._next_uid
            self._next_uid += 1
            pool = ManagedPool(self, uid, name, task_label_limit=self._label_limit, **settings)
            self._pools[name] = pool
            self._by_uid[uid] = pool
        if pool._has_timeouts():
            self._watch(pool)
        return pool

    def get_pool(self, name: str) -> ManagedPool:
        """The pool named ``name``; ``KeyError`` if there is none."""
        with self._lock:
            try:
                return self._pools[name]
            except KeyError:
                raise KeyError(f"no pool named {name!r}") from None

    def pools(self) -> list[ManagedPool]:
        """The pools, in the order they were created."""
        with self._lock:
            return list(self._pools.values())

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._pools

    def remove_pool(self, name: str, *, wait: bool = True, cancel_futures: bool = False) -> Any:
        """Shut pool ``name`` down and forget it; returns its final ``PoolStats``.

        Its metric series are gone from the next scrape. ``KeyError`` if there is no such pool.
        Its queue and run timeouts still apply while it drains. With ``wait=True``, from one
        of the pool's own tasks (or a done-callback in one of its threads) it raises
        ``RuntimeError`` and changes nothing, since it would wait for itself.
        """
        while True:  # again if the name now stands for another pool than the one checked
            pool = self.get_pool(name)
            if wait:
                pool._refuse_waiting_for_itself(f"remove_pool({name!r}, wait=False)")
            with self._lock:
                if self._pools.get(name) is pool:
                    del self._pools[name]
                    del self._by_uid[pool._uid]
                    break
        # The monitor keeps watching it until it has terminated (see _monitor_loop).
        pool._shutdown(wait, cancel_futures, None)
        return pool.stats()

    # -- tasks -----------------------------------------------------------------------

    @staticmethod
    def _parse_id(task_id: str) -> tuple[int, int]:
        """(pool number, sequence number) of a task id; ``KeyError`` if it is not one."""
        m = _ID_RE.fullmatch(task_id) if isinstance(task_id, str) else None
        if m is None:
            raise KeyError(task_id)
        return int(m.group(1), 16), int(m.group(2), 16)

    def get_task(self, task_id: str) -> TaskInfo:
        """The record of a task; ``KeyError`` if the id is unknown or evicted from history."""
        return self._task_record(task_id, task_info)

    def _task_record(self, task_id: str, build: Builder[R]) -> R:
        """``get_task`` with the record made by ``build`` (see ``views.Builder``)."""
        uid, seq = self._parse_id(task_id)
        with self._lock:
            pool = self._by_uid.get(uid)
        record = None if pool is None else pool._task_record(seq, build)
        if record is None:
            raise KeyError(task_id)
        return record

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
        items, total = self._task_page(
            pool=pool, state=state, name=name, offset=offset, limit=limit, build=task_info
        )
        return TaskPage(items, total)

    def _task_page(
        self,
        *,
        pool: str | None,
        state: TaskState | str | None,
        name: str | None,
        offset: int,
        limit: int,
        build: Builder[R],
    ) -> tuple[list[R], int]:
        """``tasks`` with the records made by ``build`` (see ``views.Builder``)."""
        states = None if state is None else frozenset({STATE_CODES[_task_state(state)]})
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= _MAX_PAGE:
            raise ValueError(f"limit must be an integer from 0 to {_MAX_PAGE}, got {limit!r}")
        if pool is not None:
            with self._lock:
                found = self._pools.get(pool)
            if found is None:
                return [], 0  # a filter that matches nothing, like any other
            # One pool skips inside its own parts (by index, without a filter).
            owners, skip = [found], offset
        else:
            owners, skip = self.pools(), 0
        # Unfinished tasks come first: each pool gives up to a page's worth, merged by
        # sorting (in C). Finished ones are merged from per-pool cursors that read the
        # history lazily, so a page costs O(pools + page), not O(pools x page).
        offset -= skip
        need = offset + limit
        total = 0
        live: list[tuple[SortKey, tuple[ManagedPool, TaskRef]]] = []
        cursors: list[FinishedCursor] = []
        for p in owners:
            refs, count, cursor = select_parts(p, states=states, name=name, skip=skip, limit=need)
            total += count
            live.extend([(key, (p, ref)) for key, ref in refs])
            if cursor is not None:
                cursors.append(cursor)
        live.sort(key=itemgetter(0))
        chosen = [owner_ref for _, owner_ref in live[offset:need]]
        if len(chosen) < limit and cursors:
            rest = max(0, offset - len(live))
            want = rest + limit - len(chosen)
            if len(cursors) == 1:  # nothing to merge: read the page at once
                finished = cursors[0].take(want)[rest:]
            else:  # each cursor starts with its share of the page, then reads more
                for cursor in cursors:
                    cursor.batch = max(1, want // len(cursors))
                merged = heapq.merge(*cursors, key=itemgetter(0))
                finished = list(itertools.islice(merged, rest, want))
            chosen.extend([owner_ref for _, owner_ref in finished])
        # Records are built for the page only, one lock acquisition per pool on it.
        by_pool: dict[ManagedPool, list[TaskRef]] = {}
        for owner, ref in chosen:
            by_pool.setdefault(owner, []).append(ref)
        resolved = {
            owner: iter(resolve_refs(owner, refs, build)) for owner, refs in by_pool.items()
        }
        page = []
        for owner, _ in chosen:
            record = next(resolved[owner], None)
            if record is not None:
                page.append(record)
        return page, total

    # -- live stacks -------------------------------------------------------------------

    def task_stack(self, task_id: str) -> Any:
        """The live Python stack of a running task (a ``poolwatch.TaskStack``).

        ``KeyError`` for an unknown id, ``TaskNotRunningError`` when the task is queued
        or finished. The stack is taken on request and costs nothing until then.
        """
        # Self-contained: the worker thread is found from the record's public fields
        # (its name), and the record is read again after the capture so that a task
        # that ended meanwhile is reported as not running, never with another's stack.
        from .errors import TaskNotRunningError
        from .stacks import capture_stack

        def not_running(state: TaskState) -> TaskNotRunningError:
            return TaskNotRunningError(
                f"task {task_id} is {state.value}, not running: only a running task has a "
                "live stack"
            )

        info = self.get_task(task_id)
        if info.state is not TaskState.RUNNING or info.worker is None:
            raise not_running(info.state)
        threads = [t for t in threading.enumerate() if t.name == info.worker]
        stack = None
        if len(threads) == 1 and threads[0].ident is not None:
            stack = capture_stack(
                threads[0].ident, task_id=task_id, pool=info.pool, thread=info.worker
            )
        after = self.get_task(task_id)
        if after.state is not TaskState.RUNNING:
            raise not_running(after.state)
        if stack is None:
            raise TaskNotRunningError(
                f"task {task_id} runs on thread {info.worker!r}, which cannot be found "
                "by that name; retry in a moment"
            )
        return stack

    # -- timeouts ----------------------------------------------------------------------

    def _watch(self, pool: PoolCore) -> None:
        """Have the monitor thread check ``pool``'s queue and run timeouts."""
        with self._lock:
            if self._closed or pool._uid not in self._by_uid:
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
                self._watched = {p for p in self._watched if not p._terminated.is_set()}
                watched = list(self._watched)
                if self._closed and not watched:
                    return
            shortest = 2.5
            for pool in watched:
                for limit in pool._timeout_limits():
                    shortest = min(shortest, limit)
                try:
                    pool._check_deadlines(time.monotonic())
                except Exception:  # never let one pool stop the monitor
                    log.exception("checking timeouts of pool %r failed", pool._name)
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
            for pool in self.pools():
                pool._refuse_waiting_for_itself("the manager's shutdown(wait=False)")
        with self._lock:
            self._closed = True
            pools = list(self._pools.values())
        for pool in pools:
            pool._shutdown(False, cancel_futures, None)
        done = True
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for pool in pools:
                if not pool._join(deadline):
                    done = False
            if not done:
                for pool in pools:
                    pool._request_cancel_running()
        else:
            done = all(pool.state.value == "terminated" for pool in pools)
        if done:
            self._monitor_stop.set()
            monitor = self._monitor
            if monitor is not None and monitor is not threading.current_thread():
                monitor.join()
        # Else the monitor goes on timing out the pools still draining, and ends by itself.
        with contextlib.suppress(KeyError):  # already unregistered by an earlier shutdown
            self._registry.unregister(self._collector)
        return done

    def __enter__(self) -> PoolManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)


def _task_state(state: TaskState | str) -> TaskState:
    if isinstance(state, TaskState):
        return state
    try:
        return TaskState(state)
    except ValueError:
        choices = ", ".join(s.value for s in TaskState)
        raise ValueError(f"state must be one of {choices}, got {state!r}") from None


_managers: weakref.WeakSet[PoolManager] = weakref.WeakSet()


def _at_exit() -> None:
    # Like ThreadPoolExecutor: at interpreter exit, let queued work finish and join workers.
    for manager in list(_managers):
        try:
            manager.shutdown(wait=True)
        except Exception:  # one manager's failure must not keep the others running
            log.exception("shutting a PoolManager down at interpreter exit failed")


threading._register_atexit(_at_exit)  # type: ignore[attr-defined]
