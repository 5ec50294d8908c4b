"""The /api/pools routes: every status code and shape."""

from __future__ import annotations

import dataclasses
import threading

from poolwatch import PoolManager
from poolwatch.records import PoolState, PoolStats, TaskState
from poolwatch.tasks import get_task_type
from support import wait_until

POOL_FIELDS = {f.name for f in dataclasses.fields(PoolStats)} | {"kind"}


def test_list_pools_carries_every_stats_field(client, manager: PoolManager) -> None:
    manager.create_pool("beta", max_workers=2)
    manager.create_pool("alpha", max_workers=1, queue_capacity=5)
    response = client.get("/api/pools")
    assert response.status_code == 200
    data = response.json()["data"]
    assert [p["name"] for p in data] == ["alpha", "beta"]
    assert set(data[0]) == POOL_FIELDS
    assert data[0]["queue_capacity"] == 5
    assert data[1]["queue_capacity"] is None
    assert data[0]["state"] == "running"
    assert data[0]["kind"] == "thread"


def test_create_pool_returns_201_with_location(client, manager: PoolManager) -> None:
    body = {
        "name": "jobs",
        "max_workers": 3,
        "queue_capacity": 10,
        "rejection_policy": "discard_oldest",
        "queue_timeout": 2.5,
        "run_timeout": 4,
    }
    response = client.post("/api/pools", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/api/pools/jobs"
    pool = response.json()
    assert pool["max_workers"] == 3
    assert pool["rejection_policy"] == "discard_oldest"
    assert pool["queue_timeout"] == 2.5
    assert pool["run_timeout"] == 4.0
    assert manager.get_pool("jobs").stats().queue_capacity == 10


def test_duplicate_pool_is_409(client, manager: PoolManager, assert_error) -> None:
    manager.create_pool("jobs", max_workers=1)
    response = client.post("/api/pools", json={"name": "jobs", "max_workers": 1})
    assert_error(response, 409, "pool_exists", "jobs")


def test_create_pool_rejects_bad_fields_naming_them(client, assert_error) -> None:
    cases = [
        ({"name": "x", "max_workers": "ten"}, "max_workers must be greater than 0", '"ten"'),
        ({"name": "x", "max_workers": 0}, "max_workers must be greater than 0", "got 0"),
        ({"name": "x", "max_workers": True}, "max_workers", "true"),
        (
            {"name": "x"},
            "max_workers is required",
        ),
        (
            {"max_workers": 1},
            "name is required",
        ),
        (
            {"name": "bad name!", "max_workers": 1},
            "name must match",
        ),
        ({"name": "x", "max_workers": 1, "rejection_policy": "drop"}, '"abort"', '"drop"'),
        ({"name": "x", "max_workers": 1, "queue_timeout": -1}, "queue_timeout", "> 0"),
        ({"name": "x", "max_workers": 1, "queue_capacity": -1}, "queue_capacity", "from 0 to"),
        (
            {"name": "x", "max_workers": 1, "color": "red"},
            "unknown field color",
        ),
        (
            {"name": "x", "max_workers": 1, "max_worker": 2},
            'did you mean "max_workers"',
        ),
    ]
    for body, *words in cases:
        assert_error(client.post("/api/pools", json=body), 422, None, *words)


def test_unpaired_surrogate_in_a_body_is_echoed_escaped(
    client, manager: PoolManager, assert_error
) -> None:
    # "\ud800" is valid JSON syntax but not encodable text: errors that quote it must
    # still be JSON (with the escape), never a 500.
    manager.create_pool("p", max_workers=1)
    headers = {"content-type": "application/json"}
    cases = [
        ("/api/pools", b'{"name": "x", "max_workers": "\\ud800"}', "max_workers"),
        ("/api/pools", b'{"name": "x", "max_workers": 1, "\\udfff": 1}', "unknown field"),
        ("/api/pools/p/tasks", b'{"task": "\\ud800"}', "is not registered"),
    ]
    for url, body, words in cases:
        response = client.post(url, content=body, headers=headers)
        message = assert_error(response, 422, None, words)
        assert "\ud800" in message or "\udfff" in message


def test_body_must_be_an_object(client, assert_error) -> None:
    assert_error(client.post("/api/pools", json=[1, 2]), 422, "invalid_field", "must be an object")


def test_get_pool_and_404(client, manager: PoolManager, assert_error) -> None:
    manager.create_pool("one", max_workers=1)
    response = client.get("/api/pools/one")
    assert response.status_code == 200
    assert response.json()["name"] == "one"
    assert_error(client.get("/api/pools/nope"), 404, "pool_not_found", "nope")


def test_patch_reconfigures_pauses_and_resumes(client, manager: PoolManager) -> None:
    manager.create_pool("p", max_workers=1)
    response = client.patch(
        "/api/pools/p",
        json={"max_workers": 4, "queue_capacity": 3, "run_timeout": None, "paused": True},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["max_workers"] == 4
    assert body["queue_capacity"] == 3
    assert body["state"] == "paused"
    assert manager.get_pool("p").stats().max_workers == 4
    response = client.patch("/api/pools/p", json={"paused": False, "queue_capacity": None})
    assert response.json()["state"] == "running"
    assert response.json()["queue_capacity"] is None


def test_patch_errors(client, manager: PoolManager, assert_error) -> None:
    manager.create_pool("p", max_workers=1)
    assert_error(client.patch("/api/pools/nope", json={"paused": True}), 404, "pool_not_found")
    assert_error(client.patch("/api/pools/p", json={"paused": "yes"}), 422, None, "paused")
    assert_error(client.patch("/api/pools/p", json={"max_workers": None}), 422, None, "max_workers")
    assert_error(client.patch("/api/pools/p", json={"name": "q"}), 422, None, "unknown field name")
    assert_error(
        client.patch("/api/pools/p", content=b"{", headers={"content-type": "application/json"}),
        400,
        "invalid_json",
    )


def test_delete_returns_final_stats_and_removes(client, manager: PoolManager) -> None:
    pool = manager.create_pool("gone", max_workers=1)
    pool.submit(int, "7").result(timeout=5)
    response = client.delete("/api/pools/gone")
    assert response.status_code == 200, response.text
    final = response.json()
    assert final["name"] == "gone"
    assert final["succeeded"] == 1
    assert final["state"] == "terminated"
    assert [p.name for p in manager.pools()] == []
    assert client.get("/api/pools/gone").status_code == 404


def test_delete_cancel_pending_cancels_queued(client, manager: PoolManager, gate) -> None:
    pool = manager.create_pool("busy", max_workers=1)
    wait_fn = get_task_type("pwtest.wait").fn
    running = pool.submit(wait_fn, "delete-running")
    queued = [pool.submit(wait_fn, "delete-queued") for _ in range(3)]
    wait_until(lambda: running.info().state is TaskState.RUNNING, message="task started")
    responses = []
    deleter = threading.Thread(
        target=lambda: responses.append(
            client.delete("/api/pools/busy", params={"cancel_pending": "true"})
        )
    )
    deleter.start()
    wait_until(lambda: pool.state is not PoolState.RUNNING, message="pool shutting down")
    gate("delete-running").set()
    deleter.join(timeout=10)
    assert responses, "DELETE did not return"
    response = responses[0]
    assert response.status_code == 200, response.text
    assert running.result(timeout=5) == "delete-running"
    assert all(f.cancelled() for f in queued)
    assert response.json()["cancelled"] == 3
    assert response.json()["succeeded"] == 1


def test_delete_errors(client, manager: PoolManager, assert_error) -> None:
    manager.create_pool("p", max_workers=1)
    assert_error(client.delete("/api/pools/nope"), 404, "pool_not_found")
    assert_error(
        client.delete("/api/pools/p", params={"cancel_pending": "maybe"}),
        422,
        "invalid_field",
        "cancel_pending must be true or false",
    )
    assert_error(client.delete("/api/pools/p", params={"force": "1"}), 422, None, "force")
    assert manager.get_pool("p").name == "p"


def test_numbers_too_large_for_a_float_are_422_not_500(
    client, manager: PoolManager, assert_error
) -> None:
    manager.create_pool("p", max_workers=1)
    huge = 10**400  # a valid JSON integer that no float can hold
    for field in ("queue_timeout", "run_timeout"):
        response = client.post("/api/pools", json={"name": "a", "max_workers": 1, field: huge})
        assert_error(response, 422, "invalid_field", field, "<= 2592000", "1000000")
        response = client.patch("/api/pools/p", json={field: huge})
        assert_error(response, 422, "invalid_field", field, "<= 2592000")
        response = client.patch("/api/pools/p", json={field: -huge})
        assert_error(response, 422, "invalid_field", field, "> 0")
    assert [p.name for p in manager.pools()] == ["p"]
    assert manager.get_pool("p").stats().run_timeout is None


def test_patch_of_a_stopped_pool_is_409(client, manager: PoolManager, gate, assert_error) -> None:
    closed = manager.create_pool("closed", max_workers=1)
    closed.shutdown(wait=True)
    stopping = manager.create_pool("stopping", max_workers=1)
    stopping.submit(get_task_type("pwtest.wait").fn, "patch-stopping")
    stopping.shutdown(wait=False)
    assert stopping.state is PoolState.SHUTTING_DOWN
    for name, state in (("closed", "terminated"), ("stopping", "shutting down")):
        for body in ({"paused": True}, {"max_workers": 4}, {"run_timeout": 5, "paused": False}):
            response = client.patch(f"/api/pools/{name}", json=body)
            assert_error(response, 409, "pool_shut_down", name, state, "create a new pool")
    gate("patch-stopping").set()
    wait_until(lambda: stopping.state is PoolState.TERMINATED, message="pool terminated")
    assert closed.stats().max_workers == 1
    assert stopping.stats().max_workers == 1
    assert stopping.stats().run_timeout is None
