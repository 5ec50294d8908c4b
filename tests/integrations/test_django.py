"""docs/integrations/django.md, run as written under a real ``runserver --noreload``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from integrations.guide import Program, sample, write_files
from support import free_port


def test_runserver_serves_its_pools_on_the_side_port(
    start: Callable[..., Program], tmp_path: Path
) -> None:
    assert write_files("django.md", tmp_path) == ["project.py", "wsgi.py"]
    port, side = free_port(), free_port()
    server = start(
        sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}",
        DJANGO_SETTINGS_MODULE="project", POOLWATCH_PORT=str(side),
    )  # fmt: skip
    side_url, app_url = f"http://127.0.0.1:{side}", f"http://127.0.0.1:{port}"
    server.wait_for(f"{app_url}/")  # a 404: up, and no task run
    with httpx.Client(timeout=10) as http:
        for n in range(6):
            sent = http.get(f"{app_url}/send/user{n}")
            assert sent.json() == {"result": f"sent to user{n}"}, sent.text
        metrics = http.get(f"{side_url}/metrics").text
        completed = sample(
            metrics, "poolwatch_tasks_completed_total",
            pool="emails", task="project.send_email", outcome="succeeded",
        )  # fmt: skip
        assert completed == 6
        assert http.get(f"{side_url}/api/pools/emails").json()["submitted"] == 6
        assert "text/html" in http.get(f"{side_url}/").headers["content-type"]
        resized = http.patch(f"{side_url}/api/pools/emails", json={"max_workers": 2})
        assert resized.json()["max_workers"] == 2, resized.text
    server.stop()
    assert "Traceback" not in server.output()
