"""Read side of a pool: task records, and pages of them, newest first.

Every record is a ``TaskInfo``, built by :func:`build_info` from one row: a live task's
``WorkItem`` or a finished task's history slot, both read as a ``Row``. Pages are chosen
from each pool's parts (its unfinished tasks, then a cursor over its finished ones)
before any record is built. Everything here reads a pool through its ``PoolReader``
under the pool's lock and costs O(page + offset), never O(history), except counting a
filter on live tasks (O(queued + running)); without a filter, skipping finished tasks of
one pool is O(1).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

from .records import TaskInfo, TaskState
from .states import FINISHED, LIVE, QUEUED

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .accounting import TaskKinds
    from .history import ErrorInfo, History
    from .work import WorkItem
    from .workers import WorkerSet

__all__ = [
    "STATE_CODES",
    "FinishedCursor",
    "PoolReader",
    "Readable",
    "SortKey",
    "TaskRef",
    "build_info",
    "item_row",
    "page_of",
    "resolve_refs",
    "select_parts",
]

STATES = (TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.FAILED,
          TaskState.CANCELLED)  # fmt: skip
STATE_CODES = {s: i for i, s in enumerate(STATES)}

# Unfinished tasks sort before finished ones; then newest first (by submission for
# unfinished tasks, by finish time for finished ones).
SortKey = tuple[int, float]


@dataclass(frozen=True, slots=True)
class PoolReader:
    """What the read side sees of one pool: its containers, read under ``lock``."""

    name: str
    live: dict[int, WorkItem]
    history: History
    kinds: TaskKinds
    workers: WorkerSet
    wall_offset: float
    task_id: Callable[[int], str]


class Readable(Protocol):
    """A pool as the read side uses it."""

    @property
    def lock(self) -> threading.Lock: ...

    @property
    def reader(self) -> PoolReader: ...


#: A task's stored fields, as ``History.row`` gives them: seq, kind, state, worker,
#: submitted, started (or None), finished (or None), trace id (0 for none), cancel
#: requested, error (or None), overdue stack (or None). Times are the pool's monotonic
#: clock.
Row = tuple[int, int, int, int, float, float | None, float | None, int, bool,
            "ErrorInfo | None", Any]  # fmt: skip


def item_row(item: WorkItem) -> Row:
    """The row of a task not finished yet (or just finished, before its history entry)."""
    state = item.state
    started = item.started if (state != QUEUED and item.worker != -1) else None
    finished = item.finished if state in FINISHED else None
    return (item.seq, item.kind.index, state, item.worker, item.submitted, started, finished,
            item.trace_id, item.cancel_requested, item.error, item.overdue_stack)  # fmt: skip


def build_info(r: PoolReader, row: Row) -> TaskInfo:
    """The one builder of ``TaskInfo`` records (call under the pool's lock)."""
    (seq, kind, state, worker, submitted, started, finished, trace_id, cancel_requested,
     error, stack) = row  # fmt: skip
    off = r.wall_offset
    return TaskInfo(
        id=r.task_id(seq),
        pool=r.name,
        name=r.kinds.listed[kind].name,
        state=STATES[state],
        submitted_at=submitted + off,
        started_at=None if started is None else started + off,
        finished_at=None if finished is None else finished + off,
        queue_wait=None if started is None else started - submitted,
        run_time=None if started is None or finished is None else finished - started,
        error_type=error.type if error is not None else None,
        error_message=error.message if error is not None else None,
        traceback=error.traceback if error is not None else None,
        cancel_requested=cancel_requested,
        worker=r.workers.name_of(worker),
        trace_id=f"{trace_id:032x}" if trace_id else None,
        overdue_stack=stack,
    )


def find_info(pool: Readable, seq: int) -> TaskInfo | None:
    """The record of task ``seq`` of ``pool``, or ``None`` if unknown or evicted."""
    with pool.lock:
        r = pool.reader
        item = r.live.get(seq)
        if item is not None:
            return build_info(r, item_row(item))
        slot = r.history.find(seq)
        return None if slot is None else build_info(r, r.history.row(slot))


# A reference to a task chosen for a page, resolved into a record afterwards: the live
# item, or the history slot with the task's sequence number (to notice an eviction).
TaskRef = Any


def page_of(
    owners: Sequence[Readable],
    *,
    states: frozenset[int] | None,
    name: str | None,
    skip: int,
    offset: int,
    limit: int,
) -> tuple[list[TaskInfo], int]:
    """A page of the tasks of ``owners`` matching the filter, and how many match in all.

    Each pool skips ``skip`` of its own matches (one pool alone skips by index, without
    building anything); then ``offset`` and ``limit`` apply to the merged order.
    Unfinished tasks come first: each pool gives up to a page's worth, merged by sorting
    (in C). Finished ones are merged from per-pool cursors that read the history lazily,
    so a page costs O(pools + page), not O(pools x page).
    """
    need = offset + limit
    total = 0
    live: list[tuple[SortKey, tuple[Readable, TaskRef]]] = []
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
        chosen.extend(_finished_part(cursors, rest, rest + limit - len(chosen)))
    return _records_of(chosen), total


def _finished_part(
    cursors: list[FinishedCursor], rest: int, want: int
) -> list[tuple[Readable, TaskRef]]:
    if len(cursors) == 1:  # nothing to merge: read the page at once
        finished = cursors[0].take(want)[rest:]
    else:  # each cursor starts with its share of the page, then reads more
        for cursor in cursors:
            cursor.batch = max(1, want // len(cursors))
        merged = heapq.merge(*cursors, key=itemgetter(0))
        finished = list(itertools.islice(merged, rest, want))
    return [owner_ref for _, owner_ref in finished]


def _records_of(chosen: list[tuple[Readable, TaskRef]]) -> list[TaskInfo]:
    """Records for the page only, one lock acquisition per pool on it, in page order."""
    by_pool: dict[Readable, list[TaskRef]] = {}
    for owner, ref in chosen:
        by_pool.setdefault(owner, []).append(ref)
    resolved = {owner: iter(resolve_refs(owner, refs)) for owner, refs in by_pool.items()}
    page = []
    for owner, _ in chosen:
        record = next(resolved[owner], None)
        if record is not None:
            page.append(record)
    return page


def select_parts(
    pool: Readable,
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
    with pool.lock:
        r = pool.reader
        kind = _kind_filter(r, name)
        if kind == _NO_KIND:
            return [], 0, None
        live, live_total = _live_locked(r, states, kind, skip, limit)
        done_states = FINISHED if states is None else FINISHED & states
        done_total = _done_count_locked(r, done_states, kind)
        cursor = None
        if done_total:
            cursor = FinishedCursor(pool, done_states, kind, skip=max(0, skip - live_total))
        return [((0, -item.submitted), item) for item in live], live_total + done_total, cursor


class FinishedCursor:
    """A pool's finished tasks matching a filter, newest first, as ``(sort key, (pool,
    reference))``: a page's finished tasks from one pool, or one pool's part in merging
    them across pools.

    It starts at the newest task finished when it was made (after skipping ``skip``
    matches: at once without a filter). ``take(n)`` reads ``n`` at once; iterating reads
    the history under the pool's lock in batches that start at ``batch`` entries and
    double, so a merge over many pools reads about as many entries as it takes. Tasks
    that finish later are not included; one evicted from the history meanwhile ends the
    cursor. Made under the pool's lock.
    """

    __slots__ = ("_buffer", "_done", "_index", "_kind", "_pool", "_skip", "_states", "batch")

    def __init__(
        self, pool: Readable, states: frozenset[int], kind: int | None, *, skip: int = 0
    ) -> None:
        self._pool = pool
        self._states = None if states == FINISHED else states
        self._kind = kind
        self._index = pool.reader.history.appended - 1  # the newest entry, absolute
        self._skip = skip
        if self._states is None and kind is None:  # every entry matches: skip by index
            self._index -= skip
            self._skip = 0
        self._buffer: list[tuple[SortKey, tuple[Readable, TaskRef]]] = []  # oldest first
        self._done = False
        self.batch = 1

    def __iter__(self) -> FinishedCursor:
        return self

    def __next__(self) -> tuple[SortKey, tuple[Readable, TaskRef]]:
        if not self._buffer:
            self._buffer = self._read(self.batch)
            self._buffer.reverse()  # popped from the end: newest first
            self.batch = min(self.batch * 2, 256)
            if not self._buffer:
                raise StopIteration
        return self._buffer.pop()

    def take(self, n: int) -> list[tuple[SortKey, tuple[Readable, TaskRef]]]:
        """The next ``n`` entries (fewer at the end), newest first."""
        held = self._buffer[::-1][:n]
        del self._buffer[len(self._buffer) - len(held) :]
        return held + self._read(n - len(held))

    def _read(self, n: int) -> list[tuple[SortKey, tuple[Readable, TaskRef]]]:
        out: list[tuple[SortKey, tuple[Readable, TaskRef]]] = []
        if self._done or n <= 0:
            return out
        pool, states, kind = self._pool, self._states, self._kind
        with pool.lock:
            history = pool.reader.history
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


def resolve_refs(pool: Readable, refs: list[TaskRef]) -> list[TaskInfo]:
    """The records of tasks chosen by ``select_parts`` (one evicted since is left out)."""
    with pool.lock:
        r = pool.reader
        history = r.history
        rows: list[Row] = []
        for ref in refs:
            if isinstance(ref, tuple):
                slot, seq = ref
                if history.seq_at(slot) == seq:  # else evicted between selecting and resolving
                    rows.append(history.row(slot))
            else:
                rows.append(item_row(ref))
        return [build_info(r, row) for row in rows]


_NO_KIND = -1  # a task name this pool has never run: nothing matches


def _kind_filter(r: PoolReader, name: str | None) -> int | None:
    if name is None:
        return None
    k = r.kinds.by_name.get(name)
    return _NO_KIND if k is None else k.index


def _live_locked(
    r: PoolReader, states: frozenset[int] | None, kind: int | None, skip: int, limit: int
) -> tuple[list[WorkItem], int]:
    """Matching unfinished tasks, newest submission first: ``limit`` after ``skip``, and
    how many match."""
    live_states = LIVE if states is None else LIVE & states
    if not live_states:
        return [], 0
    if kind is None and live_states == LIVE:
        return list(itertools.islice(reversed(r.live.values()), skip, skip + limit)), len(r.live)
    everything = [
        item
        for item in reversed(r.live.values())
        if item.state in live_states and (kind is None or item.kind.index == kind)
    ]
    return everything[skip : skip + limit], len(everything)


def _done_count_locked(r: PoolReader, done_states: frozenset[int], kind: int | None) -> int:
    if not done_states:
        return 0
    return r.history.count(kinds=None if kind is None else [kind], states=sorted(done_states))
