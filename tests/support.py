"""Helpers shared by the test suite: real tools, free ports, waiting on conditions."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str, *, hint: str = "") -> str:
    """The path of executable ``name``.

    Where it is missing the test skips with a reason that says how to get it; under
    ``CI=true`` a missing tool fails the test instead, since CI installs everything.
    """
    fallback = f"/usr/bin/{name}"  # Debian's place, in case PATH lacks /usr/bin
    path = shutil.which(name) or (fallback if os.access(fallback, os.X_OK) else None)
    if path:
        return path
    detail = f"; {hint}" if hint else ""
    reason = f"{name} is not installed{detail} (scripts/test.sh installs it as root)"
    if IN_CI:
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, *, hint: str = "") -> Any:
    """Module ``name``, imported; as ``require_tool``, a test needing a missing one skips
    with how to get it, and fails under ``CI=true``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        detail = f"; {hint}" if hint else ""
        reason = f"the Python package {name} is not installed{detail}"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.005,
    message: str | Callable[[], str] = "",
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Fails the test with ``message`` (or, when it is a callable, what it returns at that
    moment) when ``timeout`` seconds pass first. The short pauses between polls wait on
    a private event, never as synchronisation.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = message() if callable(message) else message
            pytest.fail(
                f"condition not met within {timeout}s: {said or predicate!r}", pytrace=False
            )
        pause.wait(interval)


def in_fresh_thread(fn: Callable[[], T], *, timeout: float = 60.0) -> T:
    """``fn()`` run in a thread of its own, its result returned and its error re-raised.

    For code that needs a thread with no event loop and a clean interpreter state: the
    browser tests' Playwright session keeps one running in the main thread.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="fresh-thread")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{fn!r} did not return within {timeout}s", pytrace=False)
    if error:
        raise error[0]
    return result[0]


def fail_on_leaked_threads(
    before: set[threading.Thread],
    *,
    owned_elsewhere: Callable[[threading.Thread], bool] | None = None,
) -> None:
    """Fail the test if threads not in ``before`` are still alive (after giving them a
    moment to end), but for those ``owned_elsewhere`` says a longer-lived fixture owns."""
    deadline = time.monotonic() + 5.0
    leaked: list[threading.Thread] = []
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if owned_elsewhere is not None:
            leaked = [t for t in leaked if not owned_elsewhere(t)]
        if not leaked or time.monotonic() > deadline:
            break
        leaked[0].join(timeout=0.05)
    if leaked:
        pytest.fail(f"test leaked threads: {sorted(t.name for t in leaked)}", pytrace=False)
