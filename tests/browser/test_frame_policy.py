"""The console under its Content-Security-Policy, in real Chromium: it works, and no other
site can frame it."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Page

from browser.consoletools import Server

pytestmark = pytest.mark.browser


def test_the_console_runs_under_its_policy(page: Page, demo_server: Server) -> None:
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    response = page.goto(demo_server.url)
    assert response is not None
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.locator(".pool-name", has_text="io").first.wait_for()
    violations = [m for m in messages if "Content Security Policy" in m or "Refused" in m]
    assert violations == []  # script errors fail the test through the page fixture


def test_another_site_cannot_frame_the_console(page: Page, demo_server: Server) -> None:
    def refusal(message: ConsoleMessage) -> bool:
        return "frame-ancestors" in message.text or "X-Frame-Options" in message.text

    # A page of another origin (about:blank here) that frames the console.
    with page.expect_console_message(refusal) as refused:
        page.set_content(f'<iframe id="f" src="{demo_server.url}"></iframe>')
    assert demo_server.url.removeprefix("http://").rstrip("/") in refused.value.text
    assert page.frame_locator("#f").locator(".pool-name").count() == 0
