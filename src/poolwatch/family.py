"""``PoolFamily``: the executors that share a derived name, seen as one pool.

Code that does ``with ThreadPoolExecutor() as ex:`` on every request makes a new
executor each time, all named from the same ``thread_name_prefix`` or the same creating
function. Each instance is a pool of its own (own workers, queue and lock, the stdlib's
semantics exactly); the family is what metrics, the API and the console see under the
shared name:

- counters add up over every instance, ended or live, and never go back: when an
  instance has terminated its numbers are folded into the family's totals and the
  instance is dropped, so memory, names and series stay bounded however many come and
  go;
- gauges (workers, active, queued, capacity, ...) add up over the live instances;
- the finished tasks of ended instances stay findable by id in a bounded archive, as
  large as one instance's ``history_size``;
- settings changed on the family (``configure``, ``pause``, ``resume``; PATCH over HTTP)
  apply to every live instance and to every instance created afterwards;
- a family runs nothing itself: ``submit`` on it is refused; code submits to the
  executor it holds. ``shutdown`` shuts down every live instance.

Lock order: the manager's lock, then a family's, then an instance engine's; folding an
ended instance in takes its numbers and records under neither the manager's lock nor
the family's (see ``sweep``).
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from typing import Any

from .accounting import LabelCap, PoolSnapshot, SnapshotSum
from .engine import PoolEngine, parse_task_id
from .pool import ManagedPool
from .records import PoolState, PoolStats, TaskInfo, TaskState
from .views import page_of

__all__ = ["PoolFamily"]


class _Tally:
    """A counter with a lock of its own, taken under no other: engines call it under theirs."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n

    def read(self) -> int:
        with self._lock:
            return self.value

    def reset_after_fork(self) -> None:
        """In a forked child: zero, with a new lock (a parent's thread may have held it).
        The same object: ended instances that code still holds keep counting into it."""
        self._lock = threading.Lock()
        self.value = 0


