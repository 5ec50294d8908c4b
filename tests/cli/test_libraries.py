"""Third-party libraries that make their own executors, observed without code changes.

``requests-futures`` (``FuturesSession`` against a loopback ``http.server``), ``tqdm``'s
``thread_map``, ``aiofiles`` (asyncio's default executor) and ``asyncio.to_thread``: in
process with ``instrument()`` on, and as a program under ``poolwatch run``. Their tasks
show in ``/metrics`` and the API under names taken from the code that made the
executors, and the program prints exactly what it prints without poolwatch.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry
from starlette.exceptions import StarletteDeprecationWarning

import poolwatch
from poolwatch import PoolManager
from support import free_port, in_fresh_thread, wait_until

with warnings.catch_warnings():
    # Starlette prefers the httpx2 package for its TestClient; httpx works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

PROGRAM = Path(__file__).resolve().parent / "programs" / "libraries.py"
SRC = str(Path(__file__).resolve().parents[2] / "src")

# pool -> tasks the program runs there
EXPECTED = {
    "requests_futures.sessions.FuturesSession.__init__": 6,
    "tqdm.contrib.concurrent._executor_map": 8,
    "asyncio": None,  # aiofiles' file calls (open, write, read, close) and 5 to_thread calls
}
PLAIN = [
    *(f"200 /item/{i}" for i in range(6)),
    "thread_map [0, 1, 8, 27, 64, 125, 216, 343]",
    "written by aiofiles",
    "to_thread [0, 0, 1, 3, 6]",
]


def _load_program() -> Any:
    spec = importlib.util.spec_from_file_location("libraries_program", PROGRAM)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_pools(pools: list[dict[str, Any]]) -> None:
    by_name = {p["name"]: p for p in pools}
    assert set(by_name) == set(EXPECTED), sorted(by_name)
    for name, count in EXPECTED.items():
        p = by_name[name]
        assert p["failed"] == 0
        assert p["succeeded"] == p["submitted"]
        if count is not None:
            assert p["succeeded"] == count, (name, p)
    assert by_name["asyncio"]["succeeded"] >= 5 + 4


def test_in_process_with_instrument(tmp_path: Path) -> None:
    mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    poolwatch.instrument(mgr)
    try:
        # requests-futures binds the class at import (a documented limit): import it now.
        sys.modules.pop("requests_futures.sessions", None)
        program = _load_program()
        lines = in_fresh_thread(program.main)
    finally:
        poolwatch.uninstrument()
        _stop_tqdm_monitor()
    try:
        assert lines == PLAIN
        with TestClient(poolwatch.create_app(mgr)) as client:
            _check_pools(client.get("/api/pools").json()["data"])
            page = client.get("/api/tasks", params={"per_page": 100}).json()
            names = {(t["pool"], t["name"]) for t in page["data"]}
            assert ("tqdm.contrib.concurrent._executor_map", "libraries_program.cube") in names
            assert all(t["state"] == "succeeded" for t in page["data"])
            metrics = client.get("/metrics").text
        pool = "requests_futures.sessions.FuturesSession.__init__"
        assert f'poolwatch_tasks_submitted_total{{pool="{pool}"}} 6.0' in metrics
    finally:
        mgr.shutdown()


def _stop_tqdm_monitor() -> None:
    from tqdm._monitor import TMonitor

    for thread in threading.enumerate():  # tqdm's own helper, started by its first bar
        if isinstance(thread, TMonitor):
            thread.exit()  # and joins it


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "POOLWATCH_"))}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_under_poolwatch_run_output_is_the_programs_own() -> None:
    plain = subprocess.run(
        [sys.executable, str(PROGRAM)], env=_env(), capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    assert plain.stdout.splitlines() == PLAIN
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolwatch", "run", "--port", str(port), "--",
         "python", str(PROGRAM), "--wait"],
        env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen = [proc.stdout.readline().rstrip("\n") for _ in PLAIN]
        assert seen == PLAIN
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(base), timeout=20, message="the side port answers")
        _check_pools(httpx.get(f"{base}/api/pools", timeout=5).json()["data"])
        tasks = httpx.get(f"{base}/api/tasks", params={"pool": "asyncio"}, timeout=5).json()
        assert tasks["pagination"]["total"] >= 9
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert (
            'poolwatch_tasks_submitted_total{pool="tqdm.contrib.concurrent._executor_map"} 8.0'
            in metrics
        )
        out, err = proc.communicate("\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == plain.returncode == 0
    assert out == ""  # every line was read above
    assert err.splitlines() == [f"poolwatch: console at {base}/"]
    assert plain.stderr == ""


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
