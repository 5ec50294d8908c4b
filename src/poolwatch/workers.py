"""The worker threads of one pool: who is idle, who is on the way, and their names.

``WorkerSet`` is the pool engine's bookkeeping of its threads, called under the engine's
lock. A worker's name is ``{prefix}_{index}`` with the lowest index free when it
starts, as ``ThreadPoolExecutor`` names its threads, so names (and the table that turns
the indices in task records back into names) stay bounded by the pool's size however
many workers come and go. Threads that ran a task for the ``caller_runs`` policy are
named in a second, bounded table.
"""

from __future__ import annotations

import heapq
import threading

__all__ = ["Worker", "WorkerSet"]

_CALLER_NAMES = 256  # distinct submitting threads named in records; more share one name
_OTHER_CALLER = "caller"


class Worker:
    """One worker thread. ``wake`` is held while the worker is not parked."""

    __slots__ = ("ident", "index", "item", "name", "retire", "thread", "wake", "woken")

    def __init__(self, index: int, name: str) -> None:
        self.index = index
        self.name = name
        self.wake = threading.Lock()
        self.wake.acquire()
        self.woken = True  # reserved to come for work: counted in WorkerSet.waking
        self.retire = False
        self.thread: threading.Thread | None = None
        self.ident = 0
        self.item: object = None  # the WorkItem it runs, if any


class WorkerSet:
    """Idle, busy and starting workers of one pool (call every method under its lock).

    ``count`` is the workers live or starting that are not retiring; ``waking`` those
    woken or starting that have not reached the queue yet.
    """

    __slots__ = ("_caller_index", "_caller_names", "_free", "_next_index", "all", "count",
                 "idle", "names", "prefix", "waking")  # fmt: skip

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.all: set[Worker] = set()
        self.idle: list[Worker] = []
        self.count = 0
        self.waking = 0
        self._free: list[int] = []  # indices of workers that left, smallest first
        self._next_index = 0
        self.names: list[str] = []  # by index
        self._caller_index: dict[str, int] = {}
        self._caller_names: list[str] = []

    def reserve(self) -> Worker:
        """A new worker, counted as starting; the caller starts its thread."""
        if self._free:
            index = heapq.heappop(self._free)
        else:
            index = self._next_index
            self._next_index += 1
            self.names.append(f"{self.prefix}_{index}")
        w = Worker(index, self.names[index])
        self.count += 1
        self.waking += 1
        self.all.add(w)
        return w

    def wake_idle(self) -> Worker | None:
        """The most recently parked worker, counted as woken; ``None`` if none is idle."""
        if not self.idle:
            return None
        w = self.idle.pop()
        w.woken = True
        self.waking += 1
        return w

    def arrived(self, w: Worker) -> None:
        """``w`` reached the queue after being woken or started."""
        if w.woken:
            w.woken = False
            self.waking -= 1

    def leave(self, w: Worker, *, counted: bool) -> None:
        """``w`` ends; ``counted`` if it still counts in ``count`` (not retiring)."""
        if counted:
            self.count -= 1
        if w in self.all:
            self.all.discard(w)
            heapq.heappush(self._free, w.index)

    def retire_idle(self, keep: int) -> list[Worker]:
        """Retire idle workers until at most ``keep`` remain counted; the caller wakes them."""
        retired = []
        while self.count > keep and self.idle:
            w = self.idle.pop()
            w.retire = True
            self.count -= 1
            retired.append(w)
        return retired

    def threads(self) -> set[threading.Thread]:
        return {w.thread for w in self.all if w.thread is not None}

    def caller_index(self, name: str) -> int:
        """The (negative) index that names a submitting thread in task records."""
        index = self._caller_index.get(name)
        if index is None:
            if len(self._caller_index) >= _CALLER_NAMES:
                name = _OTHER_CALLER
                index = self._caller_index.get(name)
            if index is None:
                index = self._caller_index[name] = -2 - len(self._caller_names)
                self._caller_names.append(name)
        return index

    def name_of(self, index: int) -> str | None:
        """The name of the thread with ``index`` (from ``Worker.index`` or ``caller_index``)."""
        if index >= 0:
            return self.names[index]
        if index == -1:
            return None
        return self._caller_names[-2 - index]
