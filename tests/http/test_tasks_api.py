"""Submitting, listing, reading and cancelling tasks over /api."""

from __future__ import annotations

import dataclasses

from poolwatch import PoolManager
from poolwatch.http.serialize import dumps, pagination, task_json
from poolwatch.records import TaskInfo, TaskState
from poolwatch.tasks import get_task_type
from support import wait_until

TASK_FIELDS = {f.name for f in dataclasses.fields(TaskInfo)}


def _finished(manager: PoolManager, task_id: str) -> TaskInfo | None:
    info = manager.get_task(task_id)
    return info if info.state.finished else None


def test_submit_returns_202_with_location_and_runs(client, manager: PoolManager) -> None:
    manager.create_pool("p", max_workers=2)
    response = client.post("/api/pools/p/tasks", json={"task": "pwtest.echo", "args": [41]})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["pool"] == "p"
    assert body["task"] == "pwtest.echo"
    assert response.headers["location"] == f"/api/tasks/{body['id']}"
    info = wait_until(lambda: _finished(manager, body["id"]), message="task finished")
    assert info.state is TaskState.SUCCEEDED
    assert info.name == "pwtest.echo"

    task = client.get(response.headers["location"]).json()
    assert set(task) == TASK_FIELDS
    assert task["state"] == "succeeded"
    assert task["submitted_at"].endswith("Z")
    assert task["finished_at"].endswith("Z")
    assert task["error_type"] is None


def test_submit_with_kwargs(client, manager: PoolManager) -> None:
    manager.create_pool("p", max_workers=1)
    response = client.post(
        "/api/pools/p/tasks", json={"task": "pwtest.echo", "kwargs": {"value": 3, "note": "n"}}
    )
    assert response.status_code == 202, response.text


def test_failed_task_carries_error_and_traceback(client, manager: PoolManager) -> None:
    manager.create_pool("p", max_workers=1)
    response = client.post("/api/pools/p/tasks", json={"task": "pwtest.fail", "args": ["kaput"]})
    task_id = response.json()["id"]
    wait_until(lambda: _finished(manager, task_id), message="task finished")
    task = client.get(f"/api/tasks/{task_id}").json()
    assert task["state"] == "failed"
    assert task["error_type"].endswith("ValueError")
    assert task["error_message"] == "kaput"
    assert "ValueError" in task["traceback"]


def test_submit_errors(client, manager: PoolManager, assert_error) -> None:
    manager.create_pool("p", max_workers=1)
    url = "/api/pools/p/tasks"
    assert_error(client.post("/api/pools/nope/tasks", json={"task": "pwtest.echo"}), 404)
    assert_error(client.post(url, json={"task": "no.such"}), 422, "unknown_task", "pwtest.echo")
    assert_error(client.post(url, json={}), 422, "invalid_field", "task is required")
    assert_error(client.post(url, json={"task": 5}), 422, "invalid_field", "task must be a string")
    assert_error(
        client.post(url, json={"task": "pwtest.echo", "args": [1], "extra": 1}),
        422,
        "invalid_field",
        "unknown field extra",
    )
    assert_error(
        client.post(url, json={"task": "pwtest.echo", "args": {"value": 1}}),
        422,
        "invalid_field",
        "args must be an array",
    )
    assert_error(
        client.post(url, json={"task": "pwtest.echo"}),
        422,
        "invalid_arguments",
        "missing a required argument: 'value'",
    )
    assert_error(
        client.post(url, json={"task": "pwtest.echo", "args": [1, "a", 3]}),
        422,
        "invalid_arguments",
        "too many positional arguments",
    )
    assert_error(
        client.post(url, json={"task": "pwtest.echo", "kwargs": {"value": 1, "bogus": 2}}),
        422,
        "invalid_arguments",
        "bogus",
    )
    assert_error(
        client.post(url, json={"task": "pwtest.echo", "args": ["ten"]}),
        422,
        "invalid_arguments",
        'argument value of task pwtest.echo must be int, got "ten"',
    )
    assert_error(
        client.post(url, json={"task": "pwtest.echo", "args": [True]}),
        422,
        "invalid_arguments",
        "must be int",
    )
    assert manager.get_pool("p").stats().submitted == 0


def test_full_queue_is_503_with_reason_and_retry_after(
    client, manager: PoolManager, gate, assert_error
) -> None:
    manager.create_pool("tight", max_workers=1, queue_capacity=1)
    url = "/api/pools/tight/tasks"
    body = {"task": "pwtest.wait", "args": ["full-queue"]}
    first = client.post(url, json=body)
    assert first.status_code == 202
    wait_until(
        lambda: manager.get_task(first.json()["id"]).state is TaskState.RUNNING,
        message="first task running",
    )
    assert client.post(url, json=body).status_code == 202  # fills the queue
    response = client.post(url, json=body)
    assert_error(response, 503, "queue_full", "tight", "queue is full")
    assert response.headers["retry-after"] == "1"
    assert manager.get_pool("tight").stats().rejected == 1
    gate("full-queue").set()


