"""Fixtures for the browser tests: real poolwatch servers in subprocesses, one Chromium.

The servers run as ``python -m poolwatch ...`` child processes, so their pools, worker
threads and load generator live outside the test process; every server and the
browser are shared by the whole session and stopped at its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

import support
from browser.consoletools import CHROMIUM_ARGS, LAPTOP, TOKEN, UI_TIMEOUT_MS, Server, start_server


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("poolwatch-servers")


@pytest.fixture(scope="session")
def demo_server(server_dir: Path) -> Iterator[Server]:
    """``poolwatch demo``: demo pools under live load; changes allowed (loopback, no token)."""
    server = start_server(server_dir, ["demo"])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_server(server_dir: Path) -> Iterator[Server]:
    """``poolwatch demo`` with an API token: changes need ``Authorization: Bearer``."""
    server = start_server(server_dir, ["demo"], token=TOKEN)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def read_only_server(server_dir: Path) -> Iterator[Server]:
    """``poolwatch serve --read-only`` with one configured pool."""
    config = server_dir / "read-only.toml"
    config.write_text('[[pools]]\nname = "reports"\nmax_workers = 3\nqueue_capacity = 50\n')
    server = start_server(server_dir, ["serve", "--read-only", "--config", str(config)])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = support.require_tool("chromium", hint="apt-get install chromium")
    browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test (its own sessionStorage), at laptop size."""
    context = browser.new_context(viewport=LAPTOP, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(UI_TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page that fails the test on any uncaught script error."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    if errors:
        pytest.fail(f"the console raised script errors: {errors}", pytrace=False)
