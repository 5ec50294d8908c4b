"""The tasks view against a live ``poolwatch demo``: paging, filters, details, cancelling."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from browser.consoletools import Server, remove_pool

pytestmark = pytest.mark.browser


def rows(page: Page) -> Locator:
    return page.locator("#task-rows tr")


def row(page: Page, task_id: str) -> Locator:
    return page.locator(f'#task-rows tr[data-task-id="{task_id}"]')


def detail(page: Page, name: str) -> Locator:
    return page.locator(f'#task-detail [data-field="{name}"]')


@pytest.fixture
def held_pool(demo_server: Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A paused pool with one worker, so what is submitted to it stays queued."""
    name = f"held-{request.node.name.removeprefix('test_')[:40].replace('_', '-')}"
    demo_server.ok("POST", "api/pools", json={"name": name, "max_workers": 1})
    demo_server.ok("PATCH", f"api/pools/{name}", json={"paused": True})
    yield name
    remove_pool(demo_server, name)


def submit(server: Server, pool: str, task: str, **kwargs: object) -> str:
    body = server.ok("POST", f"api/pools/{pool}/tasks", json={"task": task, "kwargs": kwargs})
    return str(body["id"])


def test_pages_through_tasks(page: Page, demo_server: Server) -> None:
    page.goto(f"{demo_server.url}#tasks")
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    page.get_by_label("Pool", exact=True).select_option("io")
    summary = page.locator("#tasks-summary")
    # io runs dozens of tasks a second: more than one page within moments.
    expect(summary).to_have_text(re.compile(r"page 1 of ([2-9]|\d{2,})"))
    expect(rows(page)).to_have_count(20)
    pools = page.locator("#task-rows td[data-label='Pool']")
    expect(pools.filter(has_not_text="io")).to_have_count(0)
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()

    page.get_by_role("button", name="Next").click()
    expect(summary).to_contain_text("page 2 of")
    expect(page.get_by_role("button", name="Page 2", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    expect(page.get_by_role("button", name="Previous")).to_be_enabled()
    expect(rows(page)).to_have_count(20)
    assert "page=2" in page.evaluate("location.hash")

    page.get_by_role("button", name="Page 1", exact=True).click()
    expect(summary).to_contain_text("page 1 of")
    expect(page.get_by_role("button", name="Page 1", exact=True)).to_have_attribute(
        "aria-current", "page"
    )

    # The address keeps the view: a reload comes back to the same filter and page.
    page.get_by_role("button", name="Next").click()
    expect(summary).to_contain_text("page 2 of")
    page.reload()
    expect(page.get_by_label("Pool", exact=True)).to_have_value("io")
    expect(summary).to_contain_text("page 2 of")


def test_filters_by_state_and_name(page: Page, demo_server: Server) -> None:
    page.goto(f"{demo_server.url}#tasks")
    expect(rows(page)).not_to_have_count(0)

    page.get_by_label("State").select_option("succeeded")
    expect(rows(page)).not_to_have_count(0)
    expect(page.locator("#task-rows .badge").filter(has_not_text="Succeeded")).to_have_count(0)

    page.get_by_label("Task name").fill("demo.flaky")
    page.get_by_label("State").select_option("failed")
    expect(rows(page)).not_to_have_count(0)
    expect(page.locator("#task-rows .badge").filter(has_not_text="Failed")).to_have_count(0)
    names = page.locator("#task-rows td[data-label='Name']")
    expect(names.filter(has_not_text="demo.flaky")).to_have_count(0)

    page.get_by_role("button", name="Clear filters").click()
    expect(page.get_by_label("State")).to_have_value("")
    expect(page.get_by_label("Task name")).to_have_value("")
    expect(names.filter(has_not_text="demo.flaky")).not_to_have_count(0)


def test_failed_task_detail_shows_error_and_traceback(page: Page, demo_server: Server) -> None:
    page.goto(f"{demo_server.url}#tasks?pool=flaky&state=failed")
    first = rows(page).first
    expect(first).to_be_visible()
    task_id = first.get_attribute("data-task-id")
    assert task_id
    task = demo_server.ok("GET", f"api/tasks/{task_id}")

    first.get_by_role("button", name=f"Task {task_id}", exact=True).click()
    panel = page.get_by_role("complementary", name=re.compile("Task"))
    expect(panel).to_be_visible()
    expect(detail(page, "id")).to_have_text(task_id)
    expect(detail(page, "state")).to_have_text("Failed")
    expect(detail(page, "pool")).to_have_text("flaky")
    expect(detail(page, "worker")).to_have_text(task["worker"])
    expect(detail(page, "run_time")).to_have_text(re.compile(r"\d"))
    expect(detail(page, "error")).to_have_text(f"{task['error_type']}: {task['error_message']}")
    expect(detail(page, "traceback")).to_contain_text("Traceback (most recent call last)")
    # A long traceback scrolls in its own box; the panel keeps its width.
    fits = """() => {
      const panel = document.getElementById('task-detail');
      return panel.scrollWidth <= panel.clientWidth;
    }"""
    assert page.evaluate(fits)
    expect(panel.get_by_role("button", name="Cancel task")).to_be_hidden()


def test_cancel_queued_and_running_tasks(page: Page, demo_server: Server, held_pool: str) -> None:
    first = submit(demo_server, held_pool, "demo.sleep", seconds=0.01)
    second = submit(demo_server, held_pool, "demo.sleep", seconds=0.01)
    page.goto(f"{demo_server.url}#tasks?pool={held_pool}")
    expect(rows(page)).to_have_count(2)
    expect(rows(page).first).to_have_attribute("data-task-id", second)  # newest first
    expect(row(page, first).locator(".badge")).to_have_text("Queued")

    row(page, first).get_by_role("button", name=f"Cancel task {first}").click()
    expect(page.locator("#status-text")).to_contain_text("cancelled before it started")
    expect(row(page, first).locator(".badge")).to_have_text("Cancelled")
    expect(row(page, first).get_by_role("button", name=f"Cancel task {first}")).to_be_hidden()
    assert demo_server.ok("GET", f"api/tasks/{first}")["state"] == "cancelled"

    # Rows are updated in place as their task moves on, not rebuilt.
    node = row(page, second).element_handle()
    demo_server.ok("PATCH", f"api/pools/{held_pool}", json={"paused": False})
    expect(row(page, second).locator(".badge")).to_have_text("Succeeded")
    badge = "(tr) => (tr.isConnected ? tr.querySelector('.badge').textContent : 'detached')"
    assert node.evaluate(badge) == "Succeeded"

    # A running task can only be asked to stop; the demo tasks honour the request.
    long = submit(demo_server, held_pool, "demo.hang", seconds=60)
    row(page, long).get_by_role("button", name=f"Task {long}", exact=True).click()
    expect(detail(page, "state")).to_have_text("Running")
    page.get_by_role("button", name="Cancel task", exact=True).click()
    expect(page.locator("#status-text")).to_contain_text("cancel requested")
    expect(detail(page, "state")).to_have_text("Cancelled")
    expect(detail(page, "cancel_requested")).to_have_text("Yes")
    assert demo_server.ok("GET", f"api/tasks/{long}")["state"] == "cancelled"


def test_keyboard_opens_and_closes_a_task(page: Page, demo_server: Server, held_pool: str) -> None:
    task_id = submit(demo_server, held_pool, "demo.sleep", seconds=0.01)
    page.goto(f"{demo_server.url}#tasks?pool={held_pool}")
    opener = row(page, task_id).get_by_role("button", name=f"Task {task_id}", exact=True)
    opener.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#detail-title")).to_be_focused()
    expect(detail(page, "id")).to_have_text(task_id)
    expect(detail(page, "state")).to_have_text("Queued")
    assert f"task={task_id}" in page.evaluate("location.hash")
    page.keyboard.press("Escape")
    expect(page.locator("#task-detail")).to_be_hidden()
    expect(opener).to_be_focused()