def test_discarded_task_is_503(client, manager: PoolManager, gate, assert_error) -> None:
    manager.create_pool("d", max_workers=1, queue_capacity=1, rejection_policy="discard")
    url = "/api/pools/d/tasks"
    body = {"task": "pwtest.wait", "args": ["discard"]}
    first = client.post(url, json=body)
    wait_until(
        lambda: manager.get_task(first.json()["id"]).state is TaskState.RUNNING,
        message="first task running",
    )
    assert client.post(url, json=body).status_code == 202
    assert_error(client.post(url, json=body), 503, "queue_full", "dropped")
    gate("discard").set()


def test_submit_to_shut_down_pool_is_503(client, manager: PoolManager, assert_error) -> None:
    pool = manager.create_pool("closed", max_workers=1)
    pool.shutdown(wait=True)
    response = client.post("/api/pools/closed/tasks", json={"task": "pwtest.echo", "args": [1]})
    assert_error(response, 503, "shutdown")


def _submit_many(manager: PoolManager, pool: str, count: int) -> list[str]:
    fn = get_task_type("pwtest.echo").fn
    futures = [manager.get_pool(pool).submit(fn, i) for i in range(count)]
    for f in futures:
        f.result(timeout=5)
    return [f.task_id for f in futures]


def test_list_tasks_paginates_newest_first(client, manager: PoolManager) -> None:
    manager.create_pool("p", max_workers=1)
    ids = _submit_many(manager, "p", 7)
    first = client.get("/api/tasks", params={"per_page": 3}).json()
    assert [t["id"] for t in first["data"]] == ids[::-1][:3]
    assert first["pagination"] == {
        "page": 1,
        "per_page": 3,
        "total": 7,
        "total_pages": 3,
        "has_prev": False,
        "has_next": True,
    }
    last = client.get("/api/tasks", params={"per_page": 3, "page": 3}).json()
    assert [t["id"] for t in last["data"]] == [ids[0]]
    assert last["pagination"]["has_next"] is False
    assert last["pagination"]["has_prev"] is True
    beyond = client.get("/api/tasks", params={"per_page": 3, "page": 9}).json()
    assert beyond["data"] == []
    assert beyond["pagination"]["total"] == 7
    assert beyond["pagination"]["total_pages"] == 3
    assert beyond["pagination"]["has_next"] is False
    default = client.get("/api/tasks").json()
    assert default["pagination"]["per_page"] == 20
    assert len(default["data"]) == 7


def test_list_tasks_filters(client, manager: PoolManager) -> None:
    manager.create_pool("a", max_workers=1)
    manager.create_pool("b", max_workers=1)
    a_ids = _submit_many(manager, "a", 2)
    _submit_many(manager, "b", 3)
    manager.get_pool("b").submit(int, "1").result(timeout=5)
    by_pool = client.get("/api/tasks", params={"pool": "a"}).json()
    assert {t["id"] for t in by_pool["data"]} == set(a_ids)
    by_name = client.get("/api/tasks", params={"name": "pwtest.echo", "pool": "b"}).json()
    assert by_name["pagination"]["total"] == 3
    by_state = client.get("/api/tasks", params={"state": "succeeded"}).json()
    assert by_state["pagination"]["total"] == 6
    assert client.get("/api/tasks", params={"state": "failed"}).json()["data"] == []
    unknown_pool = client.get("/api/tasks", params={"pool": "zzz"}).json()
    assert unknown_pool["data"] == []
    assert unknown_pool["pagination"]["total"] == 0


def test_list_tasks_query_errors(client, assert_error) -> None:
    cases = [
        ({"page": "0"}, "page must be an integer >= 1"),
        ({"page": "x"}, 'got "x"'),
        ({"per_page": "201"}, "per_page must be an integer >= 1 and <= 200"),
        ({"per_page": "-1"}, "per_page"),
        ({"state": "done"}, "state must be one of"),
        ({"pool": "bad pool"}, "pool must be a string matching"),
        ({"sort": "asc"}, "unknown query parameter sort"),
    ]
    for params, words in cases:
        assert_error(client.get("/api/tasks", params=params), 422, "invalid_field", words)
    assert_error(client.get("/api/tasks?page=1&page=2"), 422, "invalid_field", "give it once")


def test_get_unknown_task_is_404(client, assert_error) -> None:
    assert_error(client.get("/api/tasks/nope"), 404, "task_not_found", "nope")


