"""Real multi-process servers (gunicorn with uvicorn workers, ``uvicorn --workers``) for
the tests, each in its own process group on a free loopback port, with an empty
``PROMETHEUS_MULTIPROC_DIR``; the whole group is killed in teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multiproc.servers import Server, running_server


@pytest.fixture
def multiproc_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """The server named by the test's ``kind`` parameter, up and answering."""
    with running_server(request.param, tmp_path) as server:
        yield server
