"""The console of a multi-process server (``uvicorn --workers 2``): the whole server's
totals, which process answered, and that the cards are that process's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser.consoletools import Server as ConsoleServer
from multiproc.servers import Server, running_server

pytestmark = pytest.mark.browser


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Server]:
    with running_server("uvicorn", tmp_path) as server:
        while len(server.pids) < 2:
            server.work(n=2, fail=1)
            assert server.sent < 300, f"only workers {server.pids} answered"
        yield server


def test_console_shows_the_whole_server_and_who_answered(page: Page, workers: Server) -> None:
    page.goto(workers.url + "/")
    line = page.locator("#server-summary")
    sent, ok, failed = workers.sent, workers.sent_ok, workers.sent_failed
    # Every process's tasks, whichever worker answers the console's polls.
    expect(line).to_have_text(
        re.compile(
            rf"^Whole server, 2 processes: {sent:,} submitted · {ok:,} succeeded · "
            rf"{failed:,} failed · 0 busy workers · 0 queued\. "
            r"Answered by process (\d+); the pool cards show that process only\.$"
        )
    )
    answered = int(re.findall(r"process (\d+);", line.inner_text())[0])
    assert answered in workers.pids
    expect(page.get_by_role("article", name="work", exact=True)).to_be_visible()


def test_a_single_process_console_has_no_server_line(
    page: Page, demo_server: ConsoleServer
) -> None:
    page.goto(demo_server.url)
    expect(page.get_by_role("article").first).to_be_visible()
    expect(page.locator("#server-summary")).to_be_hidden()
