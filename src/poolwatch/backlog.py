"""``Backlog``: the tasks of a pool waiting for a worker, oldest first.

A queued task that is cancelled stays in the deque as a tombstone that ``pop`` skips, so
a cancel is O(1); when tombstones are most of the deque it is compacted. Not thread-safe
on its own: the owning pool calls it under its lock.
"""

from __future__ import annotations

from collections import deque

from .states import QUEUED
from .work import WorkItem

__all__ = ["Backlog"]

_COMPACT_AFTER = 64  # tombstones tolerated before compacting (when they are the majority)


class Backlog:
    """Queued work items; ``count`` is how many are queued (tombstones not counted)."""

    __slots__ = ("_items", "_tombstones", "count")

    def __init__(self) -> None:
        self._items: deque[WorkItem] = deque()
        self._tombstones = 0
        self.count = 0

    def push(self, item: WorkItem) -> None:
        self._items.append(item)
        self.count += 1

    def push_all(self, items: list[WorkItem]) -> None:
        self._items.extend(items)
        self.count += len(items)

    def pop(self) -> WorkItem | None:
        """Take the oldest queued item, or ``None`` when nothing is queued."""
        items = self._items
        while items:
            item = items.popleft()
            if item.state == QUEUED:
                self.count -= 1
                return item
            self._tombstones -= 1
        return None

    def oldest(self) -> WorkItem | None:
        """The oldest queued item, left in place."""
        items = self._items
        while items and items[0].state != QUEUED:
            items.popleft()
            self._tombstones -= 1
        return items[0] if items else None

    def tombstone(self) -> None:
        """A queued item left the queue in place: its state is no longer ``QUEUED``."""
        self.count -= 1
        self._tombstones += 1
        if self._tombstones > _COMPACT_AFTER and self._tombstones * 2 > len(self._items):
            live = [t for t in self._items if t.state == QUEUED]
            self._items.clear()
            self._items.extend(live)
            self._tombstones = 0
