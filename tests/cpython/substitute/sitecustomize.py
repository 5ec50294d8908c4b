"""Start-up hook of every interpreter in a run of CPython's executor tests (tests/cpython).

This directory goes on ``PYTHONPATH``; ``POOLWATCH_CONFORMANCE`` says what to do:

- ``substitute``: ``concurrent.futures.ThreadPoolExecutor`` and
  ``concurrent.futures.thread.ThreadPoolExecutor`` become ``poolwatch.ThreadPoolExecutor``
  before any test module imports them (and, with ``POOLWATCH_CONFORMANCE_KIND=process``,
  the ``ProcessPoolExecutor`` names become ``poolwatch.ProcessPoolExecutor``). A stdlib
  executor of the substituted kind created anyway raises.
- ``observe``: nothing is replaced (the stdlib control run).

Either way a guard on the stdlib class records every executor created, its class, the
stdlib executor it is (``executor``), the process and the running test, one JSON line
each in ``POOLWATCH_CONFORMANCE_LOG``: the harness checks from that record that the tests
really ran poolwatch's executor, in the test process and in the fresh interpreters the
tests start.
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


def guard(stdlib: type, substitute: bool) -> None:
    """Record every executor of class ``stdlib`` or a subclass; with ``substitute`` the
    stdlib class itself must not be created."""
    executor = stdlib.__name__

    def guarded_new(cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls is stdlib:
            record("stdlib", cls, executor=executor)
            if substitute:
                raise RuntimeError(
                    f"conformance run: the stdlib {executor} itself was created; "
                    "the substitution missed this path"
                )
        else:
            record("subclass", cls, executor=executor)
        return object.__new__(cls)

    stdlib.__new__ = staticmethod(guarded_new)  # type: ignore[assignment]


def install() -> None:
    import concurrent.futures
    import concurrent.futures.thread

    stdlib = concurrent.futures.thread.ThreadPoolExecutor
    substitute = MODE == "substitute"
    processes = os.environ.get("POOLWATCH_CONFORMANCE_KIND") == "process"
    guard(stdlib, substitute)
    if processes:
        import concurrent.futures.process

        guard(concurrent.futures.process.ProcessPoolExecutor, substitute)
    if not substitute:
        record("startup", stdlib, substitute=None)
        return
    # poolwatch first: its classes must derive from the real stdlib executor.
    try:
        import poolwatch
    except BaseException as exc:
        record("startup", stdlib, substitute=None, error=f"import poolwatch: {exc!r}")
        raise

    factory = poolwatch.ThreadPoolExecutor
    name = "poolwatch.ThreadPoolExecutor"
    concurrent.futures.ThreadPoolExecutor = factory  # type: ignore[misc]
    concurrent.futures.thread.ThreadPoolExecutor = factory  # type: ignore[misc]
    if processes:
        process_factory = poolwatch.ProcessPoolExecutor
        concurrent.futures.ProcessPoolExecutor = process_factory  # type: ignore[misc]
        concurrent.futures.process.ProcessPoolExecutor = process_factory  # type: ignore[misc]
        name += " and poolwatch.ProcessPoolExecutor"
    record("startup", stdlib, substitute=name, poolwatch=os.path.dirname(poolwatch.__file__))


if MODE and LOG:
    install()
