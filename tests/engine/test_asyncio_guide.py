"""docs/integrations/asyncio.md: every example runs and prints what the guide says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import free_port

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "integrations" / "asyncio.md"
BLOCK = re.compile(r"```python\n(.*?)```\n\nprints (.*?)\.\n", re.S)


def examples() -> list[tuple[str, list[str]]]:
    found = []
    for code, said in BLOCK.findall(GUIDE.read_text()):
        found.append((code, re.findall(r"`([^`]*)`", said)))
    return found


def test_the_guide_has_its_examples() -> None:
    assert len(examples()) == 3


@pytest.mark.parametrize("under_run", [False, True], ids=["python", "poolwatch-run"])
@pytest.mark.parametrize(("code", "lines"), examples(), ids=["instrument", "default", "cancel"])
def test_example_prints_what_the_guide_says(code: str, lines: list[str], under_run: bool) -> None:
    command = [sys.executable, "-c", code]
    if under_run:  # instrument() on from the start, the service beside it
        command = [sys.executable, "-m", "poolwatch", "run", "--quiet",
                   "--port", str(free_port()), "--", *command]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == lines
