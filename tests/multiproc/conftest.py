"""Real multi-process servers (gunicorn with uvicorn workers, ``uvicorn --workers``) for
the tests, each in its own process group on a free loopback port, with an empty
``PROMETHEUS_MULTIPROC_DIR``; the whole group is killed in teardown."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from multiproc.servers import HERE, Server, answers, server_command, stop_group
from support import free_port, wait_until


@pytest.fixture
def multiproc_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """The server named by the test's ``kind`` parameter, up and answering."""
    kind: str = request.param
    directory = tmp_path / "multiproc"
    directory.mkdir()  # empty at start, as the servers require
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server_command(kind, port),
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
