"""Pool kinds: the facade every kind shares and the checks of ``kind`` and its options."""

from __future__ import annotations

from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest

from poolwatch import ManagedPool, PoolManager
from poolwatch.pool import PoolBase


def test_a_thread_pool_is_a_pool_base_and_a_thread_pool_executor(manager: PoolManager) -> None:
    pool = manager.create_pool("threads", max_workers=1)
    assert isinstance(pool, ManagedPool)
    assert isinstance(pool, PoolBase)
    assert isinstance(pool, ThreadPoolExecutor)
    assert isinstance(pool, Executor)
    assert not isinstance(pool, ProcessPoolExecutor)
    assert pool.kind == "thread"
    assert repr(pool) == "<ManagedPool 'threads' kind=thread max_workers=1>"
    assert manager.get_pool("threads") is pool


def test_an_unknown_kind_is_refused_by_name(manager: PoolManager) -> None:
    kind: Any = "fibres"
    with pytest.raises(
        ValueError, match=r"kind must be one of 'thread', 'process'.*got \"fibres\""
    ):
        manager.create_pool("p", kind=kind)
    assert "p" not in manager


def test_an_option_the_kind_does_not_take_is_refused_naming_it(manager: PoolManager) -> None:
    options: dict[str, Any] = {"mp_context": None, "colour": "red"}
    with pytest.raises(TypeError) as caught:
        manager.create_pool("p", **options)
    assert "'mp_context', 'colour'" in str(caught.value)
    assert "kind 'thread'" in str(caught.value)
    assert "p" not in manager
