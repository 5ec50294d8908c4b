"""``start_service``: the service (metrics, API, console) on a side port of any process.

For programs that are not ASGI services themselves (WSGI apps, task workers, scripts):
uvicorn runs the app of :func:`~poolwatch.http.app.create_app` in a daemon thread, on a
socket bound before the call returns, so a taken port is an error at once rather than a
log line later. The process's signals stay its own. ``poolwatch run`` serves this way too.

Fork-aware: a child forked from a serving process (gunicorn ``--preload``, multiprocessing's
``fork``) closes its copy of the listening socket, and its handles say they do not serve,
so the port is free once the parent stops and the child may start a service of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Unpack

import uvicorn
from starlette.types import ASGIApp

from poolwatch.executor import default_manager
from poolwatch.http.app import AppOptions, build_app
from poolwatch.http.auth import AccessPolicy
from poolwatch.http.protocol import ConnectionLimits, protocol_class
from poolwatch.http.server import EmbeddedServer, ServeError, bind_socket
from poolwatch.multiproc import start_publishing
from poolwatch.runner import DEFAULT_PORT

if TYPE_CHECKING:
    import socket

    from poolwatch.manager import PoolManager

__all__ = [
    "ServiceHandle",
    "check_policy",
    "listen",
    "serve_in_thread",
    "serve_policy",
    "start_service",
]

_STARTUP_TIMEOUT = 15.0
_uvicorn_logger = logging.getLogger("uvicorn.error")
_live: weakref.WeakSet[ServiceHandle] = weakref.WeakSet()
_fork_hook = threading.Lock()
_fork_hook_installed = False


class _QuietThread(logging.Filter):
    """Drops uvicorn's start and stop chatter from one thread, leaving warnings and errors
    (and the messages of any other uvicorn the process runs) alone."""

    def __init__(self, thread_id: int) -> None:
        super().__init__()
        self.thread_id = thread_id

    def filter(self, record: logging.LogRecord) -> bool:
        # The emitting thread, not ``record.thread``: that is None once a program turns
        # ``logging.logThreads`` off (as ``poolwatch``'s own commands do).
        return threading.get_ident() != self.thread_id or record.levelno >= logging.WARNING


class ServiceHandle:
    """A running service of :func:`start_service`: where it listens, and how to stop it.

    Thread-safe. Also a context manager that stops the service on exit.
    """

    def __init__(self, server: EmbeddedServer, sock: socket.socket) -> None:
        self._server = server
        self._sock = sock
        self._pid = os.getpid()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poolwatch-service", daemon=True)
        host, port = sock.getsockname()[:2]
        self.host: str = host
        self.port: int = port
        shown = f"[{host}]" if ":" in host else host
        #: The service's base URL, ending in ``/`` (the console; ``metrics``, ``api/...``).
        self.url: str = f"http://{shown}:{port}/"

    def __repr__(self) -> str:
        return f"<ServiceHandle {self.url} running={self.running}>"

    @property
    def running(self) -> bool:
        """Whether this process serves: False once stopped, and in a forked child."""
        return os.getpid() == self._pid and self._thread.is_alive() and self._server.started

    def start(self, timeout: float = _STARTUP_TIMEOUT, *, wait: bool = True) -> None:
        """Start serving; returns once requests are answered (``ServeError`` if they are not),
        or at once with ``wait=False`` (the socket listens already: requests wait for the
        server, and a failure to start is logged on ``uvicorn.error``)."""
        self._server.on_started = self._started.set
        self._thread.start()
        if not wait:
            _live.add(self)
            return
        if not self._started.wait(timeout) or not self._server.started:
            self.stop()
            raise ServeError(
                f"the poolwatch service on {self.url} did not start within {timeout:g}s; "
                "its log (logger uvicorn.error) says why"
            )
        _live.add(self)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and free the port, within ``timeout`` seconds; the pools are left as
        they are. Idempotent; does nothing in a forked child (the parent serves)."""
        if os.getpid() != self._pid:
            return
        self._server.should_exit = True
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            self._sock.close()
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the poolwatch service on {self.url} did not stop in {timeout:g}s")

    def __enter__(self) -> ServiceHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        quiet = _QuietThread(threading.get_ident())
        _uvicorn_logger.addFilter(quiet)
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except Exception:
            _uvicorn_logger.exception("the poolwatch service on %s stopped on an error", self.url)
        finally:
            _uvicorn_logger.removeFilter(quiet)
            self._sock.close()
            self._started.set()  # a start that failed is not waited for

    def after_fork_in_child(self) -> None:
        self._sock.close()  # the parent's listening socket: the port is the parent's to free


