"""The ``poolwatch`` command: ``serve``, ``demo``, ``ctl`` and ``--version``.

Exit codes: 0 after a clean stop (including SIGTERM/SIGINT), 2 for bad arguments or
configuration (one message, no traceback), 1 when the server cannot start (the port
is taken).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace

from poolwatch import ctl
from poolwatch._version import __version__
from poolwatch.config import (
    TOKEN_ENV,
    Config,
    ConfigError,
    ServerConfig,
    ShutdownConfig,
    create_pools,
    load_config,
    parse_config,
)
from poolwatch.demo import DEMO_POOLS, LoadGenerator
from poolwatch.http.app import build_app
from poolwatch.http.auth import SERVER_SETTINGS, AccessPolicy, is_loopback
from poolwatch.http.lifecycle import Lifecycle
from poolwatch.http.otel import build_tracer_provider
from poolwatch.http.protocol import ConnectionLimits
from poolwatch.http.server import ServeError, Service, bind_socket
from poolwatch.manager import PoolManager
from poolwatch.reload import ConfigReloader

__all__ = ["build_parser", "main"]

logger = logging.getLogger("poolwatch")

Overrides = dict[str, Any] | None


def _port(text: str) -> int:
    # str.isdigit() also accepts digits such as "²" that int() refuses.
    if not re.fullmatch(r"[0-9]{1,5}", text) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 65535, got {text!r}")
    return int(text)


def _host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must be an address such as 127.0.0.1, got ''")
    return text.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poolwatch",
        description="Observability-first thread pools: serve their control API, metrics and "
        "web console.",
    )
    parser.add_argument("--version", action="version", version=f"poolwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve the pools of a config file",
        description="Serve the control API, /metrics and the web console for the pools "
        "declared in a TOML config file. Flags override the file.",
    )
    serve.add_argument("--config", metavar="FILE", help="TOML config file")
    serve.add_argument("--host", type=_host, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="TCP port (default 8000)")
    serve.add_argument(
        "--tasks",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="modules to import so their @poolwatch.task functions register",
    )
    serve.add_argument(
        "--read-only", action="store_true", help="refuse every change (POST/PATCH/DELETE: 403)"
    )
    serve.add_argument(
        "--watch-config",
        action="store_true",
        help="reload the config file whenever it changes (SIGHUP always reloads it)",
    )

    commands.add_parser(
        "run",
        help="run a Python program with every executor observed and the service on a side "
        "port: poolwatch run [--host H] [--port 9464] [--config FILE] [--token T] "
        "[--read-only] [--quiet] [--] PROGRAM [ARGS...] (or -m MODULE [ARGS...])",
        add_help=False,
    )
    demo = commands.add_parser(
        "demo",
        help="serve demo pools under a built-in load generator",
        description="Serve demo pools (io, cpu, flaky, bounded, slow) fed by a load "
        "generator, so every metric and panel has live data within a minute.",
    )
    demo.add_argument("--host", type=_host, default="127.0.0.1", help="default 127.0.0.1")
    demo.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    demo.add_argument(
        "--dask",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="add the pool 'dask' (kind dask), on the Dask scheduler at ADDRESS or, without "
        "one, on a local cluster of two worker processes (needs poolwatch[dask])",
    )
    ctl.add_parser(commands)
    return parser


def _configure_logging() -> None:
    """Plain lines on stderr; audit records as bare JSON lines (one per control action)."""
    audit = logging.getLogger("poolwatch.audit")
    if audit.handlers:  # configured already (main() called twice in one process)
        return
    # The formats below use none of these; skipping them makes each record cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    audit.propagate = False
    audit_handler = logging.StreamHandler(sys.stderr)
    audit_handler.setFormatter(logging.Formatter("%(message)s"))
    audit.addHandler(audit_handler)
    audit.setLevel(logging.INFO)


class UsageError(Exception):
    """A problem with the command line or configuration: exit code 2."""


def _import_tasks(modules: Sequence[str], config: Config) -> None:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for module in modules:
        origin = (
            f"tasks[{config.tasks.index(module)}] in {config.source}"
            if config.source and module in config.tasks
            else "--tasks"
        )
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise UsageError(
                f"cannot import task module {module!r} (from {origin}): "
                f"{type(exc).__name__}: {exc}; check the module name and that it is importable "
                "from the current directory"
            ) from None


def _check_exposure(config: Config, *, demo: bool) -> None:
    server = config.server
    if server.token is None and not server.read_only and not is_loopback(server.host):
        if demo:  # demo takes neither --config nor --read-only
            fix = f"Set {TOKEN_ENV}, or listen on 127.0.0.1 (--host 127.0.0.1)"
        else:
            fix = (
                f"Set {TOKEN_ENV} (or [server] token in the config file), or pass "
                "--read-only, or listen on 127.0.0.1"
            )
        raise UsageError(
            f"refusing to serve the control API on {server.host} without an API token: anyone "
            f"who can reach it could change the pools. {fix}"
        )


def _serve(config: Config, *, demo: bool, watch: bool = False, overrides: Overrides = None,
           dask: str | None = None) -> int:  # fmt: skip
    _check_exposure(config, demo=demo)
    _import_tasks(config.tasks, config)
    provider = build_tracer_provider(config.tracing)
    if provider is not None:
        trace.set_tracer_provider(provider)
    manager = PoolManager(tracer_provider=provider)
    generator: LoadGenerator | None = None
    reloader: ConfigReloader | None = None
    stop_dask: Callable[[], None] | None = None
    try:
        create_pools(manager, config)
        if dask is not None:
            stop_dask = _start_dask(manager, dask)
        try:
            sock = bind_socket(config.server.host, config.server.port)
        except ServeError as exc:
            print(f"poolwatch: error: {exc}", file=sys.stderr)
            return 1
        service = _service(manager, config, sock)
        if demo:
            generator = LoadGenerator(manager)
            generator.start()
            service.on_stop = generator.stop
        if config.source is not None:
            reloader = ConfigReloader(manager, config, overrides=overrides)
            service.on_reload = reloader.reload
            if watch:
                threading.Thread(
                    target=reloader.watch, name="poolwatch-config-watch", daemon=True
                ).start()
        code = service.run()
    finally:
        if reloader is not None:
            reloader.stop()
        if generator is not None:
            generator.stop()
        manager.shutdown(wait=False, cancel_futures=True)
        if stop_dask is not None:
            stop_dask()
        if provider is not None:
            provider.shutdown()
    return _leave(code, service.still_running)


def _start_dask(manager: PoolManager, target: str) -> Callable[[], None]:
    """The demo's ``dask`` pool (``--dask``); a clear error if it cannot be made."""
    from poolwatch.dask_demo import start_dask_pool

    try:
        return start_dask_pool(manager, target)
    except (ImportError, ValueError, OSError) as exc:
        raise UsageError(f"--dask: {exc}") from None


