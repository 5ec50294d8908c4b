"""The service's readiness, and the moment it stops answering: two flags that flip once."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Lifecycle"]


class Lifecycle:
    """Shared by the app and whoever runs it. Thread-safe.

    Once :meth:`begin_shutdown` is called, ``/readyz`` answers 503 and the API refuses
    new work (task submissions and new pools) with 503 ``shutting_down``. Once
    :meth:`close_requests` is called (the server is about to stop), requests still
    waiting for blocking work (a draining ``DELETE``, a ``caller_runs`` submission) are
    answered at once with 503 ``shutting_down`` instead of being cut off.
    """

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._on_close: dict[int, Callable[[], None]] = {}
        self._next = 0

    @property
    def shutting_down(self) -> bool:
        return self._stopping.is_set()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def begin_shutdown(self) -> None:
        self._stopping.set()

    def close_requests(self) -> None:
        """Tell every request waiting for blocking work to answer now; implies shutdown."""
        self._stopping.set()
        with self._lock:
            self._closing.set()
            callbacks = list(self._on_close.values())
            self._on_close.clear()
        for callback in callbacks:
            callback()

    def on_close(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from any thread) when requests close; returns a function that
        forgets it. Called at once if they are closed already."""
        with self._lock:
            if not self._closing.is_set():
                key = self._next
                self._next += 1
                self._on_close[key] = callback

                def forget() -> None:
                    with self._lock:
                        self._on_close.pop(key, None)

                return forget
        callback()
        return lambda: None
