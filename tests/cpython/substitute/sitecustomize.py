"""Start-up hook of every interpreter in a run of CPython's executor tests (tests/cpython).

This directory goes on ``PYTHONPATH``; ``POOLWATCH_CONFORMANCE`` says what to do:

- ``substitute``: ``concurrent.futures.ThreadPoolExecutor`` and
  ``concurrent.futures.thread.ThreadPoolExecutor`` become ``poolwatch.ThreadPoolExecutor``
  before any test module imports them. A stdlib executor created anyway raises.
- ``observe``: nothing is replaced (the stdlib control run).

Either way a guard on the stdlib class records every executor created, its class, the
process and the running test, one JSON line each in ``POOLWATCH_CONFORMANCE_LOG``: the
harness checks from that record that the tests really ran poolwatch's executor, in
the test process and in the fresh interpreters the tests start.
"""

from __future__ import annotations

import json
import os
from typing import Any

MODE = os.environ.get("POOLWATCH_CONFORMANCE", "")
LOG = os.environ.get("POOLWATCH_CONFORMANCE_LOG", "")
TEST_ENV = "POOLWATCH_CONFORMANCE_TEST"


def record(kind: str, cls: type, **extra: Any) -> None:
    event = {
        "kind": kind,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "pid": os.getpid(),
        "test": os.environ.get(TEST_ENV, ""),
        **extra,
    }
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(event) + "\n")


def fallback_factory() -> Any:
    """A stdlib-signature constructor over ``PoolManager.create_pool``.

    Only for an engine that has no ``poolwatch.ThreadPoolExecutor`` yet: a run through
    it is reported as such and fails, so it cannot pass for the real constructor.
    """
    import itertools

    from prometheus_client import CollectorRegistry

    import poolwatch

    manager = poolwatch.PoolManager(registry=CollectorRegistry())
    numbers = itertools.count(1)

    class ThreadPoolExecutor:
        # A class, as the real one: the tests keep it as a class attribute and call
        # it through ``self``, which would bind a plain function.
        def __new__(
            cls,
            max_workers: int | None = None,
            thread_name_prefix: str = "",
            initializer: Any = None,
            initargs: tuple[Any, ...] = (),
            **settings: Any,
        ) -> Any:
            if max_workers is None:
                max_workers = min(32, (os.process_cpu_count() or 1) + 4)  # the stdlib's
            if thread_name_prefix:
                settings["thread_name_prefix"] = thread_name_prefix
            if initializer is not None:
                settings["initializer"] = initializer
                settings["initargs"] = initargs
            pool = manager.create_pool(
                f"cpython-{next(numbers)}", max_workers=max_workers, **settings
            )
            record("shim", type(pool))
            return pool

    return ThreadPoolExecutor


def install() -> None:
    import concurrent.futures
    import concurrent.futures.thread

    stdlib = concurrent.futures.thread.ThreadPoolExecutor
    substitute = MODE == "substitute"

    def guarded_new(cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls is stdlib:
            record("stdlib", cls)
            if substitute:
                raise RuntimeError(
                    "conformance run: the stdlib ThreadPoolExecutor itself was created; "
                    "the substitution missed this path"
                )
        else:
            record("subclass", cls)
        return object.__new__(cls)

    stdlib.__new__ = staticmethod(guarded_new)  # type: ignore[assignment]
    if not substitute:
        record("startup", stdlib, substitute=None)
        return
    # poolwatch first: its classes must derive from the real stdlib executor.
    try:
        import poolwatch
    except BaseException as exc:
        record("startup", stdlib, substitute=None, error=f"import poolwatch: {exc!r}")
        raise

    factory = getattr(poolwatch, "ThreadPoolExecutor", None)
    name = "poolwatch.ThreadPoolExecutor"
    if factory is None:
        factory, name = fallback_factory(), "fallback shim over PoolManager.create_pool"
    concurrent.futures.ThreadPoolExecutor = factory  # type: ignore[misc]
    concurrent.futures.thread.ThreadPoolExecutor = factory  # type: ignore[misc]
    record("startup", stdlib, substitute=name, poolwatch=os.path.dirname(poolwatch.__file__))


if MODE and LOG:
    install()
