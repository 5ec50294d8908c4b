"""docs/integrations/flask.md, run as written: gunicorn with the post_fork hook, and
``poolwatch run -- flask run``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from integrations.guide import BIN, Program, sample, write_files
from support import free_port

FILES = ["app.py", "gunicorn.conf.py", "gunicorn.workers.conf.py"]


def check_side_port(app_url: str, side_url: str, requests: int) -> None:
    """The app's requests ran on the pool "thumbnails", and the side port shows them."""
    with httpx.Client(timeout=10) as http:
        for size in range(requests):
            assert http.get(f"{app_url}/thumbnails/{size * 10}").json() == {"size": size * 5}
        metrics = http.get(f"{side_url}/metrics").text
        assert sample(metrics, "poolwatch_tasks_submitted_total", pool="thumbnails") == requests
        pool = http.get(f"{side_url}/api/pools/thumbnails").json()
        assert (pool["succeeded"], pool["max_workers"]) == (requests, 4)
        tasks = http.get(f"{side_url}/api/tasks", params={"pool": "thumbnails"}).json()
        assert {t["name"] for t in tasks["data"]} == {"app.resize"}
        assert "text/html" in http.get(f"{side_url}/").headers["content-type"]
        paused = http.patch(f"{side_url}/api/pools/thumbnails", json={"paused": False})
        assert paused.status_code == 200, paused.text  # loopback: changes allowed


def test_gunicorn_worker_serves_its_pools_on_the_side_port(
    start: Callable[..., Program], tmp_path: Path
) -> None:
    assert write_files("flask.md", tmp_path) == FILES
    port, side = free_port(), free_port()
    server = start(
        str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
        "app:app", POOLWATCH_PORT=str(side),
    )  # fmt: skip
    server.wait_for(f"http://127.0.0.1:{side}/healthz")
    server.wait_for(f"http://127.0.0.1:{port}/")  # a 404: up, and no task run
    check_side_port(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{side}", requests=7)
    assert server.stop() == 0
    assert "Traceback" not in server.output()


def test_poolwatch_run_observes_flask_run_unchanged(
    start: Callable[..., Program], tmp_path: Path
) -> None:
    write_files("flask.md", tmp_path)
    port, side = free_port(), free_port()
    server = start(
        str(BIN / "poolwatch"), "run", "--port", str(side), "--",
        "flask", "--app", "app", "run", "--port", str(port),
    )  # fmt: skip
    server.wait_for(f"http://127.0.0.1:{side}/healthz")
    server.wait_for(f"http://127.0.0.1:{port}/")  # a 404: up, and no task run
    check_side_port(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{side}", requests=5)
    server.stop()
    assert f"poolwatch: console at http://127.0.0.1:{side}/" in server.output()