class PoolFamily(ManagedPool):
    """Every live and ended executor created under one derived name. Thread-safe.

    ``PoolManager.get_pool(name)`` returns it for such a name, and ``pools()`` lists it
    once. ``stats()`` and ``metrics_snapshot()`` cover the whole family (see the module's
    notes); ``instances()`` is how many are live.

    A family's instances are all of one ``kind``: thread pools, or process pools
    (``poolwatch.ProcessPoolExecutor`` without a name). The family object is the same
    class for both, a ``ManagedPool``, since it runs nothing itself and no code submits
    to it: ``isinstance`` on a family says nothing of its kind, ``kind`` does.
    """

    def __init__(self, name: str, order: int, label_limit: int, kind: str = "thread") -> None:
        # ManagedPool.__init__ is not called: a family has no engine of its own.
        self._name = name
        self._kind = kind  # every instance is of this kind
        self.order = order  # where the family sorts among the manager's pools
        self._lock = threading.Lock()
        self._label_limit = label_limit
        self._live: dict[int, PoolEngine] = {}  # uid -> engine of a live instance
        self._ended = SnapshotSum(LabelCap(label_limit))
        self._late = _Tally()  # submits refused by instances after they ended
        self._archive: deque[TaskInfo] | None = None  # made with the first instance
        self._settings: dict[str, Any] = {}  # changed on the family: every instance gets them
        self._paused = False
        self._version = 0  # changes with every change of settings or pause
        self._removed = False
        self._folding: set[int] = set()  # uids of ended instances being folded in
        # Held by a change of settings or pause from recording it to applying it to every
        # live instance, so that concurrent changes reach instances in the order the
        # family records them. Taken under no lock; applying may take the manager's.
        self._changing = threading.Lock()
        self._shown: tuple[str, float | None, float | None] = ("abort", None, None)

    # -- the manager's side ----------------------------------------------------------

    def prepare(self, engine: PoolEngine) -> int:
        """Give a new instance (not started, not adopted yet) the settings changed on the
        family; returns the version of them to pass to ``adopt``. Call under no lock:
        configuring may start the timeout monitor, which takes the manager's."""
        with self._lock:
            version, settings, paused = self._version, dict(self._settings), self._paused
        if settings:
            engine.configure(settings)
        if paused:
            engine.pause()
        else:
            engine.resume()
        return version

    def adopt(self, engine: PoolEngine, version: int) -> bool:
        """Make ``engine`` one of the family's, unless the family's settings changed since
        ``prepare`` (then False: prepare it again). ``RuntimeError`` once removed."""
        with self._lock:
            if self._removed:
                raise RuntimeError(f"pool family {self._name!r} was removed")
            if version != self._version:
                return False
            if self._archive is None:
                self._archive = deque(maxlen=engine.reader.history.capacity)
            self._live[engine.uid] = engine
            self._shown = (engine.rejection_policy, *engine.timeout_settings())
            return True

    def engine_of(self, uid: int) -> PoolEngine | None:
        """The live instance numbered ``uid``, if it is one of this family's."""
        with self._lock:
            return self._live.get(uid)

    def engines(self) -> list[PoolEngine]:
        """The live instances, oldest first (ended ones are folded in first)."""
        self.sweep()
        with self._lock:
            return list(self._live.values())

    def archived(self, task_id: str) -> TaskInfo | None:
        """The record of a task of an ended instance, if it is still in the archive."""
        self.sweep()
        with self._lock:
            for info in self._archive or ():
                if info.id == task_id:
                    return info
        return None

    def tasks_view(
        self, state: TaskState | None, name: str | None, keep: int
    ) -> tuple[list[PoolEngine], list[TaskInfo], int]:
        """In one hold of the lock, so that no task is in both or in neither: the live
        instances (oldest first), the ``keep`` most recently finished archived records
        matching the filter (most recent first), and how many archived records match."""
        self.sweep()
        with self._lock:
            engines = list(self._live.values())
            found = [
                info
                for info in self._archive or ()
                if (state is None or info.state is state) and (name is None or info.name == name)
            ]
        top = heapq.nlargest(keep, found, key=lambda info: info.finished_at or 0.0)
        return engines, top, len(found)

    def retire(self) -> None:
        """Removed from its manager: refuse new instances from now on."""
        with self._lock:
            self._removed = True

    def reset_after_fork(self) -> None:
        """In a forked child: no counts of the parent, live instances empty."""
        self._lock = threading.Lock()
        self._changing = threading.Lock()
        self._ended = SnapshotSum(LabelCap(self._label_limit))
        self._late.reset_after_fork()
        self._folding = set()
        if self._archive is not None:
            self._archive = deque(maxlen=self._archive.maxlen)
        for engine in self._live.values():
            engine.reset_after_fork()

    def sweep(self) -> None:
        """Fold the instances that have terminated into the totals and the archive.

        They are picked under the lock, their numbers and records (up to an archive's
        worth each) are taken outside it, and folded in under it again: an instance stays
        live to readers until it is folded, so each of its tasks is counted once. Call it
        under no lock (the manager's ``adopt`` calls it after adopting)."""
        with self._lock:
            ended = [e for e in self._live.values() if e.terminated and e.uid not in self._folding]
            if not ended:
                return
            self._folding.update(e.uid for e in ended)
            keep = 0 if self._archive is None else self._archive.maxlen or 0
        folded = []
        try:
            for engine in ended:
                snap = engine.final_snapshot(self._late.add)
                folded.append((engine, snap, _last_records(engine, snap, keep)))
        finally:  # what was taken is folded in, in the hold that ends the folding
            with self._lock:
                self._fold_locked(folded)
                self._folding.difference_update(e.uid for e in ended)

    def _fold_locked(self, folded: list[tuple[PoolEngine, PoolSnapshot, list[TaskInfo]]]) -> None:
        for engine, snap, records in folded:
            del self._live[engine.uid]  # only this call folds it: see _folding
            self._ended.add(snap)
            if self._archive is not None:
                self._archive.extend(reversed(records))

    # -- what a pool offers ------------------------------------------------------------

    @property
    def engine(self) -> PoolEngine:
        raise AttributeError(f"pool family {self._name!r} has no engine of its own")

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        """The kind of every instance: ``"thread"`` or ``"process"``."""
        return self._kind

    @property
    def state(self) -> PoolState:
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> PoolState:
        if self._removed:
            return PoolState.TERMINATED
        return PoolState.PAUSED if self._paused else PoolState.RUNNING

    @property
    def rejection_policy(self) -> str:
        with self._lock:
            return self._shown[0]

    @property
    def _max_workers(self) -> int:  # type: ignore[override]
        return sum(e.max_workers for e in self.engines())

    @property
    def _threads(self) -> set[Any]:  # type: ignore[override]
        return set().union(*(e.threads() for e in self.engines()))

    @property
    def _broken(self) -> str | bool:  # type: ignore[override]
        return False

    def __repr__(self) -> str:
        return f"<PoolFamily {self._name!r} instances={self.instances()}>"

    def instances(self) -> int:
        """How many instances are live now."""
        return len(self.engines())

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"pool {self._name!r} is a family of executors created by code; it runs nothing "
            "itself: submit to the executor the code holds, or create_pool() a pool of your own"
        )

    def submit_many(self, fn: Any, arg_tuples: Any) -> Any:
        return self.submit(fn)

    def cancel(self, task_id: str) -> str:
        """Cancel a task of any instance: as ``ManagedPool.cancel``."""
        ids = parse_task_id(task_id)
        engine = None if ids is None else self.engine_of(ids[0])
        if engine is not None and ids is not None:
            result = engine.cancel(ids[1])
            if result is not None:
                return result
        if self.archived(task_id) is not None:
            return "finished"
        raise KeyError(task_id)

    def _configure_checked(self, changes: dict[str, Any]) -> None:
        with self._changing:  # see _changing
            with self._lock:
                self._settings.update(changes)
                self._version += 1
                engines = list(self._live.values())
                policy, queue_timeout, run_timeout = self._shown
                self._shown = (
                    changes.get("rejection_policy", policy),
                    changes.get("queue_timeout", queue_timeout),
                    changes.get("run_timeout", run_timeout),
                )
            for engine in engines:
                engine.configure(dict(changes))

    def pause(self) -> None:
        """Pause every live instance and every one created until ``resume()``."""
        self._set_paused(True)

    def resume(self) -> None:
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        with self._changing:  # see _changing
            with self._lock:
                self._paused = paused
                self._version += 1
                engines = list(self._live.values())
            for engine in engines:
                if paused:
                    engine.pause()
                else:
                    engine.resume()

    def refuse_waiting_for_itself(self, instead: str) -> None:
        """``RuntimeError`` if the calling thread belongs to one of the live instances."""
        for engine in self.engines():
            engine.refuse_waiting_for_itself(instead)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut every live instance down, as its own ``shutdown`` would."""
        if wait:
            self.refuse_waiting_for_itself("shutdown(wait=False)")
        engines = self.engines()
        for engine in engines:
            engine.shutdown(False, cancel_futures)
        if wait:
            for engine in engines:
                engine.join(None)

    def stats(self) -> PoolStats:
        """The family's numbers: counters over every instance, gauges over the live ones."""
        return self.metrics_snapshot().stats

    def metrics_snapshot(self) -> PoolSnapshot:
        self.sweep()
        with self._lock:
            live = [e.metrics_snapshot() for e in self._live.values()]
            total = self._ended.copy()
            for snap in live:  # under the lock: labels are admitted here too
                total.add(snap)
            state = self._state_locked()
            policy, queue_timeout, run_timeout = self._shown
        late = self._late.read()
        each = [s.stats for s in live]
        capacities = [s.queue_capacity for s in each]
        stats = PoolStats(
            name=self._name,
            state=state,
            max_workers=sum(s.max_workers for s in each),
            workers=sum(s.workers for s in each),
            active=sum(s.active for s in each),
            idle=sum(s.idle for s in each),
            queued=sum(s.queued for s in each),
            queue_capacity=None if not each or None in capacities else sum(capacities),  # type: ignore[arg-type]
            rejection_policy=policy,
            queue_timeout=queue_timeout,
            run_timeout=run_timeout,
            submitted=total.submitted,
            succeeded=total.succeeded,
            failed=total.failed,
            cancelled=total.cancelled,
            rejected=total.rejected_full + total.rejected_shutdown + late,
            overdue=sum(s.overdue for s in each),
            oldest_queued_age=max((s.oldest_queued_age for s in each), default=0.0),
            queue_timeouts=total.timeouts_queue,
            run_timeouts=total.timeouts_run,
        )
        return PoolSnapshot(
            stats=stats,
            rejected_full=total.rejected_full,
            rejected_shutdown=total.rejected_shutdown + late,
            timeouts_queue=total.timeouts_queue,
            timeouts_run=total.timeouts_run,
            queue_wait=total.queue_wait.snapshot(),
            labels=total.label_rows(),
            kind=self._kind,
        )


def _last_records(engine: PoolEngine, final: PoolSnapshot, keep: int) -> list[TaskInfo]:
    """The records of the last ``keep`` tasks a terminated instance finished, newest first."""
    stats = final.stats
    keep = min(stats.succeeded + stats.failed + stats.cancelled, keep)
    if not keep:
        return []
    records, _ = page_of([engine], states=None, name=None, skip=0, offset=0, limit=keep)
    return records
