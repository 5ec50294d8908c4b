"""Read-side of a pool: task records, and pages of them, newest first.

A record is built by a *builder*: :func:`task_info` makes the public ``TaskInfo``, and
other builders (the HTTP API's JSON writer) make their own form straight from the same
fields, without an intermediate object. Everything here runs under the pool's lock and
costs O(page + offset), never O(history), except counting a filter on live tasks
(O(queued + running)).
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
    "SortKey",
    "TaskRef",
    "collect_page",
    "future_record",
    "resolve_refs",
    "select_page",
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


def _record(
    build: Builder[R],
    pool: ManagedPool,
    seq: int,
    kind: int,
    state: int,
    worker: int,
    submitted: float,
    started: float | None,
    finished: float | None,
    trace_id: int,
    cancel_requested: bool,
    error: ErrorInfo | None,
) -> R:
    off = pool._wall_offset
    return build(
        f"{pool._uid:x}-{seq:x}",  # pool._task_id(seq), without the call
        pool._name,
        pool._kind_list[kind].name,
        STATES[state],
        submitted + off,
        None if started is None else started + off,
        None if finished is None else finished + off,
        None if started is None else started - submitted,
        None if started is None or finished is None else finished - started,
        error,
        cancel_requested,
        pool._worker_names[worker] if worker >= 0 else None,
        trace_id,
    )


def future_record(pool: ManagedPool, f: TaskFuture, build: Builder[R]) -> R:
    """The record of a task from its future (call under the pool's lock)."""
    state = f._tstate
    started = f._started if (state != QUEUED and f._worker >= 0) else None
    return _record(
        build, pool, f._seq, f._kind.index, state, f._worker, f._submitted, started,
        f._finished if state in FINISHED else None, f._trace_id, f._cancel_requested,
        f._error,
    )  # fmt: skip


def slot_record(pool: ManagedPool, slot: int, build: Builder[R]) -> R:
    """The record of a finished task from its history slot (call under the pool's lock)."""
    return _record(build, pool, *pool._history.row(slot))


# A reference to a task chosen for a page, resolved into a record afterwards: the live
# future, or the history slot with the task's sequence number (to notice an eviction).
TaskRef = Any


def collect_page(
    pool: ManagedPool,
    *,
    states: frozenset[int] | None,
    name: str | None,
    skip: int,
    limit: int,
    build: Builder[R],
) -> tuple[list[R], int]:
    """Tasks of one pool matching the filters, newest first: ``limit`` of them after
    skipping ``skip``, and how many match in all."""
    with pool._lock:
        refs, total = _select_locked(pool, states, name, skip, limit)
        return _resolve_locked(pool, [ref for _, ref in refs], build), total


def select_page(
    pool: ManagedPool, *, states: frozenset[int] | None, name: str | None, limit: int
) -> tuple[list[tuple[SortKey, TaskRef]], int]:
    """The first ``limit`` matching tasks of one pool as sort keys and references (cheap:
    no record is built), and how many match in all. ``resolve_refs`` makes the records."""
    with pool._lock:
        return _select_locked(pool, states, name, 0, limit)


def resolve_refs(pool: ManagedPool, refs: list[TaskRef], build: Builder[R]) -> list[R]:
    """The records of tasks chosen by ``select_page`` (one evicted since is left out)."""
    with pool._lock:
        return _resolve_locked(pool, refs, build)


def _resolve_locked(pool: ManagedPool, refs: list[TaskRef], build: Builder[R]) -> list[R]:
    history = pool._history
    records = []
    for ref in refs:
        if isinstance(ref, tuple):
            slot, seq = ref
            if history.seq_at(slot) != seq:
                continue  # evicted between selecting and resolving
            records.append(slot_record(pool, slot, build))
        else:
            records.append(future_record(pool, ref, build))
    return records


def _select_locked(
    pool: ManagedPool, states: frozenset[int] | None, name: str | None, skip: int, limit: int
) -> tuple[list[tuple[SortKey, TaskRef]], int]:
    kind: int | None = None
    if name is not None:
        k = pool._kinds_by_name.get(name)
        if k is None:
            return [], 0
        kind = k.index
    live_states = LIVE if states is None else LIVE & states
    done_states = FINISHED if states is None else FINISHED & states
    history = pool._history

    live: list[TaskFuture] = []
    live_total = 0
    if live_states:
        if kind is None and live_states == LIVE:
            live_total = len(pool._live)
            live = list(itertools.islice(reversed(pool._live.values()), skip, skip + limit))
        else:
            everything = [
                f
                for f in reversed(pool._live.values())
                if f._tstate in live_states and (kind is None or f._kind.index == kind)
            ]
            live_total = len(everything)
            live = everything[skip : skip + limit]
    done_total = 0
    if done_states:
        done_total = history.count(
            kinds=None if kind is None else [kind], states=sorted(done_states)
        )
    refs: list[tuple[SortKey, TaskRef]] = [((0, -f._submitted), f) for f in live]
    want = limit - len(refs)
    if want > 0 and done_total:
        hskip = max(0, skip - live_total)
        if kind is None and done_states == FINISHED:
            refs.extend(((1, -fin), (slot, seq)) for fin, slot, seq in history.newest(hskip, want))
        else:
            slots = itertools.islice(
                (
                    s
                    for s in history.newest_slots()
                    if history.state_at(s) in done_states
                    and (kind is None or history.kind_at(s) == kind)
                ),
                hskip,
                hskip + want,
            )
            refs.extend(((1, -history.finished_at(s)), (s, history.seq_at(s))) for s in slots)
    return refs, live_total + done_total
