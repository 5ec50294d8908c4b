"""The app under a real uvicorn server, driven over HTTP with httpx."""

from __future__ import annotations

import threading

import httpx

from poolwatch import PoolManager
from poolwatch.http import create_app
from poolwatch.records import TaskState
from poolwatch.tasks import get_task_type
from support import wait_until


def test_round_trip_over_http(manager: PoolManager, live_server) -> None:
    server = live_server(create_app(manager, bind_host="127.0.0.1"))
    with httpx.Client(base_url=server.url) as http:
        created = http.post("/api/pools", json={"name": "live", "max_workers": 2})
        assert created.status_code == 201
        submitted = http.post("/api/pools/live/tasks", json={"task": "pwtest.echo", "args": [5]})
        assert submitted.status_code == 202
        location = submitted.headers["location"]
        wait_until(lambda: http.get(location).json()["state"] == "succeeded", message="done")
        assert http.get("/api/tasks", params={"pool": "live"}).json()["pagination"]["total"] == 1
        assert 'poolwatch_pool_max_workers{pool="live"}' in http.get("/metrics").text
        assert http.put("/api/pools").status_code == 405
        assert http.get("/missing").json()["error"]["code"] == "not_found"


def test_a_waiting_delete_does_not_block_other_requests(
    manager: PoolManager, live_server, gate
) -> None:
    server = live_server(create_app(manager, bind_host="127.0.0.1"))
    pool = manager.create_pool("slow", max_workers=1)
    running = pool.submit(get_task_type("pwtest.wait").fn, "live-delete")
    wait_until(lambda: running.info().state is TaskState.RUNNING, message="task running")
    results: list[httpx.Response] = []
    deleter = threading.Thread(
        target=lambda: results.append(httpx.delete(f"{server.url}/api/pools/slow", timeout=10))
    )
    deleter.start()
    wait_until(lambda: "slow" not in manager, message="removal started")
    # The DELETE is waiting for the running task; the server still answers at once.
    with httpx.Client(base_url=server.url, timeout=2) as http:
        for _ in range(5):
            assert http.get("/healthz").status_code == 200
            assert http.get("/api/pools").json() == {"data": []}
    assert not results
    gate("live-delete").set()
    deleter.join(timeout=10)
    assert results[0].status_code == 200
    assert results[0].json()["succeeded"] == 1


def test_caller_runs_task_runs_off_the_event_loop(manager: PoolManager, live_server, gate) -> None:
    server = live_server(create_app(manager, bind_host="127.0.0.1"))
    pool = manager.create_pool(
        "cr", max_workers=1, queue_capacity=1, rejection_policy="caller_runs"
    )
    wait_fn = get_task_type("pwtest.wait").fn
    running = pool.submit(wait_fn, "cr-busy")
    wait_until(lambda: running.info().state is TaskState.RUNNING, message="worker busy")
    pool.submit(wait_fn, "cr-busy")  # fills the queue
    results: list[httpx.Response] = []
    body = {"task": "pwtest.wait", "args": ["cr-caller"]}
    submitter = threading.Thread(
        target=lambda: results.append(
            httpx.post(f"{server.url}/api/pools/cr/tasks", json=body, timeout=10)
        )
    )
    submitter.start()
    wait_until(lambda: pool.stats().active == 2, message="task runs in the caller")
    # The submission is running the task in a server thread; the loop still serves.
    assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
    assert not results
    gate("cr-caller").set()
    submitter.join(timeout=10)
    assert results[0].status_code == 202
    assert manager.get_task(results[0].json()["id"]).state is TaskState.SUCCEEDED
    gate("cr-busy").set()


def test_a_process_pool_made_over_http(manager: PoolManager, live_server) -> None:
    """kind and its options through a real server: the pool runs tasks in processes, the
    API shows its kind, and an option its kind does not take is a JSON 422."""
    from process import proctasks  # registers proctest.pid

    server = live_server(create_app(manager, bind_host="127.0.0.1"))
    body = {"name": "procs", "max_workers": 1, "kind": "process", "max_tasks_per_child": 1}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        created = http.post("/api/pools", json={**body, "on_run_timeout": "kill"})
        assert created.status_code == 201, created.text
        assert created.json()["kind"] == "process"
        assert http.get("/api/pools/procs").json()["kind"] == "process"
        assert [p["kind"] for p in http.get("/api/pools").json()["data"]] == ["process"]
        ids = [
            http.post("/api/pools/procs/tasks", json={"task": "proctest.pid"}).json()["id"]
            for _ in range(2)
        ]
        for task_id in ids:
            wait_until(
                lambda t=task_id: http.get(f"/api/tasks/{t}").json()["state"] == "succeeded",
                timeout=60,
                message="process task done",
            )
        stats = manager.get_pool("procs").stats()
        assert (stats.succeeded, stats.failed) == (2, 0)
        assert manager.get_task(ids[0]).name == "proctest.pid"
        assert proctasks.pid_task.__module__ == "process.proctasks"
        thread_pool = {"name": "t", "max_workers": 1, "mp_context": "spawn"}
        refused = http.post("/api/pools", json=thread_pool)
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "invalid_field"
        assert "unexpected option 'mp_context' for a pool of kind 'thread'" in error["message"]
        deleted = http.delete("/api/pools/procs")
        assert deleted.status_code == 200
        assert deleted.json()["kind"] == "process"
