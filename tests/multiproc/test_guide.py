"""docs/integrations/gunicorn-uvicorn.md, run as written: its app.py, gunicorn.conf.py and
shell commands under a real gunicorn and uvicorn, starting from a directory an earlier
run left behind. Only the address (a free loopback port) and the number of workers
are changed."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from multiproc.servers import gunicorn_path, running_server
from poolwatch.procfiles import format_record
from support import wait_until

GUIDE = Path(__file__).parents[2] / "docs" / "integrations" / "gunicorn-uvicorn.md"
GUIDE_DIR = "/run/myservice/metrics"
# The line of each shell block that starts the server, and what the test runs instead.
STARTS = {
    "gunicorn": (
        "gunicorn -c gunicorn.conf.py app:app",
        f"exec {gunicorn_path()} -c gunicorn.conf.py app:app -w 2 --bind 127.0.0.1:{{port}}",
    ),
    "uvicorn": (
        "uvicorn app:app --workers 4 --host 0.0.0.0 --port 8000",
        f"exec {sys.executable} -m uvicorn app:app --workers 2 --host 127.0.0.1 --port {{port}}",
    ),
}


def code_block(containing: str) -> str:
    """The guide's one fenced code block with a line ``containing``."""
    blocks = re.findall(r"```(?:python|sh)\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    found = [b for b in blocks if containing in b.splitlines()]
    assert len(found) == 1, f"the guide has {len(found)} blocks with the line {containing!r}"
    return str(found[0])


def leave_an_earlier_run(directory: Path) -> None:
    """A worker's file and a prometheus_client file, as a previous run leaves them."""
    directory.mkdir()
    header = {"pid": 1, "started": None, "exited": True, "published_at": time.time()}
    header["pools"] = [["reports", "terminated", 500, 500, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0]]
    text = "# TYPE poolwatch_tasks_submitted_total counter\n"
    text += 'poolwatch_tasks_submitted_total{pool="reports"} 500.0\n'
    (directory / "poolwatch_1_0a0b0c0d.json").write_bytes(format_record(header, text))
    (directory / "counter_1.db").write_bytes(b"left over")


@pytest.mark.parametrize("kind", sorted(STARTS))
def test_the_guide_runs_as_written(tmp_path: Path, kind: str) -> None:
    (tmp_path / "app.py").write_text(code_block("# app.py"))
    (tmp_path / "gunicorn.conf.py").write_text(code_block("# gunicorn.conf.py"))
    line, replacement = STARTS[kind]
    script = code_block(line).replace(line, replacement)
    directory = tmp_path / "multiproc"
    assert f"export PROMETHEUS_MULTIPROC_DIR={GUIDE_DIR}" in script
    script = script.replace(GUIDE_DIR, str(directory))
    leave_an_earlier_run(directory)
    command = ["bash", "-euc", script]
    with running_server(kind, tmp_path, command=command, cwd=tmp_path) as server:
        assert not (directory / "counter_1.db").exists()
        assert not (directory / "poolwatch_1_0a0b0c0d.json").exists()

        def both_workers() -> dict[str, Any] | None:
            body = server.stats()
            return body if body["server"]["processes"] == 2 else None

        body = wait_until(both_workers, timeout=15, interval=0.05, message=server.output)
        assert body["submitted"] == 0  # the earlier run is not counted again
        assert body["server"]["live_processes"] == 2
        assert body["max_workers"] == 2 * 8  # the pool "reports" of each live worker
        values = server.scrape()
        assert values[("poolwatch_pool_max_workers", (("pool", "reports"),))] == 16
        assert values[("poolwatch_tasks_submitted_total", (("pool", "reports"),))] == 0
