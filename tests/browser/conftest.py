"""Fixtures for the browser tests: real poolwatch servers in subprocesses, one Chromium.

The servers run as ``python -m poolwatch ...`` child processes, so their pools, worker
threads and load generator live outside the test process; every server and the
browser are shared by the whole session and stopped at its end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

import support
from browser.consoletools import CHROMIUM_ARGS, LAPTOP, TOKEN, UI_TIMEOUT_MS, Server, launch_server


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """Every server the browser tests use, started in parallel and stopped at the end.

    - ``demo``: ``poolwatch demo``, demo pools under live load; changes allowed
      (loopback, no token): what a new user sees first.
    - ``token``: ``poolwatch serve`` with an API token; changes need it.
    - ``read_only``: ``poolwatch serve --read-only``.

    The two ``serve`` servers have one configured pool, ``reports``.
    """
    tmp = tmp_path_factory.mktemp("poolwatch-servers")
    config = tmp / "pools.toml"
    config.write_text('[[pools]]\nname = "reports"\nmax_workers = 3\nqueue_capacity = 50\n')
    ports: set[int] = set()
    started: dict[str, Server] = {}
    try:
        started["demo"] = launch_server(tmp, ["demo"], avoid_ports=ports)
        started["token"] = launch_server(
            tmp, ["serve", "--config", str(config)], token=TOKEN, avoid_ports=ports
        )
        started["read_only"] = launch_server(
            tmp, ["serve", "--read-only", "--config", str(config)], avoid_ports=ports
        )
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="session")
def demo_server(servers: dict[str, Server]) -> Server:
    return servers["demo"]


@pytest.fixture(scope="session")
def token_server(servers: dict[str, Server]) -> Server:
    return servers["token"]


@pytest.fixture(scope="session")
def read_only_server(servers: dict[str, Server]) -> Server:
    return servers["read_only"]


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    # The console polls once a second; allow a loaded CI machine several polls.
    expect.set_options(timeout=UI_TIMEOUT_MS)
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