def _service(manager: PoolManager, config: Config, sock: socket.socket) -> Service:
    server = config.server
    lifecycle = Lifecycle()
    app = build_app(
        manager,
        AccessPolicy(
            token=server.token,
            read_only=server.read_only,
            bind_host=server.host,
            names=SERVER_SETTINGS,
        ),
        max_body_bytes=server.max_body_bytes,
        lifecycle=lifecycle,
        body_timeout=server.body_timeout,
        trace_url=config.console.trace_url,
        grafana_url=config.console.grafana_url,
    )
    return Service(
        manager=manager,
        app=app,
        lifecycle=lifecycle,
        sock=sock,
        grace_period=config.shutdown.grace_period,
        on_start=_announce(config),
        limits=ConnectionLimits(
            header_timeout=server.header_timeout, max_connections=server.max_connections
        ),
    )


def _leave(code: int, still_running: int) -> int:
    """Return ``code``, or exit at once when worker threads would hold the interpreter."""
    workers = [
        t
        for t in threading.enumerate()
        if t.is_alive() and not t.daemon and t is not threading.current_thread()
    ]
    if not still_running and not workers:
        return code
    # Threads are never killed: tasks that ignored the cancel request would keep the
    # interpreter alive at exit. The grace period is over, so leave without them.
    if still_running:
        logger.warning(
            "exiting with %d task(s) still running: they did not stop when asked to cancel",
            still_running,
        )
    else:
        logger.warning(
            "exiting with %d worker thread(s) of removed pools still running", len(workers)
        )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _announce(config: Config) -> Callable[[str], None]:
    def announce(base: str) -> None:
        if config.server.read_only:
            mode = "read-only"
        elif config.server.token:
            mode = "changes need the API token"
        else:
            mode = "changes allowed from this machine"
        print(
            f"poolwatch {__version__} is serving; {mode}\n"
            f"  console: {base}\n"
            f"  API:     {base}api/pools  (OpenAPI: {base}openapi.json)\n"
            f"  metrics: {base}metrics\n"
            "Press Ctrl+C to stop.",
            flush=True,
        )

    return announce


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's changes to the config file, applied again on every reload."""
    return {
        "host": args.host,
        "port": args.port,
        "read_only": args.read_only,
        "tasks": tuple(args.tasks),
    }


def _config_for(args: argparse.Namespace) -> Config:
    if args.command == "demo":
        base = parse_config({}, source=None)
        return Config(
            server=ServerConfig(host=args.host, port=args.port, token=base.server.token),
            tracing=base.tracing,
            shutdown=ShutdownConfig(grace_period=5.0),
            pools=DEMO_POOLS,
            tasks=("poolwatch.demo",),
        )
    if args.watch_config and not args.config:
        raise UsageError("--watch-config needs a config file to watch: add --config FILE")
    config = load_config(args.config) if args.config else parse_config({}, source=None)
    return config.with_overrides(**_overrides(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["run"]:  # its own parser: everything after -- is the program's
        from .runservice import main as run_main

        return run_main(given[1:])
    parser = build_parser()
    args: Any = parser.parse_args(argv)
    if args.command == "ctl":
        return ctl.run(args)
    _configure_logging()
    try:
        config = _config_for(args)
        if args.command == "demo":
            return _serve(config, demo=True, dask=args.dask)
        return _serve(config, demo=False, watch=args.watch_config, overrides=_overrides(args))
    except (ConfigError, UsageError) as exc:
        print(f"poolwatch: error: {exc}", file=sys.stderr)
        return 2
