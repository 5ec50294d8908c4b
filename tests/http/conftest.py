"""Fixtures for the HTTP tests: a fresh manager, app factories and gated test tasks."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette prefers the httpx2 package for its TestClient; httpx works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from poolwatch import PoolManager, current_task, task
from poolwatch.http import Lifecycle, create_app
from support import free_port, wait_until

#: Events that ``pwtest.wait`` tasks block on, by key; tests release them.
GATES: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()


def gate(key: str) -> threading.Event:
    with _gates_lock:
        return GATES.setdefault(key, threading.Event())


@task("pwtest.echo")
def echo(value: int, note: str = "") -> int:
    """Return ``value``."""
    return value


@task("pwtest.wait")
def wait(key: str) -> str:
    """Block until the gate ``key`` opens or a cancel is requested."""
    event = gate(key)
    ctx = current_task()
    while not event.wait(0.01):
        if ctx is not None:
            ctx.raise_if_cancel_requested()
    return key


@task("pwtest.fail")
def fail(message: str = "boom") -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


@pytest.fixture
def manager() -> Iterator[PoolManager]:
    mgr = PoolManager(registry=CollectorRegistry())
    try:
        yield mgr
    finally:
        for event in list(GATES.values()):
            event.set()
        mgr.shutdown(wait=True, cancel_futures=True)
        GATES.clear()


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(manager: PoolManager) -> Iterator[ClientFactory]:
    """Build TestClients for ``create_app(manager, **kwargs)`` (loopback bind by default)."""
    clients: list[TestClient] = []

    def make(**kwargs: Any) -> TestClient:
        kwargs.setdefault("bind_host", "127.0.0.1")
        client = TestClient(
            create_app(manager, **kwargs),
            base_url="http://127.0.0.1",
            raise_server_exceptions=False,
        )
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture
def lifecycle() -> Lifecycle:
    return Lifecycle()


def _assert_error(response: Any, status: int, code: str | None = None, *words: str) -> str:
    """Check the JSON error shape; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    if code is not None:
        assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    for word in words:
        assert word in message, message
    return message


ErrorCheck = Callable[..., str]


@pytest.fixture(name="assert_error")
def assert_error_fixture() -> ErrorCheck:
    """``assert_error(response, status, code, *words_in_message)``."""
    return _assert_error


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that test tasks wait on; set at the end so nothing is left waiting."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture(name="gate")
def gate_fixture() -> Callable[[str], threading.Event]:
    """``gate(key)``: the event that ``pwtest.wait(key)`` tasks block on."""
    return gate


class LiveServer:
    """A real uvicorn server for ``app`` on a free loopback port, in a thread."""

    def __init__(self, app: Any, **options: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off", **options
        )
        self.server = uvicorn.Server(config)  # off the main thread it leaves signals alone
        self.thread = threading.Thread(target=self.server.run, name="live-uvicorn")

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started, message="uvicorn started")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server() -> Iterator[Callable[[Any], LiveServer]]:
    """``live_server(app, **uvicorn_options)``: start a real server (stopped after the test)."""
    servers: list[LiveServer] = []

    def start(app: Any, **options: Any) -> LiveServer:
        server = LiveServer(app, **options).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)
