"""Layout and accessibility basics at laptop and phone width, with screenshots."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from browser.consoletools import LAPTOP, PHONE, UI_TIMEOUT_MS, Server, screenshot

pytestmark = pytest.mark.browser

UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input, select, button')]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.textContent.trim())
  .map((el) => el.outerHTML)"""

HORIZONTAL_OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def wait_for_chart_history(page: Page, pool: str, points: int) -> None:
    """Wait until a pool's completion chart has ``points`` samples (one per poll)."""
    line = page.locator(f"#pool-{pool} .spark-done .spark-line")
    expect(line).to_have_attribute("d", re.compile(r"^M" + r"[^L]*L" * (points - 1)))


def test_laptop_width(page: Page, demo_server: Server) -> None:
    page.goto(demo_server.url)
    expect(page.locator("article.pool-card")).not_to_have_count(0)
    wait_for_chart_history(page, "io", 3)
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    assert page.evaluate(HORIZONTAL_OVERFLOW) <= 0
    screenshot(page, "laptop-pools")

    page.get_by_role("link", name="Tasks").click()
    expect(page.locator("#task-rows tr")).to_have_count(20)
    page.locator("#task-rows tr").first.locator("td[data-label='Task'] button").click()
    expect(page.locator("#task-detail")).to_be_visible()
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    assert page.evaluate(HORIZONTAL_OVERFLOW) <= 0
    screenshot(page, "laptop-tasks")


def test_phone_width(browser: Browser, demo_server: Server) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(demo_server.url)
        expect(page.locator("article.pool-card")).not_to_have_count(0)
        wait_for_chart_history(page, "io", 2)
        assert page.evaluate(HORIZONTAL_OVERFLOW) <= 0
        # Stats, chart and controls of a card stay inside the card at this width.
        box = page.locator("#pool-io").bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE["width"]
        screenshot(page, "phone-pools")

        page.get_by_role("link", name="Tasks").click()
        expect(page.locator("#task-rows tr")).to_have_count(20)
        assert page.evaluate(HORIZONTAL_OVERFLOW) <= 0
        screenshot(page, "phone-tasks")
    finally:
        context.close()


def test_keyboard_reaches_views_and_focus_is_visible(page: Page, demo_server: Server) -> None:
    page.set_viewport_size(LAPTOP)
    page.goto(demo_server.url)
    expect(page.locator("article.pool-card")).not_to_have_count(0)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    tasks_tab = page.get_by_role("link", name="Tasks")
    tasks_tab.focus()
    outline = tasks_tab.evaluate("(el) => getComputedStyle(el).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    expect(tasks_tab).to_have_attribute("aria-current", "page")
