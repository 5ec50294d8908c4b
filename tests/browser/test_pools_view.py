"""The pools view against a live ``poolwatch demo``: live figures and every pool control."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from browser.consoletools import Server, remove_pool

pytestmark = pytest.mark.browser

DEMO_POOLS = ("bounded", "cpu", "flaky", "io", "slow")


def card(page: Page, pool: str) -> Locator:
    return page.get_by_role("article", name=pool, exact=True)


def field(card: Locator, name: str) -> Locator:
    return card.locator(f'[data-field="{name}"]')


@pytest.fixture
def scratch_pool(demo_server: Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A quiet pool of its own on the demo server (2 workers, queue of 10), removed after."""
    name = f"web-{request.node.name.removeprefix('test_')[:40].replace('_', '-')}"
    demo_server.ok("POST", "api/pools", json={"name": name, "max_workers": 2, "queue_capacity": 10})
    yield name
    remove_pool(demo_server, name)


def test_demo_pools_appear_and_update_in_place(page: Page, demo_server: Server) -> None:
    polls: list[float] = []
    page.on("request", lambda r: polls.append(time.monotonic()) if "api/pools" in r.url else None)
    page.goto(demo_server.url)

    for name in DEMO_POOLS:
        expect(card(page, name)).to_be_visible()
    expect(page.locator("#connection")).to_contain_text("Live")
    io = card(page, "io")
    expect(field(io, "state")).to_have_text("Running")
    expect(field(io, "workers")).to_have_text(re.compile(r"^\d+ / \d+ / 16$"))
    expect(field(io, "queue")).to_have_text(re.compile(r"^[\d,]+ / ∞$"))
    expect(field(card(page, "bounded"), "queue")).to_have_text(re.compile(r"^\d+ / 8$"))
    # Rates need two polls; the demo keeps io busy, so completions show up at once.
    expect(field(io, "throughput")).to_have_text(re.compile(r"^[\d.,]+/s$"))
    expect(field(io, "failure_rate")).to_have_text(re.compile(r"^(\d+(\.\d)?%|<1%|—)$"))
    expect(io.locator(".spark-done .spark-line")).to_have_attribute("d", re.compile(r"^M.+L"))

    # The same card node is updated, not rebuilt, as the counters move.
    node = io.element_handle()
    succeeded = field(io, "succeeded")
    expect(succeeded).not_to_have_text(succeeded.inner_text())
    assert node.evaluate("(n) => n.isConnected && n === document.getElementById('pool-io')")

    # At least one poll a second, measured over the polls seen so far (four at least).
    while len(polls) < 4:
        with page.expect_request(lambda r: "api/pools" in r.url):
            pass
    average = (polls[-1] - polls[0]) / (len(polls) - 1)
    assert average < 1.3, f"one poll every {average:.2f} s"


def test_polls_do_not_clobber_an_edited_input(page: Page, demo_server: Server) -> None:
    page.goto(demo_server.url)
    io = card(page, "io")
    box = io.get_by_label("Max workers")
    expect(box).to_have_value("16")
    succeeded = field(io, "succeeded")

    box.fill("7")
    expect(succeeded).not_to_have_text(succeeded.inner_text())  # a poll went by
    expect(box).to_have_value("7")
    page.get_by_role("heading", name="Pools").click()  # move focus away; the edit stays
    expect(succeeded).not_to_have_text(succeeded.inner_text())
    expect(box).to_have_value("7")
    box.press("Escape")  # revert to the live value
    expect(box).to_have_value("16")
    assert demo_server.ok("GET", "api/pools/io")["max_workers"] == 16


