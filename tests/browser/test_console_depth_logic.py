"""The console's new pure logic, run in the browser by importing its own modules:
seeding charts from the server's samples, search, sort, time filter, overdue, links."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from browser.consoletools import Server
from browser.test_console_logic import run_module

pytestmark = pytest.mark.browser


@pytest.fixture
def console(page: Page, read_only_server: Server) -> Page:
    page.goto(read_only_server.url)
    return page


def test_server_samples_fill_the_history_before_the_first_poll(console: Page) -> None:
    out = run_module(
        console,
        "chart.js",
        """
        const h = new m.PoolHistory();
        h.add(10_000, { queued: 2, succeeded: 100, failed: 10, cancelled: 0 });
        // Samples at 5..9 s: 2 completions a second, one of them failed at 8 s.
        h.seed(5_000, 1000, { queued: [1, 2, 3, 4, 5], completed: [2, 2, 2, 2, 2],
                              failed: [0, 0, 0, 1, 0] });
        h.seed(0, 1000, { queued: [9], completed: [9], failed: [9] });  // only once
        h.add(11_000, { queued: 0, succeeded: 102, failed: 10, cancelled: 0 });
        return { queue: h.queueSeries(), done: h.completionSeries(), rates: h.rates() };
        """,
    )
    assert out["queue"] == [
        [5000, 1], [6000, 2], [7000, 3], [8000, 4], [9000, 5], [10000, 2], [11000, 0]
    ]  # fmt: skip
    # The second between the last sample and the first poll goes at the last sample's pace.
    assert out["done"] == [[6000, 2], [7000, 2], [8000, 2], [9000, 2], [10000, 2], [11000, 2]]
    # From 5 s to 11 s: 12 completions in 6 s, one of them failed.
    assert out["rates"]["throughput"] == pytest.approx(2.0)
    assert out["rates"]["failureRate"] == pytest.approx(1 / 12)


def test_search_time_filter_sort_and_overdue(console: Page) -> None:
    out = run_module(
        console,
        "taskquery.js",
        """
        const now = Date.parse("2026-01-01T12:00:00Z");
        const ago = (s) => new Date(now - s * 1000).toISOString();
        const tasks = [
          { id: "1-a", name: "etl.load", pool: "p", state: "failed", submitted_at: ago(30),
            queue_wait: 0.5, run_time: 2, error_type: "OSError", error_message: "Disk full" },
          { id: "1-b", name: "mail.send", pool: "q", state: "running", submitted_at: ago(400),
            started_at: ago(90), queue_wait: 0.1, run_time: null },
          { id: "1-c", name: "etl.extract", pool: "p", state: "queued", submitted_at: ago(5),
            queue_wait: null, run_time: null },
        ];
        const ids = (xs) => xs.map((t) => t.id);
        const limits = { taskTimeouts: new Map([["mail.send", 60]]),
                         poolTimeouts: new Map([["p", 1], ["q", 600]]) };
        return {
          search: [ids(tasks.filter((t) => m.matchesSearch(t, "disk"))),
                   ids(tasks.filter((t) => m.matchesSearch(t, "ETL"))),
                   ids(tasks.filter((t) => m.matchesSearch(t, "  "))),
                   ids(tasks.filter((t) => m.matchesSearch(t, "oserror")))],
          time: ids(tasks.filter((t) => m.withinTime(t, "60", now))),
          sorts: ["name:asc", "run:desc", "wait:asc", "submitted:desc", "bogus", "run:up"].map(
            (s) => (m.parseSort(s) ? ids(m.sortTasks(tasks, m.parseSort(s), now)) : null)),
          overdue: tasks.map((t) => m.isOverdue(t, limits, now)),
          carried: m.isOverdue({ state: "succeeded", overdue_stack: { frames: [] } }, limits, now),
          onTime: m.isOverdue({ ...tasks[1], name: "other" }, limits, now),
        };
        """,
    )
    assert out["search"] == [["1-a"], ["1-a", "1-c"], ["1-a", "1-b", "1-c"], ["1-a"]]
    assert out["time"] == ["1-a", "1-c"]
    assert out["sorts"] == [
        ["1-c", "1-a", "1-b"],  # etl.extract, etl.load, mail.send
        ["1-b", "1-a", "1-c"],  # running 90 s, 2 s, not started
        ["1-b", "1-a", "1-c"],  # waited 0.1 s, 0.5 s, and queued for 5 s so far
        ["1-c", "1-a", "1-b"],
        None,
        None,
    ]
    # mail.send runs 90 s against its own 60 s timeout (its pool allows 600 s).
    assert out["overdue"] == [False, True, False]
    assert out["carried"] is True
    assert out["onTime"] is False


def test_stack_paths_and_grafana_links(console: Page) -> None:
    paths = run_module(
        console,
        "stack.js",
        'return ["/usr/lib/python3.11/threading.py", "app.py", "", null].map(m.shortPath);',
    )
    assert paths == ["…/python3.11/threading.py", "app.py", "", ""]
    links = run_module(
        console,
        "pools.js",
        """
        const path = "/d/poolwatch-pool/poolwatch-pool";
        return [
          m.grafanaLink(null, "io"),
          m.grafanaLink({ grafana_url: "http://g:3000/", grafana_dashboard_path: path }, "io"),
          m.grafanaLink({ grafana_url: "https://g/d/x?var-pool={pool}" }, "a b"),
        ];
        """,
    )
    assert links == [
        None,
        "http://g:3000/d/poolwatch-pool/poolwatch-pool?var-pool=io",
        "https://g/d/x?var-pool=a%20b",
    ]
