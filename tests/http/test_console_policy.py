"""The console under its Content-Security-Policy, in real Chromium: it works, and no other
site can frame it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import support
from poolwatch import PoolManager
from poolwatch.http import create_app

pytestmark = pytest.mark.browser

ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]


@pytest.fixture
def page() -> Iterator[Any]:
    chromium = support.require_tool("chromium", hint="apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_the_console_runs_under_its_policy(page: Any, manager: PoolManager, live_server) -> None:
    manager.create_pool("policy-pool", max_workers=2)
    server = live_server(create_app(manager, bind_host="127.0.0.1"))
    messages: list[str] = []
    errors: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = page.goto(server.url + "/")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.locator(".pool-name", has_text="policy-pool").wait_for(timeout=10_000)
    violations = [m for m in messages if "Content Security Policy" in m or "Refused" in m]
    assert violations == []
    assert errors == []


def test_another_site_cannot_frame_the_console(
    page: Any, manager: PoolManager, live_server
) -> None:
    server = live_server(create_app(manager, bind_host="127.0.0.1"))

    def refusal(message: Any) -> bool:
        return "frame-ancestors" in message.text or "X-Frame-Options" in message.text

    # A page of another origin (about:blank here) that frames the console.
    with page.expect_console_message(refusal, timeout=10_000) as refused:
        page.set_content(f'<iframe id="f" src="{server.url}/"></iframe>')
    assert server.url.removeprefix("http://") in refused.value.text
    assert page.frame_locator("#f").locator(".pool-name").count() == 0
