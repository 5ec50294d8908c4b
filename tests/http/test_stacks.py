"""Live stacks: ``capture_stack``, ``PoolManager.task_stack`` and ``GET /api/tasks/{id}/stack``."""

from __future__ import annotations

import dataclasses
import threading

import httpx
import pytest

from poolwatch import PoolManager, StackFrame, TaskStack, current_task
from poolwatch.errors import TaskNotRunningError
from poolwatch.http import create_app
from poolwatch.http.serialize import stack_json
from poolwatch.stacks import capture_stack
from poolwatch.tasks import get_task_type
from support import wait_until

HERE = __file__


def _running(manager: PoolManager, task_id: str) -> bool:
    return manager.get_task(task_id).state.value == "running"


def _held_work(release: threading.Event) -> str:
    return _deeper(release)


def _deeper(release: threading.Event) -> str:
    release.wait(30)
    return "done"


def _recurse(depth: int, release: threading.Event) -> int:
    if depth == 0:
        release.wait(30)
        return 0
    return _recurse(depth - 1, release) + 1


def test_stack_of_a_running_task_starts_at_its_function(
    manager: PoolManager, release: threading.Event
) -> None:
    pool = manager.create_pool("st", max_workers=1)
    future = pool.submit(_held_work, release)
    wait_until(lambda: _running(manager, future.task_id), message="task running")
    stack = manager.task_stack(future.task_id)
    assert isinstance(stack, TaskStack)
    assert (stack.task_id, stack.pool, stack.thread) == (future.task_id, "st", "st_0")
    names = [f.function for f in stack.frames]
    # The task's own function first (no worker-loop or threading frames), innermost last.
    assert names[:2] == ["_held_work", "_deeper"]
    assert names[-1] in {"Event.wait", "Condition.wait"}
    own = [f for f in stack.frames if not f.library]
    assert [f.function for f in own] == ["_held_work", "_deeper"]
    assert all(f.file == HERE for f in own)
    assert all(f.library and f.file.endswith("threading.py") for f in stack.frames[2:])
    deeper = stack.frames[1]
    assert deeper.source == "release.wait(30)"
    assert deeper.line > 0
    assert not stack.truncated
    assert all("poolwatch" not in f.file.split("/")[-2:] for f in stack.frames)
    release.set()
    future.result(timeout=10)


def test_stack_is_bounded_in_depth_and_source_length(
    manager: PoolManager, release: threading.Event
) -> None:
    pool = manager.create_pool("deep", max_workers=1)
    future = pool.submit(_recurse, 200, release)
    wait_until(lambda: _running(manager, future.task_id), message="task running")
    threads = [t for t in threading.enumerate() if t.name == "deep_0"]
    ident = threads[0].ident
    assert ident is not None
    stack = capture_stack(ident, task_id="x", pool="deep", thread="t", max_frames=5, max_source=8)
    assert stack is not None
    assert stack.truncated
    assert len(stack.frames) == 5
    assert stack.frames[-1].function in {"Event.wait", "Condition.wait"}  # innermost kept
    assert all(f.source is None or len(f.source) <= 8 for f in stack.frames)
    assert any(f.source is not None and f.source.endswith("…") for f in stack.frames)
    whole = manager.task_stack(future.task_id)
    assert whole.truncated
    assert len(whole.frames) == 64
    release.set()
    assert future.result(timeout=10) == 200


def test_capture_stack_of_an_ended_thread_is_none() -> None:
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    assert thread.ident is not None
    assert capture_stack(thread.ident, task_id="t", pool="p", thread="x") is None
    with pytest.raises(ValueError, match="max_frames"):
        capture_stack(threading.get_ident(), task_id="t", pool="p", thread="x", max_frames=0)


