"""A family of executors over the API: one pool, its tasks, its settings."""

from __future__ import annotations

import threading

import poolwatch
from poolwatch import PoolManager
from support import wait_until


def request_handler(
    manager: PoolManager, gate: threading.Event | None = None, seen: list[int] | None = None
) -> str:
    with poolwatch.ThreadPoolExecutor(1, manager=manager) as ex:
        if seen is not None:
            seen.append(ex.stats().max_workers)
        ex.submit(pow, 2, 10).result(timeout=10)
        if gate is not None:
            ex.submit(gate.wait)
        return ex.name


def test_a_family_is_one_pool_with_every_instance_counted(client, manager: PoolManager) -> None:
    names = {request_handler(manager) for _ in range(20)}
    (name,) = names
    data = client.get("/api/pools").json()["data"]
    assert [p["name"] for p in data] == [name]
    assert (data[0]["submitted"], data[0]["succeeded"], data[0]["workers"]) == (20, 20, 0)
    page = client.get("/api/tasks", params={"pool": name, "per_page": 100}).json()
    assert page["pagination"]["total"] == 20
    first = page["data"][-1]["id"]
    assert client.get(f"/api/tasks/{first}").json()["pool"] == name
    assert client.post(f"/api/tasks/{first}/cancel").json() == {"result": "finished"}
    assert client.get("/api/stats").json()["succeeded"] == 20


def test_patch_reaches_live_and_later_instances(client, manager: PoolManager) -> None:
    gate = threading.Event()
    worker = threading.Thread(target=request_handler, args=(manager, gate))
    worker.start()
    try:
        wait_until(lambda: manager.pools() and manager.pools()[0].stats().active == 1)
        name = manager.pools()[0].name
        response = client.patch(f"/api/pools/{name}", json={"max_workers": 3, "paused": True})
        assert response.status_code == 200, response.text
        assert (response.json()["max_workers"], response.json()["state"]) == (3, "paused")
    finally:
        gate.set()
        worker.join(timeout=10)
    assert client.patch(f"/api/pools/{name}", json={"paused": False}).status_code == 200
    seen: list[int] = []
    request_handler(manager, seen=seen)  # a later instance gets the family's settings
    assert seen == [3]
    pool = client.get(f"/api/pools/{name}").json()
    assert (pool["state"], pool["succeeded"], pool["max_workers"]) == ("running", 3, 0)


def test_submitting_to_a_family_is_409(client, manager: PoolManager, assert_error) -> None:
    name = request_handler(manager)
    response = client.post(f"/api/pools/{name}/tasks", json={"task": "tests.echo"})
    assert_error(response, 409, "pool_is_family", name, "POST /api/pools")


def test_delete_removes_the_family(client, manager: PoolManager) -> None:
    name = request_handler(manager)
    response = client.delete(f"/api/pools/{name}")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "terminated"
    assert client.get(f"/api/pools/{name}").status_code == 404
