"""The conformance harness's own judgement: what counts as a run that tested poolwatch."""

from __future__ import annotations

from typing import Any

from cpython import harness

RUNNER_PID = 100
FRESH_PID = 200


def executor(kind: str, test: str = "", pid: int = RUNNER_PID, **extra: Any) -> dict[str, Any]:
    cls = "concurrent.futures.thread.ThreadPoolExecutor"
    if kind in ("subclass", "shim"):
        cls = "poolwatch.executor.ThreadPoolExecutor"
    return {"kind": kind, "class": cls, "pid": pid, "test": test, **extra}


def substituted_run(*extra: dict[str, Any]) -> harness.SuiteRun:
    """A run whose record shows poolwatch everywhere it has to be."""
    run = harness.SuiteRun("poolwatch", substitute=True, runner_pids={RUNNER_PID})
    run.executors = [
        executor("startup", substitute="poolwatch.ThreadPoolExecutor", poolwatch="/src"),
        executor("subclass", "test_wait.ThreadPoolWaitTests.test_timeout"),
        *(executor("subclass", t, FRESH_PID) for t in harness.THREAD.fresh_interpreter_tests),
        *extra,
    ]
    return run


def test_a_run_with_poolwatch_everywhere_passes() -> None:
    assert substituted_run().substitution_problems() == []


def test_a_stdlib_executor_in_a_substituted_run_is_reported() -> None:
    run = substituted_run(executor("stdlib", "test_x.ThreadPoolTest.test_y", FRESH_PID))
    (problem,) = run.substitution_problems()
    assert "the stdlib ThreadPoolExecutor was created 1 times" in problem
    assert "test_x.ThreadPoolTest.test_y" in problem


def test_a_fresh_interpreter_without_poolwatch_is_reported() -> None:
    run = substituted_run()
    missing = harness.THREAD.fresh_interpreter_tests[0]
    run.executors = [e for e in run.executors if e["test"] != missing]
    assert run.substitution_problems() == [
        f"{missing}: its fresh interpreter created no poolwatch executor"
    ]


def test_the_fallback_shim_and_start_up_errors_fail_the_run() -> None:
    shim = executor("startup", substitute="fallback shim over PoolManager.create_pool")
    broken = executor("startup", substitute=None, error="import poolwatch: ImportError()")
    problems = substituted_run(shim, broken).substitution_problems()
    assert any("does not exist: ran through the fallback shim" in p for p in problems)
    assert any("substitution failed at start-up: import poolwatch" in p for p in problems)


def test_a_control_run_must_show_the_stdlib_executor() -> None:
    control = harness.SuiteRun("stdlib control", substitute=False, runner_pids={RUNNER_PID})
    assert control.substitution_problems() == [
        "the guard saw no stdlib ThreadPoolExecutor in the control run"
    ]
    control.executors = [executor("stdlib", "test_wait.ThreadPoolWaitTests.test_timeout")]
    assert control.substitution_problems() == []


def test_a_hang_is_summed_up_by_the_test_thread_frames() -> None:
    dump = (
        "Timeout (0:00:20)!\n"
        "Thread 0x1 (most recent call first):\n"
        '  File "/lib/poolwatch/engine.py", line 9 in _work\n'
        "\n"
        "Thread 0x2 (most recent call first):\n"
        '  File "/lib/threading.py", line 1092 in join\n'
        '  File "/lib/test/test_concurrent_futures/test_shutdown.py", line 190 in test_del\n'
        '  File "/lib/unittest/case.py", line 606 in _callTestMethod\n'
    )
    assert harness.hang_cause(dump) == (
        f"no result within {harness.PER_TEST_TIMEOUT:.0f}s, stuck at /lib/threading.py, "
        "line 1092 in join <- /lib/test/test_concurrent_futures/test_shutdown.py, line 190 "
        "in test_del"
    )


def test_failures_list_every_test_that_did_not_pass() -> None:
    run = harness.SuiteRun("poolwatch", substitute=True)
    run.outcomes = {
        "a": harness.Outcome("a", "passed"),
        "b": harness.Outcome("b", "hung", "stack\nno result within 20s"),
        "c": harness.Outcome("c", "env changed", "Dangling thread"),
    }
    assert [o.id for o in run.failures] == ["b", "c"]
    report = run.report()
    assert "1 of 3 passed" in report
    assert "HUNG  b: no result within 20s" in report


def test_the_process_kind_guards_the_process_pool_executor() -> None:
    kind = harness.PROCESS
    run = harness.SuiteRun("poolwatch", substitute=True, runner_pids={RUNNER_PID}, kind=kind)

    def made(record: str, test: str, pid: int = RUNNER_PID) -> dict[str, Any]:
        cls = "concurrent.futures.process.ProcessPoolExecutor"
        if record == "subclass":
            cls = "poolwatch.pool.ManagedProcessPool"
        return {"kind": record, "class": cls, "pid": pid, "test": test,
                "executor": kind.executor}  # fmt: skip

    both = "poolwatch.ThreadPoolExecutor and poolwatch.ProcessPoolExecutor"
    run.executors = [
        executor("startup", substitute=both, poolwatch="/src"),
        made("subclass", "test_wait.ProcessPoolSpawnWaitTest.test_timeout"),
        *(made("subclass", t, FRESH_PID) for t in kind.fresh_interpreter_tests),
        # A thread pool made in a process-pool run is not what the run is about.
        executor("stdlib", "test_wait.ProcessPoolSpawnWaitTest.test_timeout"),
    ]
    assert run.substitution_problems() == []
    run.executors.append(made("stdlib", "test_x.ProcessPoolSpawnTest.test_y"))
    (problem,) = run.substitution_problems()
    assert problem.startswith("the stdlib ProcessPoolExecutor was created 1 times")
    assert set(kind.excluded) == {
        "test_killed_child", "test_max_tasks_per_child_defaults_to_spawn_context",
    }  # fmt: skip
