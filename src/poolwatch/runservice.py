"""``poolwatch run``'s command line, and the service it sets up in the program's process.

The command line (:func:`main`) checks the settings, hands them to the program's
processes as ``POOLWATCH_*`` variables and ``exec``s the program; the process of the run
that claims the side port serves by them (:func:`serve_beside`, called by the start-up
hook). See :mod:`poolwatch.runner` for how a run works.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, create_pools, load_config, parse_config
from .executor import default_manager
from .http.app import build_app
from .http.auth import RUN_SETTINGS, TOKEN_RULE, AccessPolicy, is_loopback, token_problem
from .http.protocol import ConnectionLimits
from .http.side import ServiceHandle, check_policy, listen, serve_in_thread
from .runner import BOOTSTRAP, DEFAULT_PORT, ENV_CLAIMED

__all__ = ["command_of", "main", "serve_beside", "settings_of", "split_argv"]

_PYTHONS = frozenset({"python", "python3", f"python3.{sys.version_info.minor}"})
_VALUE_OPTIONS = frozenset({"--host", "--port", "--config", "--token"})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="poolwatch run",
        description="Run a Python program with every ThreadPoolExecutor observed and the "
        "poolwatch service (metrics, API, console) on a side port. Everything after "
        "-m MODULE, --, or PROGRAM is the program's.",
        usage="poolwatch run [options] [--] PROGRAM [ARGS...]\n       "
        "poolwatch run [options] -m MODULE [ARGS...]",
    )
    p.add_argument("--host", help="address of the side port (default 127.0.0.1)")
    p.add_argument("--port", help=f"the side port (default {DEFAULT_PORT})")
    p.add_argument("--config", metavar="FILE", help="TOML config file, as for poolwatch serve")
    p.add_argument("--token", help="API token that changes need (else POOLWATCH_API_TOKEN)")
    p.add_argument("--read-only", action="store_true", help="refuse every change")
    p.add_argument("--quiet", action="store_true",
                   help="no start-up line (by default one says where the console is)")  # fmt: skip
    return p


def split_argv(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """``poolwatch run``'s own options, the module of ``-m``, and the program's part.

    The program's part starts after ``-m MODULE`` or ``--``, or at the first argument
    that is not an option, as ``python`` splits its command line.
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv[:i], None, argv[i + 1 :]
        if arg == "-m":
            if i + 1 == len(argv):
                raise ValueError("-m needs a module name: poolwatch run -m MODULE [ARGS...]")
            return argv[:i], argv[i + 1], argv[i + 2 :]
        if arg.startswith("-m") and not arg.startswith("--"):
            return argv[:i], arg[2:], argv[i + 1 :]
        if arg == "-" or not arg.startswith("-"):
            return argv[:i], None, argv[i:]
        i += 2 if arg in _VALUE_OPTIONS else 1
    return argv, None, []


def command_of(module: str | None, program: list[str]) -> list[str]:
    """The command to exec: a script or module under this interpreter, else as given."""
    if module is not None:
        return [sys.executable, "-m", module, *program]
    if not program:
        raise ValueError("nothing to run: give a program after --, or -m MODULE")
    if program[0].endswith(".py"):
        return [sys.executable, *program]
    if program[0] in _PYTHONS:  # the interpreter poolwatch is installed in
        return [sys.executable, *program[1:]]
    return program


