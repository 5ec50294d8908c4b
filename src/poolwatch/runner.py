"""``poolwatch run``: a Python program with every executor observed, and the service beside it.

Like ``opentelemetry-instrument``, it does not run the program itself: it puts a start-up
hook (``_bootstrap/sitecustomize.py``) on ``PYTHONPATH`` and replaces itself with the
program (``exec``), so the program's pid, argv, exit status, signals and output are its
own. In that process the hook calls ``instrument()`` before the program's code runs and
serves ``/metrics``, the API and the console on a side port from a background thread
(``poolwatch.http.side.serve_beside``, the service of :func:`poolwatch.start_service`).
Processes the program starts inherit the hook and are instrumented too; only the first
one serves.

Settings come from the command line or ``POOLWATCH_*`` variables: ``POOLWATCH_HOST``
(127.0.0.1), ``POOLWATCH_PORT`` (9464), ``POOLWATCH_QUIET`` (1: no start-up line), and
from the environment only ``POOLWATCH_API_TOKEN`` (changes need it; needed off loopback)
and ``POOLWATCH_READ_ONLY`` (1: refuse every change).
A program named ``python``/``python3``, or a ``.py`` script, runs under the interpreter
poolwatch is installed in.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

__all__ = ["BOOTSTRAP", "DEFAULT_PORT", "ENV_PID", "main", "observe"]

BOOTSTRAP = Path(__file__).with_name("_bootstrap")
DEFAULT_PORT = 9464
_PYTHONS = frozenset({"python", "python3", f"python3.{sys.version_info.minor}"})
ENV_PID = "POOLWATCH_RUN_PID"  # the process that serves: the one exec'd into


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="poolwatch run",
        description="Run a Python program with every ThreadPoolExecutor observed and the "
        "poolwatch service (metrics, API, console) on a side port.",
        usage="poolwatch run [options] -- PROGRAM [ARGS...]\n       "
        "poolwatch run [options] -m MODULE [ARGS...]",
    )
    p.add_argument("--host", default=os.environ.get("POOLWATCH_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("POOLWATCH_PORT", DEFAULT_PORT)))
    p.add_argument("--quiet", action="store_true", default=os.environ.get("POOLWATCH_QUIET") == "1",
                   help="no start-up line (by default one says where the console is)")  # fmt: skip
    p.add_argument("-m", dest="module", help="run a module, as python -m does")
    p.add_argument("program", nargs=argparse.REMAINDER, help="the program and its arguments")
    return p


def command_of(module: str | None, program: list[str]) -> list[str]:
    """The command to exec: a script or module under this interpreter, else as given."""
    if program and program[0] == "--":
        program = program[1:]
    if module is not None:
        return [sys.executable, "-m", module, *program]
    if not program:
        raise ValueError("nothing to run: give a program after --, or -m MODULE")
    if program[0].endswith(".py"):
        return [sys.executable, *program]
    if program[0] in _PYTHONS:  # the interpreter poolwatch is installed in
        return [sys.executable, *program[1:]]
    return program


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        command = command_of(args.module, args.program)
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 < args.port < 65536:
        parser.error(f"--port must be from 1 to 65535, got {args.port}")
    executable = shutil.which(command[0]) or command[0]
    if not os.path.exists(executable):
        parser.error(f"{command[0]}: program not found")
    env = os.environ
    env["PYTHONPATH"] = os.pathsep.join([str(BOOTSTRAP), *filter(None, [env.get("PYTHONPATH")])])
    env["POOLWATCH_HOST"] = args.host
    env["POOLWATCH_PORT"] = str(args.port)
    env["POOLWATCH_QUIET"] = "1" if args.quiet else "0"
    env[ENV_PID] = str(os.getpid())  # exec keeps the pid: that process serves
    os.execvpe(executable, command, env)
    return 127  # not reached


def observe() -> bool:
    """The hook's first step in each process of the program: instrument it; True when
    this is the process that serves (the one exec'd into), not a child of it."""
    from .executor import default_manager, instrument

    instrument(default_manager())
    return os.environ.get(ENV_PID) == str(os.getpid())
