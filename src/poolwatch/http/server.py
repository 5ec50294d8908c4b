"""Running the app under uvicorn, with a graceful stop on SIGTERM/SIGINT.

On the first signal: readiness goes 503 and new work is refused, ``on_stop`` runs
(the demo stops its load generator there), running tasks get the grace period,
queued ones are cancelled, the server stops and one line reports what every pool
did. The process then exits 0. A second signal only reports the remaining grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp

from poolwatch.http.lifecycle import Lifecycle
from poolwatch.records import PoolStats

if TYPE_CHECKING:
    from poolwatch.manager import PoolManager

__all__ = ["ServeError", "Service", "bind_socket", "summary_line"]

logger = logging.getLogger("poolwatch")

_COUNTS = ("submitted", "succeeded", "failed", "cancelled", "rejected")


class ServeError(Exception):
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
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port or "
            "stop the process using it"
        ) from None
    sock.set_inheritable(True)
    return sock


def summary_line(stats: list[PoolStats], *, finished: bool, grace: float) -> str:
    """The final log line: totals, then each pool's counts."""
    totals = dict.fromkeys(_COUNTS, 0)
    parts = []
    for s in stats:
        for name in _COUNTS:
            totals[name] += getattr(s, name)
        counts = " ".join(f"{name}={getattr(s, name)}" for name in _COUNTS)
        parts.append(f"{s.name}: {counts}")
    total = " ".join(f"{name}={value}" for name, value in totals.items())
    ending = (
        "all running tasks finished"
        if finished
        else f"some tasks were still running after the {grace:g}s grace period"
    )
    pools = "; ".join(parts) if parts else "no pools"
    return f"poolwatch stopped ({ending}): total {total} | {pools}"


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling (the Service owns signals).

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


@dataclass
class Service:
    """One manager's app, served until a signal arrives; :meth:`run` returns the exit code."""

    manager: PoolManager
    app: ASGIApp
    lifecycle: Lifecycle
    sock: socket.socket
    grace_period: float = 30.0
    on_start: Callable[[str], None] | None = None
    on_stop: Callable[[], None] | None = None
    #: After :meth:`run`: whether every task finished within the grace period.
    finished: bool = True

    @property
    def base_url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def run(self) -> int:
        return asyncio.run(self._main())

    async def _main(self) -> int:
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="on",  # the app samples its pools while it runs
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        server = _Server(config)
        if self.on_start is not None:
            on_start, url = self.on_start, self.base_url
            server.on_started = lambda: on_start(url)
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
            signalled.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        serving = asyncio.create_task(server.serve(sockets=[self.sock]))
        try:
            stopper = asyncio.create_task(signalled.wait())
            await asyncio.wait({serving, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            self.lifecycle.begin_shutdown()
            deadline.append(time.monotonic() + self.grace_period)
            if self.on_stop is not None:
                await asyncio.to_thread(self.on_stop)
            finished = await asyncio.to_thread(
                self.manager.shutdown,
                wait=True,
                cancel_futures=True,
                timeout=self.grace_period,
            )
            server.should_exit = True
            await serving
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.sock.close()
        self.finished = bool(finished)
        stats = [pool.stats() for pool in sorted(self.manager.pools(), key=lambda p: p.name)]
        logger.info("%s", summary_line(stats, finished=self.finished, grace=self.grace_period))
        return 0
