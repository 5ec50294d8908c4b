"""docs/integrations/fastapi-starlette.md, run as written under a real uvicorn."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx

from integrations.guide import BIN, Program, sample, write_files
from support import free_port, wait_until


def _serve(start: Callable[..., Program], tmp_path: Path, **env: str) -> tuple[Program, str]:
    assert write_files("fastapi-starlette.md", tmp_path) == ["app.py"]
    port = free_port()
    server = start(
        str(BIN / "uvicorn"), "app:app", "--host", "127.0.0.1", "--port", str(port), **env
    )
    url = f"http://127.0.0.1:{port}"
    server.wait_for(f"{url}/ops/healthz")
    return server, url


def test_mounted_under_ops_with_the_apps_work_on_its_pool(start, tmp_path: Path) -> None:
    server, url = _serve(start, tmp_path, OPS_BIND_HOST="127.0.0.1")
    with httpx.Client(base_url=url, timeout=10) as http:
        for n in range(5):
            assert http.get(f"/reports/{n}").json() == {"report": n, "pages": n % 7 + 1}
        pool = http.get("/ops/api/pools/reports").json()
        assert (pool["submitted"], pool["succeeded"], pool["max_workers"]) == (5, 5, 4)
        metrics = http.get("/ops/metrics").text
        completed = "poolwatch_tasks_completed_total"
        assert (
            sample(metrics, completed, pool="reports", task="reports.render", outcome="succeeded")
            == 5
        )
        tasks = http.get("/ops/api/tasks", params={"pool": "reports"}).json()
        assert {t["name"] for t in tasks["data"]} == {"reports.render"}
        console = http.get("/ops/")
        assert console.status_code == 200
        assert "text/html" in console.headers["content-type"]
        assert http.get("/ops/console/app.js").status_code == 200
        # The lifespan entered the mounted app's: the console's sampler runs.
        assert http.get("/ops/api/samples").json()["sampling"] is True
        # Loopback, no token: a change from this machine is allowed.
        paused = http.patch("/ops/api/pools/reports", json={"paused": True})
        assert paused.json()["state"] == "paused", paused.text
    # uvicorn ends a graceful stop by re-raising the signal it caught.
    assert server.stop() == -signal.SIGTERM
    assert "Application shutdown complete" in server.output()


def test_without_token_or_bind_host_changes_are_refused_naming_the_arguments(
    start, tmp_path: Path
) -> None:
    server, url = _serve(start, tmp_path)
    refused = httpx.patch(f"{url}/ops/api/pools/reports", json={"paused": True}, timeout=10)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "mutations_disabled"
    assert "create_app(manager, token=...)" in error["message"]
    assert "POOLWATCH_API_TOKEN" not in error["message"]
    assert server.stop() == -signal.SIGTERM


def test_with_a_token_changes_need_it(start, tmp_path: Path) -> None:
    server, url = _serve(start, tmp_path, OPS_TOKEN="s3cret")
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.patch("/ops/api/pools/reports", json={"paused": True}).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        ok = http.patch("/ops/api/pools/reports", json={"max_workers": 2}, headers=auth)
        assert ok.json()["max_workers"] == 2
        wait_until(lambda: http.get("/ops/api/pools/reports").json()["max_workers"] == 2)
    assert server.stop() == -signal.SIGTERM
