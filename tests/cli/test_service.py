"""``python -m poolwatch serve|demo`` as real processes, driven over HTTP, stopped by signal."""

from __future__ import annotations

import http.server
import json
import re
import signal
import threading
import time
from pathlib import Path

import httpx

from support import wait_until

TASKS_MODULE = '''
import time

import poolwatch


@poolwatch.task("svc.nap")
def nap(seconds: float) -> float:
    """Sleep cooperatively."""
    ctx = poolwatch.current_task()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.raise_if_cancel_requested()
        time.sleep(0.01)  # ok: the task simulates work; nothing waits on this
    return seconds


@poolwatch.task("svc.stubborn")
def stubborn(seconds: float) -> float:
    """Sleep, ignoring cancel requests."""
    time.sleep(seconds)  # ok: simulated work that ignores cancel requests
    return seconds
'''

CONFIG = """
tasks = ["svc_tasks"]

[shutdown]
grace_period = 1.0

[[pools]]
name = "work"
max_workers = 1
queue_capacity = 10
"""


def _setup(tmp_path: Path) -> Path:
    (tmp_path / "svc_tasks.py").write_text(TASKS_MODULE)
    config = tmp_path / "poolwatch.toml"
    config.write_text(CONFIG)
    return config


def _task_state(url: str, task_id: str) -> str:
    return str(httpx.get(f"{url}/api/tasks/{task_id}").json()["state"])


def test_serve_runs_tasks_and_drains_on_sigterm(tmp_path: Path, start_service) -> None:
    config = _setup(tmp_path)
    service = start_service("serve", "--config", str(config))
    service.wait_ready()
    url = service.url
    assert f"console: {url}/" in service.stdout
    assert f"metrics: {url}/metrics" in service.stdout

    quick = httpx.post(f"{url}/api/pools/work/tasks", json={"task": "svc.nap", "args": [0.01]})
    assert quick.status_code == 202, quick.text
    wait_until(lambda: _task_state(url, quick.json()["id"]) == "succeeded", message="quick done")

    long = httpx.post(f"{url}/api/pools/work/tasks", json={"task": "svc.nap", "args": [60]})
    queued = [
        httpx.post(f"{url}/api/pools/work/tasks", json={"task": "svc.nap", "args": [60]})
        for _ in range(2)
    ]
    wait_until(lambda: _task_state(url, long.json()["id"]) == "running", message="long running")

    service.terminate(signal.SIGTERM)
    # During the grace period the server still answers, but is no longer ready.
    wait_until(
        lambda: (r := service.get("/readyz")) is None or r.status_code == 503,
        message="readiness turned 503",
    )
    assert service.wait_exit(timeout=20) == 0
    err = service.stderr
    assert "received SIGTERM" in err
    final = [line for line in err.splitlines() if "poolwatch stopped" in line]
    assert len(final) == 1, err
    # The running task stopped when asked to cancel: the line says so, and no warning.
    assert "all running tasks finished; those still running after the 1s grace" in final[0]
    assert "total submitted=4 succeeded=1 failed=0 cancelled=3 rejected=0 running=0" in final[0]
    assert "exiting with" not in err
    assert "work: submitted=4" in final[0]
    audit = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [a["action"] for a in audit] == ["task.submit"] * 4
    assert all(a["result"] == "ok" and a["status"] == 202 for a in audit)
    assert all(a["authenticated"] is False for a in audit)
    assert all(q.status_code == 202 for q in queued)


def test_tasks_that_ignore_cancel_do_not_hold_the_exit(tmp_path: Path, start_service) -> None:
    config = _setup(tmp_path)
    service = start_service("serve", "--config", str(config))
    service.wait_ready()
    body = {"task": "svc.stubborn", "args": [120]}
    task = httpx.post(f"{service.url}/api/pools/work/tasks", json=body).json()["id"]
    wait_until(lambda: _task_state(service.url, task) == "running", message="stubborn running")
    service.terminate()
    assert service.wait_exit(timeout=20) == 0
    final = [line for line in service.stderr.splitlines() if "poolwatch stopped" in line]
    assert len(final) == 1, service.stderr
    assert "(1 task(s) still running after the 1s grace period)" in final[0]
    assert "running=1 | work:" in final[0]
    assert "exiting with 1 task(s) still running" in service.stderr


def test_sigint_with_idle_pools_exits_0(tmp_path: Path, start_service) -> None:
    config = _setup(tmp_path)
    service = start_service("serve", "--config", str(config))
    service.wait_ready()
    service.terminate(signal.SIGINT)
    assert service.wait_exit() == 0
    assert "poolwatch stopped (all running tasks finished)" in service.stderr


def test_token_and_read_only_over_http(tmp_path: Path, start_service) -> None:
    config = _setup(tmp_path)
    service = start_service(
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        env={"POOLWATCH_API_TOKEN": "s3cret"},
    )
    service.wait_ready()
    body = {"task": "svc.nap", "args": [0.01]}
    url = f"{service.url}/api/pools/work/tasks"
    assert httpx.post(url, json=body).status_code == 401
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "POOLWATCH_API_TOKEN" in wrong.json()["error"]["message"]  # serve's own setting
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 202
    assert httpx.get(f"{service.url}/api/info").json()["auth_required"] is True
    service.terminate()
    assert service.wait_exit() == 0


