"""Running the app under uvicorn, with a graceful stop on SIGTERM/SIGINT.

On the first signal: readiness goes 503 and new work is refused, ``on_stop`` runs
(the demo stops its load generator there), running tasks get the grace period,
queued ones are cancelled, the server stops and one line reports what every pool
did, with the count of tasks still running. The process then exits 0, all within the
grace period. A second signal only reports the remaining grace. SIGHUP calls
``on_reload`` (``serve`` reloads its config file there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp

from poolwatch.http.lifecycle import Lifecycle
from poolwatch.http.protocol import ConnectionLimits, protocol_class
from poolwatch.records import PoolStats

if TYPE_CHECKING:
    from poolwatch.manager import PoolManager

__all__ = ["EmbeddedServer", "ServeError", "Service", "bind_socket", "summary_line"]

logger = logging.getLogger("poolwatch")

_COUNTS = ("submitted", "succeeded", "failed", "cancelled", "rejected")


class ServeError(OSError):
    """The server could not start (for instance, the port is taken)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket, so that a taken port is a clear error before anything starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another port or "
            "stop the process using it"
        ) from None
    sock.set_inheritable(True)
    return sock


def summary_line(stats: list[PoolStats], *, grace: float, cancel_requested: bool) -> str:
    """The final log line: how it ended, totals, then each pool's counts.

    ``running`` counts tasks still running as the line is written (they ignored the
    cancel request); ``cancel_requested`` says whether the grace period ran out.
    """
    totals = dict.fromkeys(_COUNTS, 0)
    parts = []
    for s in stats:
        for name in _COUNTS:
            totals[name] += getattr(s, name)
        counts = " ".join(f"{name}={getattr(s, name)}" for name in _COUNTS)
        parts.append(f"{s.name}: {counts} running={s.active}")
    running = sum(s.active for s in stats)
    total = " ".join(f"{name}={value}" for name, value in totals.items())
    if running:
        ending = f"{running} task(s) still running after the {grace:g}s grace period"
    elif cancel_requested:
        ending = (
            f"all running tasks finished; those still running after the {grace:g}s grace "
            "period stopped when asked to cancel"
        )
    else:
        ending = "all running tasks finished"
    pools = "; ".join(parts) if parts else "no pools"
    return f"poolwatch stopped ({ending}): total {total} running={running} | {pools}"


class EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its own signal handling (whoever runs it owns signals).

    ``on_started`` runs as soon as it serves, before any request is answered.
    """

    on_started: Callable[[], None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            self.on_started()


#: Of the grace period, the part kept for tasks asked to cancel and the server's own stop.
_RESERVE = 0.2
_RESERVE_MAX = 2.0


@dataclass
class Service:
    """One manager's app, served until a signal arrives; :meth:`run` returns the exit code.

    The whole stop fits in ``grace_period``: running tasks get most of it; then those
    still running are asked to cancel and get part of the rest; then requests still
    waiting (a draining DELETE, a ``caller_runs`` submission) are answered with 503 and
    the server closes its connections.
    """

    manager: PoolManager
    app: ASGIApp
    lifecycle: Lifecycle
    sock: socket.socket
    grace_period: float = 30.0
    on_start: Callable[[str], None] | None = None
    on_stop: Callable[[], None] | None = None
    #: Called (in a worker thread) on SIGHUP with the reason; None: nothing to reload.
    on_reload: Callable[[str], object] | None = None
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    #: After :meth:`run`: tasks still running when it returned (they ignored the cancel).
    still_running: int = 0

    @property
    def base_url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def run(self) -> int:
        return asyncio.run(self._main())

    def _server(self) -> EmbeddedServer:
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="on",  # the app samples its pools while it runs
            http=protocol_class(self.limits),
            timeout_graceful_shutdown=1,
            server_header=False,
        )
        server = EmbeddedServer(config)
        if self.on_start is not None:
            on_start, url = self.on_start, self.base_url
            server.on_started = lambda: on_start(url)
        return server

    async def _main(self) -> int:
        server = self._server()
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()
        deadline: list[float] = []

        def on_signal(sig: signal.Signals) -> None:
            if signalled.is_set():
                left = max(0.0, deadline[0] - time.monotonic()) if deadline else self.grace_period
                logger.warning(
                    "received %s again: already stopping (%.1fs of grace left)", sig.name, left
                )
                return
            logger.info(
                "received %s: stopping; running tasks get up to %gs", sig.name, self.grace_period
            )
            deadline.append(time.monotonic() + self.grace_period)
            signalled.set()

        def on_hangup() -> None:
            if signalled.is_set():
                logger.info("received SIGHUP while stopping: not reloading")
            elif self.on_reload is None:
                logger.warning(
                    "received SIGHUP: there is no config file to reload (serve --config FILE)"
                )
            else:
                loop.run_in_executor(None, self.on_reload, "SIGHUP")

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        serving = asyncio.create_task(server.serve(sockets=[self.sock]))
        try:
            stopper = asyncio.create_task(signalled.wait())
            await asyncio.wait({serving, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not deadline:  # the server ended by itself
                deadline.append(time.monotonic() + self.grace_period)
            cancel_requested = await self._drain(deadline[0])
            self.lifecycle.close_requests()
            # Whatever is left of the grace period, for the server to answer and close.
            server.config.timeout_graceful_shutdown = max(0.05, deadline[0] - time.monotonic())  # type: ignore[assignment]
            server.should_exit = True
            await serving
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.sock.close()
        stats = [pool.stats() for pool in sorted(self.manager.pools(), key=lambda p: p.name)]
        self.still_running = sum(s.active for s in stats)
        line = summary_line(stats, grace=self.grace_period, cancel_requested=cancel_requested)
        logger.info("%s", line)
        return 0

    async def _drain(self, deadline: float) -> bool:
        """Stop taking work and let the pools drain until ``deadline``, keeping a reserve
        for the end; True when tasks had to be asked to cancel."""
        self.lifecycle.begin_shutdown()
        reserve = min(_RESERVE_MAX, self.grace_period * _RESERVE)
        if self.on_stop is not None:
            await asyncio.to_thread(self.on_stop)
        finished = await asyncio.to_thread(
            self.manager.shutdown,
            wait=True,
            cancel_futures=True,
            timeout=max(0.0, deadline - reserve - time.monotonic()),
        )
        if finished:
            return False
        # Tasks still running have been asked to cancel: half the reserve to notice.
        await asyncio.to_thread(
            self.manager.shutdown,
            wait=True,
            cancel_futures=True,
            timeout=max(0.0, deadline - reserve / 2 - time.monotonic()),
        )
        return True
