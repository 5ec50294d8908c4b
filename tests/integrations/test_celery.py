"""docs/integrations/celery.md, run as written: a real ``celery worker --pool threads`` on
kombu's filesystem transport, sent tasks by another process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from integrations.guide import BIN, Program, clean_env, sample, write_files
from support import free_port, wait_until

CLIENT = """
import sys
from tasks import add
results = [add.delay(n, 100).get(timeout=60) for n in range(int(sys.argv[1]))]
print(results)
"""


def _celery_pool(side_url: str) -> dict[str, object] | None:
    pools = httpx.get(f"{side_url}/api/pools", timeout=5).json()["data"]
    found = [p for p in pools if str(p["name"]).startswith("celery")]
    return found[0] if found else None


@pytest.mark.parametrize("way", ["poolwatch run", "signals"])
def test_worker_tasks_show_on_the_side_port(
    start: Callable[..., Program], tmp_path: Path, way: str
) -> None:
    assert write_files("celery.md", tmp_path) == ["tasks.py", "observed.py"]
    side = free_port()
    worker_args = ["worker", "--concurrency", "3", "--loglevel", "warning"]
    if way == "poolwatch run":
        args = [str(BIN / "poolwatch"), "run", "--port", str(side), "--",
                "celery", "-A", "tasks", *worker_args, "--pool", "threads"]  # fmt: skip
        worker = start(*args)
        expected = "celery.concurrency.thread.TaskPool.__init__"
    else:  # the guide's pool class, chosen by its config
        args = [str(BIN / "celery"), "-A", "observed", *worker_args]
        worker = start(*args, POOLWATCH_PORT=str(side))
        expected = "celery"
    side_url = f"http://127.0.0.1:{side}"
    worker.wait_for(f"{side_url}/healthz")
    pool = wait_until(lambda: _celery_pool(side_url), timeout=30, message=worker.output)
    assert (pool["name"], pool["max_workers"]) == (expected, 3)

    sent = subprocess.run(
        [sys.executable, "-c", CLIENT, "4"], cwd=tmp_path, env=clean_env(),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert (sent.returncode, sent.stdout) == (0, "[100, 101, 102, 103]\n"), sent.stderr

    name = str(pool["name"])
    metrics = httpx.get(f"{side_url}/metrics", timeout=5).text
    succeeded = sample(
        metrics, "poolwatch_tasks_completed_total",
        pool=name, task="celery.concurrency.base.apply_target", outcome="succeeded",
    )  # fmt: skip
    assert succeeded is not None
    assert succeeded >= 4
    tasks = httpx.get(f"{side_url}/api/tasks", params={"pool": name}, timeout=5).json()
    assert tasks["pagination"]["total"] >= 4
    assert worker.stop() == 0
    assert "Traceback" not in worker.output()
