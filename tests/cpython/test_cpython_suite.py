"""CPython 3.13's own executor tests pass for poolwatch's pools as for the stdlib.

For each kind (``harness.KINDS``: the thread-pool tests for ``ManagedPool``, the
process-pool tests on spawn and forkserver for ``ManagedProcessPool``) both runs go side
by side under ``.venv313`` (see ``harness.py``): the stdlib as it ships (the control,
which shows the selection and the harness are sound) and poolwatch's executor put in its
place, also in the fresh interpreters some tests start. With ``PYTHONPATH=/other/src``
in front, poolwatch comes from that tree instead.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from cpython import harness
from support import IN_CI

LONGEST = max(kind.budget for kind in harness.KINDS.values())
pytestmark = [pytest.mark.cpython, pytest.mark.timeout(LONGEST + 60)]


def unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module", params=sorted(harness.KINDS))
def runs(request: pytest.FixtureRequest) -> dict[str, harness.SuiteRun]:
    python = harness.find_python313()
    if python is None:
        unavailable("no Python 3.13 (set POOLWATCH_PY313, or install it with pyenv)")
    problem = harness.interpreter_problem(python)
    if problem:
        unavailable(problem)
    venv = harness.venv_python()
    if not os.access(venv, os.X_OK):
        unavailable(f"{venv} is missing: scripts/test.sh creates it")
    problem = harness.interpreter_problem(str(venv))
    if problem:
        unavailable(f"{problem} (scripts/test.sh creates .venv313)")
    control, managed = harness.run_suites(str(venv), [False, True], harness.KINDS[request.param])
    return {"control": control, "poolwatch": managed}


def check(ok: bool, report: str) -> None:
    if not ok:
        pytest.fail(report, pytrace=False)


def test_stdlib_passes_the_selection(runs: dict[str, harness.SuiteRun]) -> None:
    control = runs["control"]
    least = control.kind.min_tests
    check(
        len(control.outcomes) >= least,
        f"only {len(control.outcomes)} tests chosen, expected {least} or more:\n"
        + control.report(),
    )
    check(not control.failures and not control.problems, control.report())
    check(not control.substitution_problems(), control.report(details=False))


def test_poolwatch_passes_cpython_tests(runs: dict[str, harness.SuiteRun]) -> None:
    managed, control = runs["poolwatch"], runs["control"]
    check(
        sorted(managed.outcomes) == sorted(control.outcomes),
        "the poolwatch run chose other tests than the control:\n" + managed.report(),
    )
    check(
        managed.skipped == control.skipped,
        "the poolwatch run skipped other tests than the control:\n" + managed.report(),
    )
    check(not managed.failures and not managed.problems, managed.report())


def test_every_executor_was_poolwatch(runs: dict[str, harness.SuiteRun]) -> None:
    """The substitution reached the test processes and the scripts' fresh interpreters."""
    managed = runs["poolwatch"]
    check(not managed.substitution_problems(), managed.report(details=False))