def test_task_stack_refuses_unknown_queued_and_finished_tasks(
    manager: PoolManager, release: threading.Event
) -> None:
    with pytest.raises(KeyError):
        manager.task_stack("1-ffff")
    with pytest.raises(KeyError):
        manager.task_stack("not an id")
    pool = manager.create_pool("q", max_workers=1)
    pool.pause()
    queued = pool.submit(_held_work, release)
    with pytest.raises(TaskNotRunningError, match="queued, not running"):
        manager.task_stack(queued.task_id)
    pool.resume()
    release.set()
    queued.result(timeout=10)
    with pytest.raises(TaskNotRunningError, match="succeeded, not running"):
        manager.task_stack(queued.task_id)


def test_stack_json_has_the_documented_shape() -> None:
    frame = StackFrame(file="/app/x.py", line=3, function="f", source="x()", library=False)
    stack = TaskStack("1-1", "p", "w", 1_700_000_000.25, (frame,), truncated=False)
    assert stack_json(stack) == {
        "task_id": "1-1",
        "pool": "p",
        "thread": "w",
        "taken_at": "2023-11-14T22:13:20.250000Z",
        "truncated": False,
        "frames": [dataclasses.asdict(frame)],
    }


def test_stack_endpoint_answers_200_404_and_409(
    client, manager: PoolManager, gate, assert_error
) -> None:
    manager.create_pool("api", max_workers=1)
    running = client.post("/api/pools/api/tasks", json={"task": "pwtest.wait", "args": ["s1"]})
    task_id = running.json()["id"]
    wait_until(lambda: _running(manager, task_id), message="task running")
    queued = client.post("/api/pools/api/tasks", json={"task": "pwtest.wait", "args": ["s2"]})
    body = client.get(f"/api/tasks/{task_id}/stack").json()
    assert set(body) == {"task_id", "pool", "thread", "taken_at", "truncated", "frames"}
    assert body["task_id"] == task_id
    assert body["taken_at"].endswith("Z")
    assert body["frames"][0]["function"] == "wait"  # the task's function (pwtest.wait)
    assert body["frames"][0]["library"] is False
    assert {frozenset(f) for f in body["frames"]} == {
        frozenset({"file", "line", "function", "source", "library"})
    }
    assert_error(
        client.get(f"/api/tasks/{queued.json()['id']}/stack"), 409, "task_not_running", "queued"
    )
    assert_error(client.get("/api/tasks/9-9/stack"), 404, "task_not_found")
    assert_error(client.get("/api/tasks/%00%ff/stack"), 404, "task_not_found")
    gate("s1").set()
    gate("s2").set()
    wait_until(lambda: manager.get_task(task_id).state.finished, message="finished")
    assert_error(client.get(f"/api/tasks/{task_id}/stack"), 409, "task_not_running", "succeeded")


def test_stack_endpoint_on_a_live_server(manager: PoolManager, gate, live_server) -> None:
    pool = manager.create_pool("live", max_workers=2)
    future = pool.submit(get_task_type("pwtest.wait").fn, "live1")
    wait_until(lambda: _running(manager, future.task_id), message="task running")
    server = live_server(create_app(manager, bind_host="127.0.0.1"))
    response = httpx.get(f"{server.url}/api/tasks/{future.task_id}/stack", timeout=10)
    assert response.status_code == 200
    assert response.json()["thread"] == "live_0"
    gate("live1").set()
    future.result(timeout=10)


def test_cancel_request_is_visible_to_the_task_while_its_stack_is_read(
    manager: PoolManager,
) -> None:
    # Reading a stack never disturbs the task: it keeps running and sees its cancel.
    started = threading.Event()

    def cooperative() -> str:
        ctx = current_task()
        assert ctx is not None
        started.set()
        while not ctx.cancel_requested:
            threading.Event().wait(0.005)
        return "stopped"

    pool = manager.create_pool("coop", max_workers=1)
    future = pool.submit(cooperative)
    assert started.wait(10)
    for _ in range(50):
        assert manager.task_stack(future.task_id).frames[0].function.endswith("cooperative")
    assert pool.cancel(future.task_id) == "requested"
    assert future.result(timeout=10) == "stopped"
