"""Server-side history, latency, timeouts, overdue tasks, live stacks and links, in Chromium.

Most tests run against their own server (``DEPTH_APP``): a manager with an SDK tracer
provider (so tasks have trace ids), trace and Grafana links configured, and tasks whose
stacks and timing the tests control. The history and latency tests use the demo.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

import support
from browser.consoletools import PHONE, UI_TIMEOUT_MS, Server, launch_server, screenshot

pytestmark = pytest.mark.browser

TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}"
GRAFANA_URL = "http://grafana.example:3000"

# The tasks live in a module file of their own, so that their stacks show source lines.
DEPTH_TASKS = """
import threading

from poolwatch import current_task, task


def _step(deadline):
    threading.Event().wait(0.05)
    return deadline


@task("depth.hold")
def hold(seconds: float = 60.0) -> str:
    ctx = current_task()
    waited = 0.0
    while waited < seconds and not (ctx is not None and ctx.cancel_requested):
        _step(seconds)
        waited += 0.05
    return "held"


@task("depth.linger")
def linger(seconds: float = 60.0) -> str:
    # Ignores its cancel request for a while: overdue, as a stuck call would be.
    waited = 0.0
    while waited < seconds:
        _step(seconds)
        waited += 0.05
    return "late"


@task("depth.fail")
def fail(message: str) -> None:
    raise ValueError(message)
"""

DEPTH_APP = f"""
import os
import sys

import uvicorn
from opentelemetry.sdk.trace import TracerProvider

import depthtasks
from poolwatch import PoolManager, create_app

port = int(sys.argv[1])
os.environ.pop("OTEL_SDK_DISABLED", None)  # the launcher turns the SDK off; spans stay local
manager = PoolManager(tracer_provider=TracerProvider())
manager.create_pool("depth", max_workers=4)
manager.create_pool("strict", max_workers=2, run_timeout=0.3)
app = create_app(
    manager, bind_host="127.0.0.1", trace_url="{TRACE_URL}", grafana_url="{GRAFANA_URL}"
)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


@pytest.fixture(scope="module")
def depth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("depth")
    (tmp / "depthtasks.py").write_text(DEPTH_TASKS)
    server = launch_server(tmp, [], script=DEPTH_APP)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def submit(server: Server, pool: str, name: str, **kwargs: Any) -> str:
    body = server.ok("POST", f"api/pools/{pool}/tasks", json={"task": name, "kwargs": kwargs})
    return str(body["id"])


def cancel_all(server: Server, pool: str) -> None:
    for task in server.ok("GET", "api/tasks", params={"pool": pool, "state": "running"})["data"]:
        server.call("POST", f"api/tasks/{task['id']}/cancel")


def state_of(server: Server, task_id: str) -> str:
    return str(server.ok("GET", f"api/tasks/{task_id}")["state"])


def card(page: Page, pool: str) -> Locator:
    return page.get_by_role("article", name=pool, exact=True)


def field(root: Locator, name: str) -> Locator:
    return root.locator(f'[data-field="{name}"]')


def points(page: Page, pool: str, chart: str) -> int:
    path = page.locator(f"#pool-{pool} .spark-{chart} .spark-line").get_attribute("d") or ""
    return path.count("L") + path.count("M")


def test_charts_are_full_when_the_page_opens(page: Page, demo_server: Server) -> None:
    # The server has sampled io for a while: the page shows that at its first poll.
    support.wait_until(
        lambda: (
            len(
                demo_server.ok("GET", "api/samples", params={"pool": "io"})["data"][0]["values"][
                    "queued"
                ]
            )
            >= 12
        ),
        timeout=30,
        interval=0.2,
        message="twelve server samples of io",
    )
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("api/pools") else None)
    page.goto(demo_server.url)
    expect(card(page, "io")).to_be_visible()
    expect(page.locator("#pool-io .spark-queue .spark-line")).to_have_attribute(
        "d", re.compile("L")
    )
    seen = points(page, "io", "queue")
    assert seen >= 10, f"{seen} points after {len(polls)} polls"
    assert seen > len(polls) + 5, "the points come from the server, not from the page's polls"
    caption = card(page, "io").locator(".chart-caption")
    expect(caption).to_have_text(re.compile(r"^Last (\d+ seconds|\d+ minutes)$"))


