"""Read-side of a pool: task records, and pages of them, newest first.

A record is built by a *builder*: :func:`task_info` makes the public ``TaskInfo``, and
other builders (the HTTP API's JSON writer) make their own form straight from the same
fields, without an intermediate object. Pages are chosen from each pool's parts (its
unfinished tasks, then a cursor over its finished ones) before any record is built.
Reads take the pool's lock and cost O(page + offset), never O(history), except counting
a filter on live tasks (O(queued + running)); without a filter, skipping finished tasks
of one pool is O(1).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .history import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, ErrorInfo
from .records import TaskInfo, TaskState

if TYPE_CHECKING:
    from .future import TaskFuture
    from .pool import ManagedPool

__all__ = [
    "STATE_CODES",
    "Builder",
    "FinishedCursor",
    "SortKey",
    "TaskRef",
    "future_record",
    "resolve_refs",
    "select_parts",
    "slot_record",
    "task_info",
]

STATES = (TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.FAILED,
          TaskState.CANCELLED)  # fmt: skip
STATE_CODES = {s: i for i, s in enumerate(STATES)}
LIVE = frozenset({QUEUED, RUNNING})
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})

# Unfinished tasks sort before finished ones; then newest first (by submission for
# unfinished tasks, by finish time for finished ones).
SortKey = tuple[int, float]

R = TypeVar("R")

#: Makes one record from a task's fields, in ``TaskInfo``'s order, except that the
#: error comes as one ``ErrorInfo`` (or ``None``) in place of its three fields and the
#: trace id as an int (0 for none): (id, pool, name, state, submitted_at, started_at,
#: finished_at, queue_wait, run_time, error, cancel_requested, worker, trace_id).
Builder = Callable[
    [str, str, str, TaskState, float, float | None, float | None, float | None,
     float | None, ErrorInfo | None, bool, str | None, int],
    R,
]  # fmt: skip


def task_info(
    task_id: str,
    pool: str,
    name: str,
    state: TaskState,
    submitted_at: float,
    started_at: float | None,
    finished_at: float | None,
    queue_wait: float | None,
    run_time: float | None,
    error: ErrorInfo | None,
    cancel_requested: bool,
    worker: str | None,
    trace_id: int,
) -> TaskInfo:
    """The builder of ``TaskInfo`` records."""
    return TaskInfo(
        id=task_id,
        pool=pool,
        name=name,
        state=state,
        submitted_at=submitted_at,
        started_at=started_at,
        finished_at=finished_at,
        queue_wait=queue_wait,
        run_time=run_time,
        error_type=error.type if error is not None else None,
        error_message=error.message if error is not None else None,
        traceback=error.traceback if error is not None else None,
        cancel_requested=cancel_requested,
        worker=worker,
        trace_id=f"{trace_id:032x}" if trace_id else None,
    )


#: A task's stored fields, as ``History.row`` gives them: seq, kind, state, worker,
#: submitted, started (or None), finished (or None), trace id (0 for none), cancel
#: requested, error (or None). Times are the pool's monotonic clock.
Row = tuple[int, int, int, int, float, float | None, float | None, int, bool, ErrorInfo | None]


def _future_row(f: TaskFuture) -> Row:
    state = f._tstate
    started = f._started if (state != QUEUED and f._worker >= 0) else None
    finished = f._finished if state in FINISHED else None
    return (f._seq, f._kind.index, state, f._worker, f._submitted, started, finished,
            f._trace_id, f._cancel_requested, f._error)  # fmt: skip


def _records(build: Builder[R], pool: ManagedPool, rows: list[Row]) -> list[R]:
    """The records of ``rows`` of ``pool``, made by ``build`` (call under the pool's lock)."""
    off, task_id, pool_name = pool._wall_offset, pool._task_id, pool._name
    kinds, worker_names = pool._kind_list, pool._worker_names
    return [
        build(
            task_id(seq),
            pool_name,
            kinds[kind].name,
            STATES[state],
            submitted + off,
            None if started is None else started + off,
            None if finished is None else finished + off,
            None if started is None else started - submitted,
            None if started is None or finished is None else finished - started,
            error,
            cancel_requested,
            worker_names[worker] if worker >= 0 else None,
            trace_id,
        )
        for (seq, kind, state, worker, submitted, started, finished, trace_id,
             cancel_requested, error) in rows
    ]  # fmt: skip


def future_record(pool: ManagedPool, f: TaskFuture, build: Builder[R]) -> R:
    """The record of a task from its future (call under the pool's lock)."""
    return _records(build, pool, [_future_row(f)])[0]


def slot_record(pool: ManagedPool, slot: int, build: Builder[R]) -> R:
    """The record of a finished task from its history slot (call under the pool's lock)."""
    return _records(build, pool, [pool._history.row(slot)])[0]


# A reference to a task chosen for a page, resolved into a record afterwards: the live
# future, or the history slot with the task's sequence number (to notice an eviction).
TaskRef = Any


def select_parts(
    pool: ManagedPool,
    *,
    states: frozenset[int] | None,
    name: str | None,
    skip: int,
    limit: int,
) -> tuple[list[tuple[SortKey, TaskRef]], int, FinishedCursor | None]:
    """One pool's part of a page: its matching unfinished tasks (``limit`` after skipping
    ``skip``) as sort keys and references (no record is built), how many tasks match in
    all, and a cursor over its matching finished tasks that skips what is left of
    ``skip`` (``None`` if there are none). ``resolve_refs`` makes the records."""
    with pool._lock:
        kind = _kind_filter(pool, name)
        if kind == _NO_KIND:
            return [], 0, None
        live, live_total = _live_locked(pool, states, kind, skip, limit)
        done_states = FINISHED if states is None else FINISHED & states
        done_total = _done_count_locked(pool, done_states, kind)
        cursor = None
        if done_total:
            cursor = FinishedCursor(pool, done_states, kind, skip=max(0, skip - live_total))
        return [((0, -f._submitted), f) for f in live], live_total + done_total, cursor


class FinishedCursor:
    """A pool's finished tasks matching a filter, newest first, as ``(sort key, (pool,
    reference))``: a page's finished tasks from one pool, or one pool's part in merging
    them across pools.

    It starts at the newest task finished when it was made (after skipping ``skip``
    matches: at once without a filter). ``take(n)`` reads ``n`` at once; iterating reads
    the history under the pool's lock in batches that start at ``batch`` entries and
    double, so a merge over many pools reads about as many entries as it takes. Tasks
    that finish later are not included; one evicted from the history meanwhile ends the
    cursor.
    """

    __slots__ = ("_buffer", "_done", "_index", "_kind", "_pool", "_skip", "_states", "batch")

    def __init__(
        self, pool: ManagedPool, states: frozenset[int], kind: int | None, *, skip: int = 0
    ) -> None:
        self._pool = pool
        self._states = None if states == FINISHED else states
        self._kind = kind
        self._index = pool._history.appended - 1  # the newest entry, as an absolute index
        self._skip = skip
        if self._states is None and kind is None:  # every entry matches: skip by index
            self._index -= skip
            self._skip = 0
        self._buffer: list[tuple[SortKey, tuple[ManagedPool, TaskRef]]] = []  # oldest first
        self._done = False
        self.batch = 1

    def __iter__(self) -> FinishedCursor:
        return self

    def __next__(self) -> tuple[SortKey, tuple[ManagedPool, TaskRef]]:
        if not self._buffer:
            self._buffer = self._read(self.batch)
            self._buffer.reverse()  # popped from the end: newest first
            self.batch = min(self.batch * 2, 256)
            if not self._buffer:
                raise StopIteration
        return self._buffer.pop()

    def take(self, n: int) -> list[tuple[SortKey, tuple[ManagedPool, TaskRef]]]:
        """The next ``n`` entries (fewer at the end), newest first."""
        held = self._buffer[::-1][:n]
        del self._buffer[len(self._buffer) - len(held) :]
        return held + self._read(n - len(held))

    def _read(self, n: int) -> list[tuple[SortKey, tuple[ManagedPool, TaskRef]]]:
        out: list[tuple[SortKey, tuple[ManagedPool, TaskRef]]] = []
        if self._done or n <= 0:
            return out
        pool, states, kind = self._pool, self._states, self._kind
        with pool._lock:
            history = pool._history
            oldest = history.appended - len(history)
            cap = history.capacity
            i = self._index
            while i >= oldest and len(out) < n:
                slot = i % cap
                i -= 1
                if (states is None or history.state_at(slot) in states) and (
                    kind is None or history.kind_at(slot) == kind
                ):
                    if self._skip:
                        self._skip -= 1
                        continue
                    key = (1, -history.finished_at(slot))
                    out.append((key, (pool, (slot, history.seq_at(slot)))))
            self._index = i
            self._done = i < oldest
        return out


def resolve_refs(pool: ManagedPool, refs: list[TaskRef], build: Builder[R]) -> list[R]:
    """The records of tasks chosen by ``select_parts`` (one evicted since is left out)."""
    with pool._lock:
        return _resolve_locked(pool, refs, build)


def _resolve_locked(pool: ManagedPool, refs: list[TaskRef], build: Builder[R]) -> list[R]:
    history = pool._history
    rows: list[Row] = []
    for ref in refs:
        if isinstance(ref, tuple):
            slot, seq = ref
            if history.seq_at(slot) == seq:  # else evicted between selecting and resolving
                rows.append(history.row(slot))
        else:
            rows.append(_future_row(ref))
    return _records(build, pool, rows)


_NO_KIND = -1  # a task name this pool has never run: nothing matches


def _kind_filter(pool: ManagedPool, name: str | None) -> int | None:
    if name is None:
        return None
    k = pool._kinds_by_name.get(name)
    return _NO_KIND if k is None else k.index


def _live_locked(
    pool: ManagedPool, states: frozenset[int] | None, kind: int | None, skip: int, limit: int
) -> tuple[list[TaskFuture], int]:
    """Matching unfinished tasks, newest submission first: ``limit`` after ``skip``, and
    how many match."""
    live_states = LIVE if states is None else LIVE & states
    if not live_states:
        return [], 0
    if kind is None and live_states == LIVE:
        return list(itertools.islice(reversed(pool._live.values()), skip, skip + limit)), len(
            pool._live
        )
    everything = [
        f
        for f in reversed(pool._live.values())
        if f._tstate in live_states and (kind is None or f._kind.index == kind)
    ]
    return everything[skip : skip + limit], len(everything)


def _done_count_locked(pool: ManagedPool, done_states: frozenset[int], kind: int | None) -> int:
    if not done_states:
        return 0
    return pool._history.count(kinds=None if kind is None else [kind], states=sorted(done_states))