def test_cancel_queued_running_and_finished(client, manager: PoolManager, gate) -> None:
    manager.create_pool("c", max_workers=1)
    url = "/api/pools/c/tasks"
    running = client.post(url, json={"task": "pwtest.wait", "args": ["cancel"]}).json()["id"]
    queued = client.post(url, json={"task": "pwtest.wait", "args": ["cancel"]}).json()["id"]
    wait_until(lambda: manager.get_task(running).state is TaskState.RUNNING, message="running")

    assert client.post(f"/api/tasks/{queued}/cancel").json() == {"result": "cancelled"}
    assert manager.get_task(queued).state is TaskState.CANCELLED
    assert client.post(f"/api/tasks/{running}/cancel").json() == {"result": "requested"}
    info = wait_until(lambda: _finished(manager, running), message="cooperative cancel")
    assert info.state is TaskState.CANCELLED
    assert info.cancel_requested is True
    assert client.post(f"/api/tasks/{running}/cancel").json() == {"result": "finished"}


def test_cancel_unknown_task_is_404(client, assert_error) -> None:
    assert_error(client.post("/api/tasks/nope/cancel"), 404, "task_not_found")


def test_task_types_list_parameters(client) -> None:
    data = client.get("/api/task-types").json()["data"]
    by_name = {t["name"]: t for t in data}
    echo = by_name["pwtest.echo"]
    assert echo["description"] == "Return ``value``."
    assert echo["parameters"] == [
        {
            "name": "value",
            "kind": "positional_or_keyword",
            "annotation": "int",
            "required": True,
            "default": None,
        },
        {
            "name": "note",
            "kind": "positional_or_keyword",
            "annotation": "str",
            "required": False,
            "default": "",
        },
    ]
    assert [t["name"] for t in data] == sorted(by_name)


def test_stats_totals_across_pools(client, manager: PoolManager) -> None:
    manager.create_pool("a", max_workers=2)
    manager.create_pool("b", max_workers=3)
    _submit_many(manager, "a", 2)
    _submit_many(manager, "b", 1)
    stats = client.get("/api/stats").json()
    assert stats["pools"] == 2
    assert stats["max_workers"] == 5
    assert stats["submitted"] == 3
    assert stats["succeeded"] == 3
    assert stats["pool_states"] == {"running": 2}


def test_task_json_is_the_rendering_of_task_records(client, manager: PoolManager, gate) -> None:
    # Task pages and single tasks are written as JSON straight from the engine's fields;
    # they must be exactly what rendering the public TaskInfo records gives.
    manager.create_pool("x", max_workers=1)
    manager.create_pool("y", max_workers=2)
    x = manager.get_pool("x")
    _submit_many(manager, "y", 3)
    failing = client.post(
        "/api/pools/y/tasks", json={"task": "pwtest.fail", "args": ['naïve "quoted" ✓\n']}
    ).json()["id"]
    wait_until(lambda: _finished(manager, failing), message="failed task finished")
    wait = get_task_type("pwtest.wait").fn
    running = x.submit(wait, "render")
    queued = x.submit(wait, "render")
    cancelled = x.submit(wait, "render")
    assert x.cancel(cancelled.task_id) == "cancelled"
    wait_until(lambda: manager.get_task(running.task_id).state is TaskState.RUNNING,
               message="running")  # fmt: skip
    for params in ({}, {"pool": "y"}, {"state": "failed"}, {"per_page": 2, "page": 2}):
        response = client.get("/api/tasks", params=params)
        assert response.headers["content-type"] == "application/json"
        query = {"pool": params.get("pool"), "state": params.get("state")}
        per_page, page = params.get("per_page", 20), params.get("page", 1)
        records = manager.tasks(**query, offset=(page - 1) * per_page, limit=per_page)
        expected = {
            "data": [task_json(info) for info in records.items],
            "pagination": pagination(page, per_page, records.total),
        }
        assert response.text == dumps(expected), params
    states = {t["state"] for t in client.get("/api/tasks").json()["data"]}
    assert states == {"queued", "running", "succeeded", "failed", "cancelled"}
    for task_id in (failing, running.task_id, queued.task_id, cancelled.task_id):
        response = client.get(f"/api/tasks/{task_id}")
        assert response.text == dumps(task_json(manager.get_task(task_id)))
    gate("render").set()


def test_unpaired_surrogates_are_escaped_not_a_500(client, manager: PoolManager) -> None:
    # A task's exception message can hold an unpaired surrogate, which UTF-8 cannot
    # encode; listings and the task itself must still answer, with the escape.
    manager.create_pool("s", max_workers=1)
    response = client.post(
        "/api/pools/s/tasks",
        content=b'{"task": "pwtest.fail", "args": ["bad \\ud800 text"]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]
    wait_until(lambda: _finished(manager, task_id), message="failed task finished")
    assert manager.get_task(task_id).error_message == "bad \ud800 text"
    for url in ("/api/tasks", f"/api/tasks/{task_id}"):
        response = client.get(url)
        assert response.status_code == 200, response.text
        assert b"bad \\ud800 text" in response.content
    assert client.get("/api/tasks").json()["data"][0]["error_message"] == "bad \ud800 text"