def test_latency_timeouts_and_failure_window_on_the_cards(page: Page, demo_server: Server) -> None:
    page.goto(demo_server.url)
    io = card(page, "io")
    expect(field(io, "latency_caption")).to_have_text("Latency · last 5 min")
    run = io.locator('[data-latency="run_time"] td')
    expect(run).to_have_count(3)
    # The demo's io tasks sleep 10 to 200 ms: p50 lands in that range.
    expect(run.nth(0)).to_have_text(re.compile(r"^\d+ ms$"))
    expect(io.locator('[data-latency="queue_wait"] td').nth(2)).not_to_have_text("")
    io.locator(".latency-tasks summary").click()
    expect(field(io, "latency_tasks").locator("tr", has_text="demo.sleep")).to_be_visible()
    page.get_by_label("Latency over").select_option("60")
    expect(field(io, "latency_caption")).to_have_text("Latency · last 1 min")

    expect(io.locator("dt", has_text="Failure rate")).to_contain_text("1 min")
    expect(io.locator("dt", has_text="Throughput")).to_contain_text("10 s")
    slow = card(page, "slow")
    expect(field(slow, "queue_timeouts")).to_have_text(re.compile(r"^[\d,]+$"))
    # slow's tasks often overrun its one-second run timeout.
    before = demo_server.ok("GET", "api/pools/slow")["run_timeouts"]
    expect(field(slow, "run_timeouts")).to_have_text(re.compile(r"^[\d,]+$"))
    support.wait_until(
        lambda: int(field(slow, "run_timeouts").inner_text().replace(",", "")) >= before,
        message="the card catches up with the API's count",
    )


def test_overdue_tasks_are_highlighted(page: Page, depth_server: Server) -> None:
    task_id = submit(depth_server, "strict", "depth.linger", seconds=6)
    try:
        page.goto(depth_server.url)
        strict = card(page, "strict")
        expect(strict).to_have_class(re.compile(r"\bhas-overdue\b"))
        expect(field(strict, "overdue_badge")).to_have_text("1 overdue")
        expect(field(strict, "overdue")).to_have_attribute("data-level", "bad")
        expect(card(page, "depth")).not_to_have_class(re.compile(r"\bhas-overdue\b"))
        screenshot(page, "depth-laptop-overdue-pool")

        page.goto(f"{depth_server.url}#tasks?pool=strict")
        row = page.locator(f'#task-rows tr[data-task-id="{task_id}"]')
        expect(row).to_have_class(re.compile(r"\boverdue\b"))
        expect(row.locator(".flag-overdue")).to_be_visible()
    finally:
        cancel_all(depth_server, "strict")


def test_live_stack_of_a_running_task(page: Page, depth_server: Server) -> None:
    task_id = submit(depth_server, "depth", "depth.hold", seconds=60)
    try:
        support.wait_until(lambda: state_of(depth_server, task_id) == "running", message="runs")
        page.goto(f"{depth_server.url}#tasks?task={task_id}")
        stack = page.locator("#detail-stack")
        expect(stack).to_be_visible()
        frames = page.locator("#stack-frames li.frame")
        own = page.locator('#stack-frames li[data-library="false"] .frame-fn')
        expect(own).to_have_text(["hold", "_step"])
        expect(page.locator('#stack-frames li[data-library="true"]').first).to_be_visible()
        expect(frames.last.locator(".frame-fn")).to_have_text(re.compile(r"wait$"))
        expect(frames.first.locator(".frame-src")).to_have_text("_step(seconds)")
        # Refreshed while open: the time it was taken moves on.
        taken = page.locator("#stack-time")
        expect(taken).to_contain_text("thread depth_")
        first = taken.inner_text()
        expect(taken).not_to_have_text(first)
        screenshot(page, "depth-laptop-stack", full_page=True)

        page.locator("#detail-cancel").click()
        expect(page.locator('#task-detail [data-field="state"] .badge')).to_have_text("Succeeded")
        expect(stack).to_be_hidden()
    finally:
        cancel_all(depth_server, "depth")


