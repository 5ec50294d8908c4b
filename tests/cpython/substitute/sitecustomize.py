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

    factory = poolwatch.ThreadPoolExecutor
    name = "poolwatch.ThreadPoolExecutor"
    concurrent.futures.ThreadPoolExecutor = factory  # type: ignore[misc]
    concurrent.futures.thread.ThreadPoolExecutor = factory  # type: ignore[misc]
    if os.environ.get("POOLWATCH_CONFORMANCE_KIND") == "process":
        import concurrent.futures.process

        processes = poolwatch.ProcessPoolExecutor
        concurrent.futures.ProcessPoolExecutor = processes  # type: ignore[misc]
        concurrent.futures.process.ProcessPoolExecutor = processes  # type: ignore[misc]
        name += " and poolwatch.ProcessPoolExecutor"
    record("startup", stdlib, substitute=name, poolwatch=os.path.dirname(poolwatch.__file__))


if MODE and LOG:
    install()