def _after_fork_in_child() -> None:
    for handle in list(_live):
        handle.after_fork_in_child()
    _live.clear()


def _install_fork_hook() -> None:
    global _fork_hook_installed
    with _fork_hook:
        if not _fork_hook_installed:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True


def serve_in_thread(
    app: ASGIApp,
    sock: socket.socket,
    *,
    limits: ConnectionLimits | None = None,
    wait: bool = True,
) -> ServiceHandle:
    """Serve ``app`` on ``sock`` (listening already) from a daemon thread, until stopped;
    returns once it answers, or at once with ``wait=False``."""
    _install_fork_hook()
    config = uvicorn.Config(
        app,
        log_config=None,  # the process's logging is its own
        access_log=False,
        lifespan="on",  # the app samples its pools while it runs
        http=protocol_class(limits or ConnectionLimits()),
        timeout_graceful_shutdown=1,
        server_header=False,
    )
    handle = ServiceHandle(EmbeddedServer(config), sock)
    handle.start(wait=wait)
    return handle


def serve_policy(
    manager: PoolManager, policy: AccessPolicy, port: int, **options: Unpack[AppOptions]
) -> ServiceHandle:
    """The app of ``manager`` under ``policy``, served on ``policy.bind_host:port``."""
    sock = listen(check_policy(policy), port)
    try:
        app = build_app(manager, policy, **options)
    except BaseException:
        sock.close()
        raise
    return serve_in_thread(app, sock)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, not inherited by the programs this
    process starts (``ServeError`` if the port is taken)."""
    sock = bind_socket(host, port)
    sock.set_inheritable(False)  # programs this process starts must not hold the port
    return sock


def check_policy(policy: AccessPolicy) -> str:
    """The address an app under ``policy`` listens on; ``ValueError`` for none, or for
    changes open to anyone off loopback."""
    host = policy.bind_host
    if host is None:
        raise ValueError("a served app needs the address it listens on (bind_host)")
    if not policy.read_only and not policy.mutations_allowed:
        raise ValueError(
            f"refusing to serve the control API on {host} without an API token: anyone who "
            f"can reach it could change the pools; set {policy.names.token}, or serve it "
            "read-only, or listen on 127.0.0.1"
        )
    return host


def start_service(
    manager: PoolManager | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    read_only: bool = False,
    **options: Unpack[AppOptions],
) -> ServiceHandle:
    """Serve ``manager``'s metrics, API and console on ``host:port`` from a daemon thread.

    ``manager`` defaults to ``poolwatch.default_manager()``, where ``instrument()`` and
    ``poolwatch.ThreadPoolExecutor`` put their pools. ``port=0`` takes any free port (see
    ``handle.url``). ``token``, ``read_only`` and ``options`` are those of ``create_app``;
    the app knows it listens on ``host``, so without a token changes are allowed on
    loopback only, and another address without ``token`` or ``read_only`` is refused
    (``ValueError``), as ``poolwatch serve`` refuses it. A port in use raises ``ServeError``
    (an ``OSError``). Returns once the service answers; ``handle.stop()`` ends it.
    With ``PROMETHEUS_MULTIPROC_DIR`` set, the process publishes its numbers for the
    whole server (``poolwatch.multiproc.start_publishing``) even when the port is taken.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(
            f"port must be an integer from 0 to 65535 (0: any free port), got {port!r}"
        )
    if manager is None:
        manager = default_manager()
    policy = AccessPolicy(token=token, read_only=read_only, bind_host=host)
    # Before binding: a worker that finds the port taken still counts server-wide.
    start_publishing(manager)
    return serve_policy(manager, policy, port, **options)