def test_resize_and_queue_capacity(page: Page, demo_server: Server, scratch_pool: str) -> None:
    page.goto(demo_server.url)
    pool = card(page, scratch_pool)
    expect(field(pool, "workers")).to_have_text(re.compile(r" / 2$"))

    pool.get_by_label("Max workers").fill("5")
    pool.get_by_role("button", name="Resize").click()
    expect(page.locator("#status-text")).to_have_text(f"Pool {scratch_pool}: max workers set to 5.")
    expect(field(pool, "workers")).to_have_text(re.compile(r" / 5$"))
    assert demo_server.ok("GET", f"api/pools/{scratch_pool}")["max_workers"] == 5

    capacity = pool.get_by_label("Queue capacity")
    capacity.fill("25")
    pool.get_by_role("button", name="Set", exact=True).click()
    expect(field(pool, "queue")).to_have_text("0 / 25")
    assert demo_server.ok("GET", f"api/pools/{scratch_pool}")["queue_capacity"] == 25

    capacity.fill("")
    pool.get_by_role("button", name="Set", exact=True).click()
    expect(field(pool, "queue")).to_have_text("0 / ∞")
    assert demo_server.ok("GET", f"api/pools/{scratch_pool}")["queue_capacity"] is None


def test_refused_change_shows_the_api_message(
    page: Page, demo_server: Server, scratch_pool: str
) -> None:
    refused = demo_server.call("PATCH", f"api/pools/{scratch_pool}", json={"max_workers": 0})
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]

    page.goto(demo_server.url)
    pool = card(page, scratch_pool)
    pool.get_by_label("Max workers").fill("0")
    pool.get_by_role("button", name="Resize").click()
    expect(pool.get_by_role("alert")).to_have_text(message)
    # A value the browser can check itself is explained without a round trip.
    pool.get_by_label("Max workers").fill("2.5")
    pool.get_by_role("button", name="Resize").click()
    expect(pool.get_by_role("alert")).to_contain_text("whole number")
    assert demo_server.ok("GET", f"api/pools/{scratch_pool}")["max_workers"] == 2


def test_pause_and_resume(page: Page, demo_server: Server, scratch_pool: str) -> None:
    page.goto(demo_server.url)
    pool = card(page, scratch_pool)
    expect(field(pool, "state")).to_have_text("Running")

    pool.get_by_role("button", name="Pause").click()
    expect(field(pool, "state")).to_have_text("Paused")
    assert demo_server.ok("GET", f"api/pools/{scratch_pool}")["state"] == "paused"

    pool.get_by_role("button", name="Resume").click()
    expect(field(pool, "state")).to_have_text("Running")
    expect(pool.get_by_role("button", name="Pause")).to_be_visible()
    assert demo_server.ok("GET", f"api/pools/{scratch_pool}")["state"] == "running"


def test_shut_down_asks_first(page: Page, demo_server: Server, scratch_pool: str) -> None:
    page.goto(demo_server.url)
    pool = card(page, scratch_pool)
    dialog = page.get_by_role("dialog")

    pool.get_by_role("button", name="Shut down…").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Shut down pool {scratch_pool}?")
    dialog.get_by_role("button", name="Keep running").click()
    expect(dialog).to_be_hidden()
    expect(pool).to_be_visible()
    assert demo_server.call("GET", f"api/pools/{scratch_pool}").status_code == 200

    pool.get_by_role("button", name="Shut down…").click()
    dialog.get_by_label("Cancel queued tasks").check()
    dialog.get_by_role("button", name="Shut down", exact=True).click()
    expect(pool).to_have_count(0)
    expect(page.locator("#status-text")).to_contain_text(f"Pool {scratch_pool} shut down")
    assert demo_server.call("GET", f"api/pools/{scratch_pool}").status_code == 404
    # Later polls do not bring it back, and the demo pools are untouched.
    expect(card(page, "io")).to_be_visible()
    expect(pool).to_have_count(0)


def test_a_process_pool_card_says_its_kind(page: Page, demo_server: Server) -> None:
    name = "web-kind-process"
    demo_server.ok("POST", "api/pools", json={"name": name, "max_workers": 1, "kind": "process"})
    try:
        page.goto(demo_server.url)
        badge = field(card(page, name), "kind")
        expect(badge).to_be_visible()
        expect(badge).to_have_text("process")
        expect(badge).to_have_attribute("title", "Pool kind: process")
        expect(field(card(page, "io"), "kind")).to_be_hidden()
    finally:
        remove_pool(demo_server, name)
