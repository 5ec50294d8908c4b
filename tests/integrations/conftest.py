"""Fixtures for the integration guides: real server processes, always ended."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from integrations.guide import Program, clean_env


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Program]]:
    """``start(*args, **env)``: a real process in ``tmp_path``, stopped after the test."""
    programs: list[Program] = []

    def run(*args: str, **env: str) -> Program:
        program = Program(list(args), tmp_path, clean_env(**env))
        programs.append(program)
        return program

    yield run
    for program in programs:
        program.stop()
