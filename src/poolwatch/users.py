"""``Users``: how many holders share a background service (a sampler, a publisher), so
that the first one to come starts it and the last one to leave stops it."""

from __future__ import annotations

import threading

__all__ = ["Users"]


class Users:
    """A thread-safe count of holders."""

    __slots__ = ("_count", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def add(self) -> bool:
        """One holder more; True when it is the only one."""
        with self._lock:
            self._count += 1
            return self._count == 1

    def remove(self) -> bool:
        """One holder fewer; True when none is left."""
        with self._lock:
            self._count = max(0, self._count - 1)
            return self._count == 0