def test_trace_and_grafana_links(page: Page, depth_server: Server) -> None:
    task_id = submit(depth_server, "depth", "depth.hold", seconds=0)
    support.wait_until(lambda: state_of(depth_server, task_id) == "succeeded", message="done")
    trace_id = depth_server.ok("GET", f"api/tasks/{task_id}")["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    page.goto(f"{depth_server.url}#tasks?task={task_id}")
    link = page.locator('#task-detail [data-field="trace_id"] a')
    expect(link).to_have_text(trace_id)
    expect(link).to_have_attribute("href", TRACE_URL.replace("{trace_id}", trace_id))
    expect(link).to_have_attribute("target", "_blank")

    page.goto(depth_server.url)
    grafana = field(card(page, "depth"), "grafana")
    expect(grafana).to_have_attribute(
        "href", f"{GRAFANA_URL}/d/poolwatch-pool/poolwatch-pool?var-pool=depth"
    )


def test_links_are_absent_without_settings(page: Page, read_only_server: Server) -> None:
    page.goto(read_only_server.url)
    reports = card(page, "reports")
    expect(field(reports, "state")).to_have_text("Running")
    expect(field(reports, "grafana")).to_be_hidden()


def test_search_sort_and_time_filter(page: Page, depth_server: Server) -> None:
    ids = [
        submit(depth_server, "depth", "depth.fail", message="disk full on /var"),
        submit(depth_server, "depth", "depth.fail", message="timeout talking to db"),
        submit(depth_server, "depth", "depth.hold", seconds=0.2),
        submit(depth_server, "depth", "depth.hold", seconds=0.6),
    ]
    for task_id in ids:
        support.wait_until(
            lambda t=task_id: state_of(depth_server, t) in {"failed", "succeeded"},
            message="finished",
        )
    page.goto(f"{depth_server.url}#tasks?pool=depth")
    rows = page.locator("#task-rows tr")
    expect(rows).not_to_have_count(0)

    search = page.get_by_label("Search")
    search.fill("DISK")  # case-insensitive, in the error message
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-task-id", ids[0])
    assert "q=DISK" in page.evaluate("location.hash")
    search.fill("depth.hold")  # in the name
    expect(rows.first.locator("td[data-label='Name']")).to_have_text("depth.hold")
    expect(rows.filter(has_not_text="depth.hold")).to_have_count(0)

    # Sort by run time, longest first, from the column header; then reversed.
    page.locator("th button.sort[data-sort='run']").click()
    expect(page.locator("th[aria-sort='descending']")).to_have_text(re.compile("Run"))
    expect(page.get_by_label("Sort by")).to_have_value("run:desc")

    def run_times() -> list[float]:
        return [
            float(v)
            for v in page.locator("#task-rows tr").evaluate_all(
                "(rows) => rows.map((r) => {"
                "  const t = r.querySelector(\"td[data-label='Run']\").textContent;"
                "  const n = parseFloat(t); return t.includes(' ms') ? n / 1000 : n; })"
            )
        ]

    support.wait_until(lambda: len(run_times()) >= 2, message="two rows")
    times = run_times()
    assert times == sorted(times, reverse=True)
    page.locator("th button.sort[data-sort='run']").click()
    expect(page.get_by_label("Sort by")).to_have_value("run:asc")
    support.wait_until(lambda: run_times() == sorted(run_times()), message="ascending")

    page.get_by_label("Submitted").select_option("60")
    expect(rows).not_to_have_count(0)
    page.reload()
    expect(page.get_by_label("Search")).to_have_value("depth.hold")
    expect(page.get_by_label("Submitted")).to_have_value("60")
    expect(page.get_by_label("Sort by")).to_have_value("run:asc")
    page.get_by_role("button", name="Clear filters").click()
    expect(page.get_by_label("Search")).to_have_value("")
    expect(page.locator("th[aria-sort]")).to_have_count(0)


def test_phone_width_stack_and_cards(browser: Browser, depth_server: Server) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    task_id = submit(depth_server, "depth", "depth.hold", seconds=60)
    late = submit(depth_server, "strict", "depth.linger", seconds=6)
    try:
        page = context.new_page()
        page.goto(depth_server.url)
        expect(card(page, "strict")).to_have_class(re.compile(r"\bhas-overdue\b"))
        overflow = "() => document.documentElement.scrollWidth - window.innerWidth"
        assert page.evaluate(overflow) <= 0
        screenshot(page, "depth-phone-pools", full_page=True)
        page.goto(f"{depth_server.url}#tasks?task={task_id}")
        expect(page.locator('#stack-frames li[data-library="false"]')).to_have_count(2)
        page.locator("#detail-stack").scroll_into_view_if_needed()
        assert page.evaluate(overflow) <= 0
        screenshot(page, "depth-phone-stack")
        page.goto(f"{depth_server.url}#tasks?pool=strict")
        expect(page.locator(f'#task-rows tr[data-task-id="{late}"] .flag-overdue')).to_be_visible()
        screenshot(page, "depth-phone-overdue-tasks")
    finally:
        context.close()
        cancel_all(depth_server, "depth")
        cancel_all(depth_server, "strict")
