"""Running a guide of docs/integrations as written: its files, and real server processes.

A code block of a guide that a reader saves as a file is marked, on the line before its
fence, with ``<!-- file: NAME -->``; the tests write those blocks out unchanged and run
the programs the guide runs, so a guide that stops working fails the suite.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support import wait_until

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "integrations"
BIN = Path(sys.executable).parent
_FILE = re.compile(
    r"^<!-- file: (?P<name>[\w./-]+) -->\n```[\w-]*\n(?P<body>.*?)^```$", re.M | re.S
)


def write_files(guide: str, into: Path) -> list[str]:
    """Write every file the guide shows into ``into``; returns their names."""
    text = (GUIDES / guide).read_text()
    names = []
    for match in _FILE.finditer(text):
        path = into / match["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(match["body"])
        names.append(match["name"])
    assert names, f"{guide} shows no file (<!-- file: NAME --> before a code block)"
    return names


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without poolwatch's or OpenTelemetry's settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "POOLWATCH_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None


class Program:
    """A real process started in its own session; ``stop()`` ends it and its children."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log = cwd / f"{Path(args[0]).name}.log"
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log.read_text()

    def wait_for(self, url: str, timeout: float = 30) -> httpx.Response:
        def answered() -> httpx.Response | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.args} exited {self.proc.returncode}:\n{self.output()}")
            response = get(url)
            return response if response is not None and response.status_code < 500 else None

        return wait_until(answered, timeout=timeout, message=lambda: f"{url}\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the process, wait for it, and kill its whole session if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever it left behind
        code = self.proc.wait(5)
        self._log.close()
        return code


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels}`` in a Prometheus text scrape, or None."""
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None
