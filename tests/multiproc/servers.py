"""A real multi-process server under test, and how the tests talk to it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import free_port, require_tool, wait_until

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent


@dataclass
class Server:
    """One running server and what the tests sent it."""

    proc: subprocess.Popen[bytes]
    url: str
    directory: Path
    log: Path
    sent_ok: int = 0  # tasks that succeeded, by the answers to /work
    sent_failed: int = 0
    pids: set[int] = field(default_factory=set)  # workers that answered /work
    gone: set[int] = field(default_factory=set)  # workers the test stopped
    last_submitted: float = 0.0  # the last scraped poolwatch_tasks_submitted_total
    # every counter and histogram series (each pool, each label set) last scraped
    last_counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(
        default_factory=dict
    )

    def get(self, path: str, **params: Any) -> httpx.Response:
        """A GET on a new connection (so any worker may take it).

        A worker that is stopping closes the connections whose request it has not read
        yet, without an answer: those requests never ran, and are sent again.
        """
        for _ in range(10):
            try:
                return httpx.get(f"{self.url}{path}", params=params, timeout=10)
            except (httpx.RemoteProtocolError, httpx.ConnectError):
                continue
        raise AssertionError(f"no worker answered GET {path} in 10 attempts")

    def work(self, n: int = 3, fail: int = 1) -> int:
        """One ``/work`` request: n tasks that succeed and ``fail`` that fail."""
        r = self.get("/work", n=n, fail=fail)
        r.raise_for_status()
        body = r.json()
        self.sent_ok += body["succeeded"]
        self.sent_failed += body["failed"]
        self.pids.add(body["pid"])
        return int(body["pid"])

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """``/metrics`` as {(sample name, labels): value}; checks that no counter or
        histogram series goes down or disappears between scrapes."""
        r = self.get("/metrics")
        assert r.status_code == 200, r.text
        values = {}
        counters = {}
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                values[key] = s.value
                if family.type in {"counter", "histogram"} and not s.name.endswith("_created"):
                    counters[key] = s.value
        for key, before in self.last_counters.items():
            now = counters.get(key)
            assert now is not None, f"{key} was scraped before and is missing now"
            assert now >= before, f"{key} went from {before} to {now} between scrapes"
        self.last_counters = counters
        submitted = sum(
            v for (name, labels), v in values.items() if name == "poolwatch_tasks_submitted_total"
        )
        assert submitted >= self.last_submitted, "a counter went down between scrapes"
        assert submitted <= self.sent, "a scrape counted tasks nobody submitted"
        self.last_submitted = submitted
        return values

    @property
    def sent(self) -> int:
        return self.sent_ok + self.sent_failed

    def stats(self) -> dict[str, Any]:
        r = self.get("/api/stats")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def completed(values: dict[Any, float], outcome: str) -> float:
    return sum(
        v
        for (name, labels), v in values.items()
        if name == "poolwatch_tasks_completed_total" and ("outcome", outcome) in labels
    )


def gunicorn_path() -> str:
    return str(BIN / "gunicorn") if (BIN / "gunicorn").exists() else require_tool("gunicorn")


def server_command(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "mpapp:app", "--app-dir", str(HERE),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
            "--log-level", "warning", "--timeout-graceful-shutdown", "5",
        ]  # fmt: skip
    command = [
        gunicorn_path(), "mpapp:app", "--chdir", str(HERE), "-k", "uvicorn_worker.UvicornWorker",
        "-w", "2", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5",
        "--log-level", "warning",
    ]  # fmt: skip
    return [*command, "--preload"] if kind == "gunicorn-preload" else command


def answers(server: Server) -> bool:
    if server.proc.poll() is not None:
        pytest.fail(f"the server exited ({server.proc.returncode}):\n{server.output()}")
    try:
        return httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left of it."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its children may not be: make sure of the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        break


@contextlib.contextmanager
def running_server(
    kind: str, tmp_path: Path, *, command: list[str] | None = None, cwd: Path = HERE
) -> Iterator[Server]:
    """Server ``kind`` (gunicorn, gunicorn-preload, uvicorn; or ``command``, where
    ``{port}`` stands for the free port) with ``PROMETHEUS_MULTIPROC_DIR``
    at ``tmp_path / "multiproc"`` (made empty unless it exists), up and answering; its
    whole process group is stopped on the way out."""
    directory = tmp_path / "multiproc"
    directory.mkdir(exist_ok=True)
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd), env.get("PYTHONPATH")]))
    if command is None:
        argv = server_command(kind, port)
    else:
        argv = [c.replace("{port}", str(port)) for c in command]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed as a whole below
        )
    server = Server(proc, f"http://127.0.0.1:{port}", directory, log)
    try:
        wait_until(
            lambda: answers(server),
            timeout=30,
            interval=0.05,
            message=lambda: f"{kind} did not start:\n{server.output()}",
        )
        yield server
    finally:
        stop_group(proc)
