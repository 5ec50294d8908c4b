"""``poolwatch ctl`` against a real ``poolwatch serve`` process (and a stub for ``stack``)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from poolwatch.cli import main
from support import free_port, wait_until

TASKS = '''
import threading

import poolwatch

GATE = threading.Event()


@poolwatch.task("ctl.block")
def block() -> str:
    """Wait until cancelled."""
    ctx = poolwatch.current_task()
    while not GATE.wait(0.01):
        ctx.raise_if_cancel_requested()
    return "done"


@poolwatch.task("ctl.fail")
def fail() -> None:
    """Fail at once."""
    raise ValueError("ctl says no")
'''

CONFIG = """
tasks = ["ctl_tasks"]

[shutdown]
grace_period = 1.0

[[pools]]
name = "work"
max_workers = 2
queue_capacity = 10

[[pools]]
name = "background-jobs"
max_workers = 1
"""


@pytest.fixture
def service(tmp_path: Path, start_service: Any) -> Iterator[Any]:
    (tmp_path / "ctl_tasks.py").write_text(TASKS)
    (tmp_path / "poolwatch.toml").write_text(CONFIG)
    proc = start_service(
        "serve", "--config", str(tmp_path / "poolwatch.toml"), env={"POOLWATCH_API_TOKEN": "s3cret"}
    )
    proc.wait_ready()
    yield proc
    proc.terminate()
    proc.wait_exit()


def ctl(capsys: Any, service: Any, *args: str, token: bool = True) -> tuple[int, str, str]:
    """Run ``poolwatch ctl`` in this process; (exit code, stdout, stderr)."""
    extra = ["--token", "s3cret"] if token else []
    code = main(["ctl", "--url", service.url, *extra, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _columns(header: str, line: str, names: list[str]) -> None:
    """Left-aligned text columns start where their heading starts."""
    for name in names:
        start = header.index(name)
        assert line[start] != " ", (header, line)
        assert start == 0 or line[start - 1] == " ", (header, line)


def test_pools_list_is_an_aligned_table(capsys: Any, service: Any) -> None:
    code, out, err = ctl(capsys, service, "pools", "list")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == [
        "NAME", "KIND", "STATE", "ACTIVE", "WORKERS", "MAX", "QUEUED", "CAPACITY", "POLICY",
        "SUCCEEDED", "FAILED", "REJECTED",
    ]  # fmt: skip
    assert [row.split()[:2] for row in rows] == [["background-jobs", "thread"], ["work", "thread"]]
    for row in rows:
        _columns(header, row, ["NAME", "KIND", "STATE", "POLICY"])
        # Numbers are right-aligned: they end where their heading ends.
        end = header.index("MAX") + len("MAX")
        assert row[end - 1].isdigit(), (header, row)
        assert row[end] == " ", (header, row)
    assert rows[0].split()[7] == "-"  # unbounded queue
    assert rows[1].split()[7] == "10"


def test_json_is_the_apis_answer(capsys: Any, service: Any) -> None:
    code, out, _ = ctl(capsys, service, "pools", "show", "work", "--json")
    assert code == 0
    mine = json.loads(out)
    theirs = httpx.get(f"{service.url}/api/pools/work").json()
    assert mine.keys() == theirs.keys()
    assert mine["max_workers"] == theirs["max_workers"] == 2


def test_changes_take_effect(capsys: Any, service: Any) -> None:
    def pool() -> dict[str, Any]:
        return dict(httpx.get(f"{service.url}/api/pools/work").json())

    code, out, err = ctl(capsys, service, "pools", "resize", "work", "5")
    assert code == 0, err
    assert pool()["max_workers"] == 5
    assert "\nmax_workers        5\n" in out
    code, _, err = ctl(
        capsys, service, "pools", "set", "work", "queue_capacity=3", "rejection_policy=discard",
        "run_timeout=2.5", "queue_timeout=none",
    )  # fmt: skip
    assert code == 0, err
    now = pool()
    assert (now["queue_capacity"], now["rejection_policy"], now["run_timeout"]) == (
        3,
        "discard",
        2.5,
    )
    assert now["queue_timeout"] is None
    assert ctl(capsys, service, "pools", "pause", "work")[0] == 0
    assert pool()["state"] == "paused"
    assert ctl(capsys, service, "pools", "resume", "work")[0] == 0
    assert pool()["state"] == "running"
    code, out, _ = ctl(capsys, service, "pools", "remove", "background-jobs")
    assert code == 0
    assert out.startswith("removed pool background-jobs")
    assert httpx.get(f"{service.url}/api/pools/background-jobs").status_code == 404


def test_the_apis_message_and_a_non_zero_exit(capsys: Any, service: Any) -> None:
    code, out, err = ctl(capsys, service, "pools", "show", "nope")
    assert (code, out) == (1, "")
    assert err.startswith('poolwatch ctl: error: no pool named "nope"')
    assert "(pool_not_found, HTTP 404)" in err
    code, _, err = ctl(capsys, service, "pools", "resize", "work", "0")
    assert code == 1
    assert "max_workers must be greater than 0" in err
    code, _, err = ctl(capsys, service, "pools", "set", "work", "colour=red")
    assert code == 1
    assert "unknown field colour" in err
    code, _, err = ctl(capsys, service, "pools", "pause", "work", token=False)
    assert code == 1
    assert "missing_token" in err
    assert httpx.get(f"{service.url}/api/pools/work").json()["state"] == "running"


def test_tasks_list_show_and_cancel(capsys: Any, service: Any) -> None:
    headers = {"Authorization": "Bearer s3cret"}
    url = f"{service.url}/api/pools/work/tasks"
    failed = httpx.post(url, json={"task": "ctl.fail"}, headers=headers).json()["id"]
    running = httpx.post(url, json={"task": "ctl.block"}, headers=headers).json()["id"]

    def state(task_id: str) -> str:
        return str(httpx.get(f"{service.url}/api/tasks/{task_id}").json()["state"])

    wait_until(lambda: state(failed) == "failed" and state(running) == "running")
    code, out, _ = ctl(capsys, service, "tasks", "list", "--pool", "work")
    assert code == 0
    header, *rows, footer = out.splitlines()
    assert header.split() == ["ID", "POOL", "NAME", "STATE", "SUBMITTED", "WAIT", "RUN"]
    assert [r.split()[0] for r in rows] == [running, failed]  # newest first
    assert footer == "page 1 of 1 (2 tasks)"
    _columns(header, rows[1], ["ID", "POOL", "NAME", "STATE", "SUBMITTED"])
    code, out, _ = ctl(capsys, service, "tasks", "list", "--state", "failed", "--json")
    assert [t["id"] for t in json.loads(out)["data"]] == [failed]

    code, out, _ = ctl(capsys, service, "tasks", "show", failed)
    assert code == 0
    assert "error_type" in out
    assert "ValueError" in out
    assert "Traceback" in out
    assert "ctl says no" in out

    code, out, _ = ctl(capsys, service, "tasks", "cancel", running)
    assert (code, out) == (0, f"{running}: requested\n")
    wait_until(lambda: state(running) == "cancelled")
    code, _, err = ctl(capsys, service, "tasks", "cancel", "no-such-task")
    assert code == 1
    assert "task_not_found" in err


def _run_ctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    from cli.conftest import SRC

    full_env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", **env}
    return subprocess.run(
        [sys.executable, "-m", "poolwatch", "ctl", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=30,
        check=False,
    )


def test_url_and_token_from_the_environment(service: Any) -> None:
    env = {"POOLWATCH_URL": service.url, "POOLWATCH_API_TOKEN": "s3cret"}
    done = _run_ctl("pools", "resize", "work", "3", env=env)
    assert done.returncode == 0, done.stderr
    assert httpx.get(f"{service.url}/api/pools/work").json()["max_workers"] == 3
    done = _run_ctl("pools", "resize", "work", "4", env={"POOLWATCH_URL": service.url})
    assert done.returncode == 1
    assert "missing_token" in done.stderr


def test_an_unreachable_service_is_a_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = _run_ctl("--url", url, "pools", "list", env={})
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"poolwatch ctl: error: cannot reach the poolwatch service at {url}"
    )
    assert "Traceback" not in done.stderr


STACK = {
    "task_id": "t-1",
    "pool": "io",
    "thread": "io_0",
    "taken_at": "2026-01-02T03:04:05.000000Z",
    "truncated": False,
    "frames": [
        {"file": "/usr/lib/python3.11/threading.py", "line": 1002, "function": "_bootstrap",
         "source": "self._bootstrap_inner()", "library": True},
        {"file": "/srv/app/jobs.py", "line": 12, "function": "fetch",
         "source": "    body = get(url)", "library": False},
        {"file": "/srv/app/jobs.py", "line": 30, "function": "get", "source": None,
         "library": False},
    ],
}  # fmt: skip


@pytest.fixture
def stub() -> Iterator[str]:
    """A stub service answering ``GET /api/tasks/{id}/stack`` as the real one documents."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/api/tasks/t-1/stack":
                status, body = 200, STACK
            else:
                status = 409
                body = {"error": {"code": "task_not_running", "message": "task t-2 is queued"}}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="stub-api")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_tasks_stack_reads_like_a_traceback(capsys: Any, stub: str) -> None:
    assert main(["ctl", "--url", stub, "tasks", "stack", "t-1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Stack of task t-1 (pool io, thread io_0), taken at 2026-01-02")
    assert lines[1:] == [
        '  lib   File "/usr/lib/python3.11/threading.py", line 1002, in _bootstrap',
        "          self._bootstrap_inner()",
        '  task  File "/srv/app/jobs.py", line 12, in fetch',
        "          body = get(url)",
        '  task  File "/srv/app/jobs.py", line 30, in get',
        "(task: the task's own code; lib: the standard library and installed packages)",
    ]
    assert main(["ctl", "--url", stub, "--json", "tasks", "stack", "t-1"]) == 0
    assert json.loads(capsys.readouterr().out) == STACK
    assert main(["ctl", "--url", stub, "tasks", "stack", "t-2"]) == 1
    err = capsys.readouterr().err
    assert err == "poolwatch ctl: error: task t-2 is queued (task_not_running, HTTP 409)\n"