def test_read_only_may_bind_anywhere(tmp_path: Path, start_service) -> None:
    config = _setup(tmp_path)
    service = start_service("serve", "--config", str(config), "--host", "0.0.0.0", "--read-only")
    service.wait_ready()
    response = httpx.post(f"{service.url}/api/pools", json={"name": "x", "max_workers": 1})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "read_only"
    assert "without --read-only" in response.json()["error"]["message"]
    service.terminate()
    assert service.wait_exit() == 0


def test_demo_serves_live_data_and_stops_cleanly(tmp_path: Path, start_service) -> None:
    service = start_service("demo")
    service.wait_ready()
    assert "console:" in service.stdout
    names = {p["name"] for p in httpx.get(f"{service.url}/api/pools").json()["data"]}
    assert names == {"io", "cpu", "flaky", "bounded", "slow"}

    def completed(pool: str) -> float:
        text = httpx.get(f"{service.url}/metrics").text
        pattern = rf'poolwatch_tasks_completed_total\{{[^}}]*pool="{pool}"[^}}]*\}} ([0-9.e+]+)'
        return sum(float(v) for v in re.findall(pattern, text))

    for pool in ("io", "cpu", "flaky"):
        wait_until(lambda pool=pool: completed(pool) > 0, timeout=20, message=f"{pool} completes")
    types = {t["name"] for t in httpx.get(f"{service.url}/api/task-types").json()["data"]}
    assert {"demo.sleep", "demo.crunch", "demo.flaky", "demo.hang"} <= types
    submitted = httpx.post(
        f"{service.url}/api/pools/io/tasks",
        json={"task": "demo.sleep", "kwargs": {"seconds": 0.01}},
    )
    assert submitted.status_code == 202
    service.terminate()
    assert service.wait_exit() == 0
    assert "poolwatch stopped" in service.stderr


def test_spans_are_exported_over_otlp(tmp_path: Path, start_service) -> None:
    received: list[bytes] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            received.append(self.path.encode() + b" " + self.rfile.read(length))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=collector.serve_forever, name="fake-otlp")
    thread.start()
    try:
        config = _setup(tmp_path)
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
        service = start_service(
            "serve", "--config", str(config), env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        )
        service.wait_ready()
        response = httpx.post(
            f"{service.url}/api/pools/work/tasks", json={"task": "svc.nap", "args": [0.01]}
        )
        assert response.status_code == 202
        service.terminate()
        assert service.wait_exit() == 0  # the provider flushes on the way out
    finally:
        collector.shutdown()
        collector.server_close()
        thread.join()
    payload = b"".join(received)
    assert payload.startswith(b"/v1/traces ")
    assert b"POST /api/pools/{name}/tasks" in payload
    assert b"poolwatch.task.id" in payload
    assert response.json()["id"].encode() in payload


SHUTDOWN_CONFIG = """
tasks = ["svc_tasks"]

[shutdown]
grace_period = 2.0

[[pools]]
name = "drain"
max_workers = 1

[[pools]]
name = "caller"
max_workers = 1
queue_capacity = 0
rejection_policy = "caller_runs"
"""


def test_requests_in_flight_at_shutdown_get_json_503_within_the_grace(
    tmp_path: Path, start_service
) -> None:
    _setup(tmp_path)
    config = tmp_path / "shutdown.toml"
    config.write_text(SHUTDOWN_CONFIG)
    service = start_service("serve", "--config", str(config))
    service.wait_ready()
    url = service.url
    stubborn = {"task": "svc.stubborn", "args": [120]}
    for pool in ("drain", "caller"):
        task = httpx.post(f"{url}/api/pools/{pool}/tasks", json=stubborn).json()["id"]
        wait_until(lambda task=task: _task_state(url, task) == "running")
    answers: dict[str, httpx.Response] = {}

    def call(key: str, method: str, path: str, **kwargs: object) -> None:
        answers[key] = httpx.request(method, url + path, timeout=30, **kwargs)  # type: ignore[arg-type]

    calls = [
        threading.Thread(target=call, args=("delete", "DELETE", "/api/pools/drain")),
        threading.Thread(
            target=call,
            args=("submit", "POST", "/api/pools/caller/tasks"),
            kwargs={"json": stubborn},
        ),
    ]
    for thread in calls:
        thread.start()
    # Both are in flight: the pool left the table, and the caller runs the second task.
    wait_until(
        lambda: [p["name"] for p in httpx.get(f"{url}/api/pools").json()["data"]] == ["caller"]
    )
    wait_until(lambda: httpx.get(f"{url}/api/pools/caller").json()["submitted"] == 2)
    started = time.monotonic()
    service.terminate()
    assert service.wait_exit(timeout=20) == 0
    took = time.monotonic() - started
    for thread in calls:
        thread.join(timeout=10)
    for key in ("delete", "submit"):
        response = answers[key]
        assert response.status_code == 503, (key, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == "shutting_down"
    # The whole exit fits in the grace period (plus the interpreter's own start-up of exit).
    assert took < 2.0 + 0.8, took
    err = service.stderr
    assert "Traceback" not in err
    assert "CancelledError" not in err
    assert "exiting with" in err
