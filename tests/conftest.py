from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from support import fail_on_leaked_threads


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads behind (after giving them a moment to end)."""
    before = set(threading.enumerate())
    yield
    fail_on_leaked_threads(before)
