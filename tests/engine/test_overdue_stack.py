"""A task past its run timeout has its stack taken once, and keeps it in its record."""

from __future__ import annotations

import threading
from typing import Any

from poolwatch import TaskState
from support import wait_until


def hang_here(gate: threading.Event) -> str:
    gate.wait(10)
    return "done"


def test_overdue_task_keeps_the_stack_it_had(make_pool: Any, manager: Any, gates: Any) -> None:
    pool = make_pool(1, run_timeout=0.05)
    gate = gates.new()
    fut = pool.submit(hang_here, gate)
    info = wait_until(
        lambda: (i := fut.info()).overdue_stack is not None and i,
        message="the overdue task's stack is taken",
    )
    stack = info.overdue_stack
    own = [f.function for f in stack.frames if not f.library]
    assert own == ["hang_here"], own
    assert stack.frames[-1].function.endswith("wait"), "innermost frame last"
    assert stack.task_id == fut.task_id
    assert stack.thread == info.worker
    live = manager.task_stack(fut.task_id)
    assert [f.function for f in live.frames if not f.library] == ["hang_here"]
    gate.set()
    assert fut.result(timeout=10) == "done"
    after = fut.info()
    assert after.state is TaskState.SUCCEEDED
    assert after.overdue_stack == stack, "kept in the record after the task ended"
    assert pool.stats().run_timeouts == 1