def _port(text: str, origin: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{origin} must be from 1 to 65535, got {text!r}")
    return int(text)


def _file_server(path: str) -> dict[str, Any]:
    """The config file's checked ``[server]`` settings that the file itself gives."""
    server = load_config(path).server  # raises ConfigError, naming the file and key
    given = tomllib.loads(Path(path).read_text("utf-8")).get("server", {})
    values = {key: getattr(server, key) for key in ("host", "port", "read_only") if key in given}
    values["token"] = server.token  # the file's, or POOLWATCH_API_TOKEN's (it wins)
    return values


def settings_of(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, str]:
    """The ``POOLWATCH_*`` variables the program's processes get, from the command line,
    the environment and the config file, checked (``ValueError`` says what is wrong)."""
    config = args.config or env.get("POOLWATCH_CONFIG") or None
    file: dict[str, Any] = _file_server(config) if config else {}
    host = (args.host or env.get("POOLWATCH_HOST") or file.get("host") or "127.0.0.1").strip()
    if args.port is not None:
        port = _port(args.port, "--port")
    elif env.get("POOLWATCH_PORT"):
        port = _port(env["POOLWATCH_PORT"], "POOLWATCH_PORT")
    else:
        port = _port(str(file.get("port", DEFAULT_PORT)), "[server] port")
    token = args.token or env.get("POOLWATCH_API_TOKEN") or file.get("token")
    if args.token and (problem := token_problem(args.token)) is not None:
        raise ValueError(f"--token {problem}: {TOKEN_RULE}")
    read_only = args.read_only or env.get("POOLWATCH_READ_ONLY") == "1" or file.get("read_only")
    if not host or (not token and not read_only and not is_loopback(host)):
        raise ValueError(
            f"refusing to serve the control API on {host or repr(host)} without an API "
            "token: anyone who can reach it could change the pools; pass --token (or set "
            "POOLWATCH_API_TOKEN), or --read-only, or --host 127.0.0.1"
        )
    settings = {
        "POOLWATCH_HOST": host,
        "POOLWATCH_PORT": str(port),
        "POOLWATCH_READ_ONLY": "1" if read_only else "0",
        "POOLWATCH_QUIET": "1" if args.quiet or env.get("POOLWATCH_QUIET") == "1" else "0",
    }
    if args.token:  # the environment's and the file's are read where they are
        settings["POOLWATCH_API_TOKEN"] = args.token
    if config:
        settings["POOLWATCH_CONFIG"] = os.path.abspath(config)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    given = list(sys.argv[1:] if argv is None else argv)
    try:
        own, module, program = split_argv(given)
    except ValueError as exc:
        parser.error(str(exc))
    args = parser.parse_args(own)
    try:
        command = command_of(module, program)
        settings = settings_of(args, os.environ)
    except (ValueError, ConfigError) as exc:
        parser.error(str(exc))
    executable = shutil.which(command[0]) or command[0]
    if not os.path.exists(executable):
        parser.error(f"{command[0]}: program not found")
    env = os.environ
    env.update(settings)
    env.pop(ENV_CLAIMED, None)  # a run started from a run serves on its own
    env["PYTHONPATH"] = os.pathsep.join([str(BOOTSTRAP), *filter(None, [env.get("PYTHONPATH")])])
    os.execvpe(executable, command, env)
    return 127  # not reached


def serve_beside() -> ServiceHandle | None:
    """``poolwatch run``'s service, set up from its ``POOLWATCH_*`` variables (and the
    config file of ``POOLWATCH_CONFIG``), in a process of the run that no process before
    it claimed the port for. Binding the port is the claim: this process marks its
    environment (``ENV_CLAIMED``) so the processes it starts leave the port alone. The
    program starts while uvicorn does. A failure to serve is one line on stderr, never
    the program's end."""
    os.environ[ENV_CLAIMED] = str(os.getpid())  # tried here: children do not try again
    try:
        config = _run_config()
        server = config.server
        policy = AccessPolicy(
            token=server.token,
            read_only=server.read_only or os.environ.get("POOLWATCH_READ_ONLY") == "1",
            bind_host=os.environ.get("POOLWATCH_HOST", "127.0.0.1"),
            names=RUN_SETTINGS,
        )
        sock = listen(check_policy(policy), int(os.environ.get("POOLWATCH_PORT", DEFAULT_PORT)))
    except (OSError, ValueError, ConfigError) as exc:
        print(f"poolwatch: {exc}; the program runs without the service", file=sys.stderr)
        return None
    try:
        manager = default_manager()
        create_pools(manager, config)
        app = build_app(
            manager, policy, max_body_bytes=server.max_body_bytes,
            body_timeout=server.body_timeout, trace_url=config.console.trace_url,
            grafana_url=config.console.grafana_url,
        )  # fmt: skip
    except ConfigError as exc:  # a pool of the file refused
        sock.close()
        print(f"poolwatch: {exc}; the program runs without the service", file=sys.stderr)
        return None
    except BaseException:
        sock.close()
        raise
    limits = ConnectionLimits(server.header_timeout, server.max_connections)
    handle = serve_in_thread(app, sock, limits=limits, wait=False)
    if os.environ.get("POOLWATCH_QUIET") != "1":
        print(f"poolwatch: console at {handle.url}", file=sys.stderr, flush=True)
    return handle


def _run_config() -> Config:
    """The config file of the run (``POOLWATCH_CONFIG``), else the defaults; the token of
    ``POOLWATCH_API_TOKEN`` wins over the file's."""
    path = os.environ.get("POOLWATCH_CONFIG")
    return load_config(path) if path else parse_config({}, source=None)
