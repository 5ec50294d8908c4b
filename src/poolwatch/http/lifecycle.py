"""The service's readiness: a flag that flips once, when shutdown begins."""

from __future__ import annotations

import threading

__all__ = ["Lifecycle"]


class Lifecycle:
    """Shared by the app and whoever runs it. Thread-safe.

    Once :meth:`begin_shutdown` is called, ``/readyz`` answers 503 and the API refuses
    new work (task submissions and new pools) with 503 ``shutting_down``.
    """

    def __init__(self) -> None:
        self._stopping = threading.Event()

    @property
    def shutting_down(self) -> bool:
        return self._stopping.is_set()

    def begin_shutdown(self) -> None:
        self._stopping.set()
