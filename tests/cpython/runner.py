"""Runs the chosen executor tests of one module of CPython's ``test_concurrent_futures``.

Started by ``harness.py`` under a CPython 3.13 interpreter, one process per module::

    python runner.py --module test_wait --events EVENTS --hang-dump DUMP [--skip IDS]
        [--exclude METHOD_NAMES]

It writes one JSON line per event to EVENTS: ``selected`` (the chosen test ids and this
process's pid), ``start`` and ``result`` per test, ``done`` at the end. Before each test
``faulthandler`` is armed to dump every thread's stack to DUMP and end the process when
the test outlives ``--per-test-timeout``; the harness then reports that test as hung and
starts a new runner for the tests after it. Between tests (a module's clean-up after
its last one, say) the watchdog stays armed, and after ``done`` it guards the
interpreter's own exit, so workers that never stop show up too.

With ``POOLWATCH_CONFORMANCE=substitute`` the interpreters the tests start for their
scripts (``assert_python_ok``) get this process's environment instead of running isolated
(``-I``), so the ``sitecustomize`` on ``PYTHONPATH`` substitutes poolwatch there as well.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import io
import json
import os
import sys
import sysconfig
import traceback
import unittest
from collections.abc import Callable, Iterator
from typing import IO, Any

from test import support
from test.support import script_helper

PACKAGE = "test.test_concurrent_futures"
TEST_ENV = "POOLWATCH_CONFORMANCE_TEST"
# Waits the tests bound by SHORT_TIMEOUT (30 s) end sooner, so a test that fails by
# waiting fails before the hang watchdog fires.
SHORT_TIMEOUT = 10.0
TRACEBACK_FRAMES = 3


#: ``POOLWATCH_CONFORMANCE_KIND=process``: the process-pool classes on the spawn and
#: forkserver start methods instead (``fork`` is never poolwatch's default).
KIND = os.environ.get("POOLWATCH_CONFORMANCE_KIND", "thread")


def selected(test: unittest.TestCase, module: str) -> bool:
    """Thread-pool classes, and ``test_future``'s, which need no executor at all (or, for
    the process kind, the spawn and forkserver process-pool classes)."""
    name = type(test).__name__
    if KIND == "process":
        return "ProcessPool" in name and ("Spawn" in name or "Forkserver" in name)
    return "ThreadPool" in name or module == "test_future"


def iter_tests(suite: unittest.TestSuite | unittest.TestCase) -> Iterator[unittest.TestCase]:
    if isinstance(suite, unittest.TestSuite):
        for item in suite:
            yield from iter_tests(item)
    else:
        yield suite


def short_id(test_id: str) -> str:
    return test_id.removeprefix(PACKAGE + ".")


def compact_traceback(err: tuple[Any, ...]) -> str:
    """The exception and the last few frames of the test's own code (not unittest's)."""
    kind, value, tb = err
    while tb is not None and "__unittest" in tb.tb_frame.f_globals:
        tb = tb.tb_next
    return "".join(traceback.format_exception(kind, value, tb, limit=-TRACEBACK_FRAMES)).rstrip()


class WarningTee(io.TextIOBase):
    """Passes text on to ``stream`` and hands a copy to ``sink``."""

    def __init__(self, stream: IO[str], sink: Callable[[str], None]) -> None:
        super().__init__()
        self.stream = stream
        self.sink = sink

    def write(self, text: str) -> int:
        self.sink(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


class EventResult(unittest.TestResult):
    """Writes each test's outcome as it ends, with a compact traceback."""

    def __init__(self, events: IO[str], hang_dump: IO[str], per_test_timeout: float) -> None:
        super().__init__()
        self.events = events
        self.hang_dump = hang_dump
        self.per_test_timeout = per_test_timeout
        self.outcome = "passed"
        self.details: list[str] = []
        self.warnings: list[str] = []

    def emit(self, **event: Any) -> None:
        self.events.write(json.dumps(event) + "\n")
        self.events.flush()

    def note_warning(self, text: str) -> None:
        self.warnings.append(text)

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self.outcome, self.details, self.warnings = "passed", [], []
        support.environment_altered = False
        os.environ[TEST_ENV] = short_id(test.id())
        self.emit(event="start", id=short_id(test.id()))
        faulthandler.dump_traceback_later(self.per_test_timeout, exit=True, file=self.hang_dump)

    def stopTest(self, test: unittest.TestCase) -> None:
        # Re-armed, not cancelled: what runs before the next test (or the module's
        # clean-up after the last) must not hang unseen either.
        faulthandler.dump_traceback_later(self.per_test_timeout, exit=True, file=self.hang_dump)
        os.environ.pop(TEST_ENV, None)
        if support.environment_altered and self.outcome == "passed":
            # What CPython's CI (--fail-env-changed) fails: threads left running.
            self.outcome = "env changed"
            self.details.append("".join(self.warnings).strip() or "environment altered")
        self.emit(
            event="result",
            id=short_id(test.id()),
            outcome=self.outcome,
            detail="\n".join(self.details),
        )
        support.environment_altered, self.warnings = False, []
        super().stopTest(test)

    def _fail(self, test: Any, outcome: str, text: str) -> None:
        if not isinstance(test, unittest.TestCase) or not hasattr(test, "_testMethodName"):
            # A module or class fixture (setUpModule, cleanups): no start/stop around it.
            self.emit(event="fixture", id=str(test), outcome=outcome, detail=text)
            return
        if self.outcome == "passed" or outcome != "skipped":
            self.outcome = outcome
        self.details.append(text)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._fail(test, "error", compact_traceback(err))

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._fail(test, "failed", compact_traceback(err))

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._fail(
                test, "failed" if failed else "error", f"{subtest}:\n{compact_traceback(err)}"
            )

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._fail(test, "skipped", reason)

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._fail(test, "failed", "unexpected success")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--module", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--hang-dump", required=True)
    parser.add_argument("--skip", default="[]", help="JSON list of test ids already run")
    parser.add_argument(
        "--exclude", default="[]", help="JSON list of test method names left out (differences)"
    )
    parser.add_argument("--per-test-timeout", type=float, default=20.0)
    parser.add_argument("--exit-timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    support.SHORT_TIMEOUT = SHORT_TIMEOUT
    if os.environ.get("POOLWATCH_CONFORMANCE") == "substitute":
        # The helper's own switch for interpreters that need their environment.
        flag = "__cached_interp_requires_environment"
        if flag not in vars(script_helper):
            raise SystemExit(f"test.support.script_helper has no {flag}; update runner.py")
        setattr(script_helper, flag, True)
    module = importlib.import_module(f"{PACKAGE}.{args.module}")
    excluded = set(json.loads(args.exclude))
    tests = [
        t
        for t in iter_tests(unittest.defaultTestLoader.loadTestsFromModule(module))
        if selected(t, args.module) and t._testMethodName not in excluded
    ]
    skip = set(json.loads(args.skip))
    # The dump file stays open to the end: the watchdog also guards the interpreter's exit.
    dump = open(args.hang_dump, "w")  # noqa: SIM115
    with open(args.events, "a", encoding="utf-8") as events:
        result = EventResult(events, dump, args.per_test_timeout)
        # threading_cleanup() reports the threads a test left through print_warning.
        warnings = support.print_warning
        warnings.orig_stderr = WarningTee(warnings.orig_stderr, result.note_warning)  # type: ignore[attr-defined]
        result.emit(
            event="selected",
            pid=os.getpid(),
            stdlib=sysconfig.get_paths()["stdlib"],
            ids=[short_id(t.id()) for t in tests],
        )
        unittest.TestSuite([t for t in tests if short_id(t.id()) not in skip]).run(result)
        if support.environment_altered:  # by the module's cleanup, after its last test
            result.emit(
                event="fixture",
                id=f"module cleanup of {args.module}",
                outcome="env changed",
                detail="".join(result.warnings).strip(),
            )
        result.emit(event="done")
    sys.stdout.flush()
    faulthandler.dump_traceback_later(args.exit_timeout, exit=True, file=dump)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
