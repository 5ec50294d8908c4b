"""``poolwatch.start_service``: the service on a side port, over real HTTP."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

import httpx
import pytest

import poolwatch
from poolwatch import PoolManager
from poolwatch.http.server import bind_socket
from support import free_port


def test_serves_metrics_api_and_console_until_stopped(manager: PoolManager) -> None:
    pool = manager.create_pool("side", max_workers=2)
    assert pool.submit(abs, -3).result(timeout=5) == 3
    port = free_port()
    handle = poolwatch.start_service(manager, port=port)
    try:
        assert handle.running
        assert handle.url == f"http://127.0.0.1:{port}/"
        assert (handle.host, handle.port) == ("127.0.0.1", port)
        with httpx.Client(base_url=handle.url, timeout=5) as http:
            assert 'poolwatch_tasks_submitted_total{pool="side"} 1.0' in http.get("metrics").text
            assert [p["name"] for p in http.get("api/pools").json()["data"]] == ["side"]
            console = http.get("")
            assert console.status_code == 200
            assert console.headers["content-type"].startswith("text/html")
            # It knows it listens on loopback: changes from this machine need no token.
            created = http.post("api/pools", json={"name": "made", "max_workers": 1})
            assert created.status_code == 201, created.text
    finally:
        handle.stop()
    assert not handle.running
    assert "made" in manager
    with pytest.raises(httpx.TransportError):
        httpx.get(handle.url + "healthz", timeout=2)


def test_stop_frees_the_port_and_is_idempotent(manager: PoolManager) -> None:
    port = free_port()
    for _ in range(3):  # start, stop, start again on the same port
        with poolwatch.start_service(manager, port=port) as handle:
            assert httpx.get(handle.url + "healthz", timeout=5).json() == {"status": "ok"}
        assert not handle.running
        handle.stop()  # again: nothing to do
    bind_socket("127.0.0.1", port).close()


def test_port_zero_takes_a_free_port(manager: PoolManager) -> None:
    with poolwatch.start_service(manager, port=0) as handle:
        assert handle.port > 0
        assert httpx.get(f"{handle.url}readyz", timeout=5).status_code == 200


def test_a_busy_port_is_a_clear_error_and_starts_nothing(manager: PoolManager) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(poolwatch.ServeError, match=f"cannot listen on 127.0.0.1:{port}: "):
            poolwatch.start_service(manager, port=port)
    assert issubclass(poolwatch.ServeError, OSError)


@pytest.mark.parametrize("port", [-1, 65536, "9464", 1.5, True])
def test_bad_port_is_refused(manager: PoolManager, port: object) -> None:
    with pytest.raises(ValueError, match="port must be an integer from 0 to 65535"):
        poolwatch.start_service(manager, port=port)  # type: ignore[arg-type]


def test_off_loopback_without_token_is_refused_before_binding(manager: PoolManager) -> None:
    with pytest.raises(ValueError, match=r"on 0\.0\.0\.0 without an API token") as info:
        poolwatch.start_service(manager, host="0.0.0.0", port=free_port())
    assert "token= argument of create_app() or start_service()" in str(info.value)


def test_token_and_options_reach_the_app(manager: PoolManager) -> None:
    with poolwatch.start_service(manager, port=0, token="s3cret", max_body_bytes=64) as handle:
        url = handle.url + "api/pools"
        refused = httpx.post(url, json={"name": "n", "max_workers": 1}, timeout=5)
        assert refused.status_code == 401
        assert (
            "token= argument"
            in httpx.post(url, json={}, headers={"Authorization": "Bearer no"}, timeout=5).json()[
                "error"
            ]["message"]
        )
        auth = {"Authorization": "Bearer s3cret"}
        big = httpx.post(url, json={"name": "x" * 100}, headers=auth, timeout=5)
        assert big.status_code == 413, big.text
    with pytest.raises(ValueError, match="token contains"):
        poolwatch.start_service(manager, port=0, token="not a token")


DEFAULT_MANAGER_PROGRAM = """
import httpx, poolwatch
with poolwatch.ThreadPoolExecutor(2, name="made") as ex, poolwatch.start_service(port=0) as h:
    ex.submit(abs, -1).result()
    print([p["name"] for p in httpx.get(h.url + "api/pools", timeout=5).json()["data"]])
"""


def test_without_a_manager_it_serves_the_default_one() -> None:
    # In a process of its own: the default manager holds the global registry for good.
    done = subprocess.run(
        [sys.executable, "-c", DEFAULT_MANAGER_PROGRAM],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "['made']\n", "")


def test_uvicorn_start_and_stop_lines_stay_out_of_the_programs_log(
    manager: PoolManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with poolwatch.start_service(manager, port=0) as handle:
        httpx.get(handle.url + "healthz", timeout=5)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")] == []
    logging.getLogger("uvicorn.error").info("the program's own uvicorn line")
    assert "the program's own uvicorn line" in caplog.text


def test_a_forked_child_does_not_serve_and_does_not_hold_the_port(manager: PoolManager) -> None:
    port = free_port()
    handle = poolwatch.start_service(manager, port=port)
    report_r, report_w = os.pipe()
    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, wait for the parent, leave without cleanup
        try:
            handle.stop()  # not the child's service: does nothing
            os.write(report_w, b"running" if handle.running else b"idle")
            os.read(release_r, 1)
        finally:
            os._exit(0)
    try:
        os.close(report_w)
        assert os.read(report_r, 16) == b"idle"
        assert handle.running  # the parent still serves
        assert httpx.get(handle.url + "healthz", timeout=5).status_code == 200
        handle.stop()
        # The child is still alive: the port is free only if it closed its copy.
        with poolwatch.start_service(manager, port=port) as again:
            assert httpx.get(again.url + "healthz", timeout=5).status_code == 200
    finally:
        handle.stop()
        os.write(release_w, b"x")
        _, status = os.waitpid(pid, 0)
        for fd in (report_r, release_r, release_w):
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
