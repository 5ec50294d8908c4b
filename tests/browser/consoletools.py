"""Helpers for the browser tests: poolwatch servers in child processes, screenshots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

import support

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

LAPTOP = {"width": 1440, "height": 900}
PHONE = {"width": 375, "height": 812}

#: How long a condition in the page may take: the console polls once a second.
UI_TIMEOUT_MS = 10_000

TOKEN = "s3cret-console-token"


@dataclass
class Server:
    """A poolwatch server running in a child process, with an HTTP client for set-up."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    token: str | None = None
    args: list[str] = field(default_factory=list)
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=10.0)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API request (``path`` relative to the server root, e.g. ``api/pools``)."""
        return self.client.request(method, path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """An API request that must succeed; returns the decoded JSON body."""
        response = self.call(method, path, **kwargs)
        if response.status_code >= 400:
            pytest.fail(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server answers ``/readyz``; fail with its log if it exits first."""

        def ready() -> bool:
            if self.process.poll() is not None:
                command = " ".join(self.args)
                pytest.fail(
                    f"poolwatch {command} exited with {self.process.returncode}:\n"
                    f"{self.log_tail()}",
                    pytrace=False,
                )
            try:
                return self.call("GET", "readyz").status_code == 200
            except httpx.TransportError:
                return False

        support.wait_until(ready, timeout=timeout, interval=0.05, message=f"{self.url} ready")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def remove_pool(server: Server, name: str) -> None:
    """Remove a pool a test created: cancel what runs in it, drop what waits."""
    running = server.ok("GET", "api/tasks", params={"pool": name, "state": "running"})
    for task in running["data"]:
        server.call("POST", f"api/tasks/{task['id']}/cancel")
    server.call("DELETE", f"api/pools/{name}", params={"cancel_pending": "true"})


def launch_server(
    tmp: Path,
    args: list[str],
    *,
    token: str | None = None,
    avoid_ports: set[int] | None = None,
    script: str | None = None,
) -> Server:
    """Start ``python -m poolwatch <args> --port N``; :meth:`Server.wait_ready` waits for it.

    With ``script``, run ``python -c <script> N <args>`` instead (the script serves on
    port N; ``args[0]``, if given, is the path it mounts the app under). Servers launched
    together start in parallel; ``avoid_ports`` keeps their ports apart.
    """
    avoid = avoid_ports if avoid_ports is not None else set()
    port = support.free_port()
    while port in avoid:
        port = support.free_port()
    avoid.add(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "POOLWATCH_"))}
    env["OTEL_SDK_DISABLED"] = "true"
    if token is not None:
        env["POOLWATCH_API_TOKEN"] = token
    if script is None:
        argv = [sys.executable, "-m", "poolwatch", *args, "--port", str(port)]
        url = f"http://127.0.0.1:{port}/"
    else:
        argv = [sys.executable, "-c", script, str(port), *args]
        url = f"http://127.0.0.1:{port}/{args[0].strip('/') + '/' if args else ''}"
    log = tmp / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp, env=env
        )
    return Server(url=url, process=process, log=log, token=token, args=args)


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save a screenshot under test-artifacts/browser/ and return its path.

    The bytes are written here rather than by Playwright (``path=``), which would do it
    on an executor thread that outlives the test.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(page.screenshot(full_page=full_page))
    return path
