"""``poolwatch run``: a Python program with every executor observed, and the service beside it.

Like ``opentelemetry-instrument``, it does not run the program itself: it puts a start-up
hook (``_bootstrap/sitecustomize.py``) on ``PYTHONPATH`` and replaces itself with the
program (``exec``), so the program's pid, argv, exit status, signals and output are its
own. Every Python process of the run (the program, or the ones a wrapper such as
``sh -c``, a script or ``uv run`` starts) runs the hook, which calls ``instrument()``
before the process's own code runs. The first of them to claim the side port serves
``/metrics``, the API and the console there from a background thread
(``poolwatch.runservice.serve_beside``); it marks its environment (``POOLWATCH_RUN_CLAIMED``)
so the processes it starts are instrumented but do not try to serve. A process of the run
started after the one serving has exited may serve in turn.

Everything after ``-m MODULE``, after ``--``, or from the first argument that is not an
option is the program's, as with ``python``. Settings, in order of precedence: the
command line, ``POOLWATCH_*`` variables (``POOLWATCH_HOST``, ``POOLWATCH_PORT``,
``POOLWATCH_CONFIG``, ``POOLWATCH_API_TOKEN``, ``POOLWATCH_READ_ONLY=1``,
``POOLWATCH_QUIET=1``), the config file's ``[server]`` table, then the defaults
(127.0.0.1:9464, changes allowed from loopback only). The config file is the one of
``poolwatch serve``: its pools are created in the process that serves, its ``[server]``
limits and ``[console]`` links apply; ``tasks``, ``[tracing]`` and ``[shutdown]`` are the
program's business and are not used. A program named ``python``/``python3``, or a ``.py``
script, runs under the interpreter poolwatch is installed in.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BOOTSTRAP", "DEFAULT_PORT", "ENV_CLAIMED", "observe"]

BOOTSTRAP = Path(__file__).with_name("_bootstrap")
DEFAULT_PORT = 9464
#: Set (to its pid) by the process of a run that claimed the side port; inherited by the
#: processes it starts, which then do not try to serve.
ENV_CLAIMED = "POOLWATCH_RUN_CLAIMED"


def observe() -> bool:
    """The hook's first step in each process of the program: instrument it; True when no
    process of the run that started this one claimed the side port (this one may serve)."""
    from .executor import default_manager, instrument

    instrument(default_manager())
    return ENV_CLAIMED not in os.environ
