"""The console's pure logic (rates from counter deltas, page buttons, formatting), run in
the browser by importing the console's own modules."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from browser.consoletools import Server

pytestmark = pytest.mark.browser


def run_module(page: Page, module: str, body: str) -> Any:
    """Import ``console/<module>`` in the page as ``m`` and return what ``body`` returns."""
    return page.evaluate(
        f"async () => {{ const m = await import(new URL('console/{module}', location.href)); "
        f"{body} }}"
    )


@pytest.fixture
def console(page: Page, read_only_server: Server) -> Page:
    page.goto(read_only_server.url)
    return page


def test_rates_come_from_counter_deltas(console: Page) -> None:
    rates = run_module(
        console,
        "chart.js",
        """
        const h = new m.PoolHistory();
        const none = h.rates();
        h.add(0, { queued: 5, succeeded: 100, failed: 10 });
        h.add(1000, { queued: 3, succeeded: 130, failed: 20 });
        h.add(2000, { queued: 1, succeeded: 160, failed: 20 });
        const two = h.rates();
        const completions = h.completionSeries();
        // Counters going down mean the pool was created again: history restarts.
        h.add(3000, { queued: 0, succeeded: 1, failed: 0 });
        return { none, two, completions, after: h.rates(), queue: h.queueSeries() };
        """,
    )
    assert rates["none"] == {"throughput": None, "failureRate": None}
    # 70 completions (60 succeeded + 10 failed) in 2 s, 10 of them failed.
    assert rates["two"]["throughput"] == pytest.approx(35.0)
    assert rates["two"]["failureRate"] == pytest.approx(10 / 70)
    assert rates["completions"] == [[1000, 40.0], [2000, 30.0]]
    assert rates["after"] == {"throughput": None, "failureRate": None}
    assert rates["queue"] == [[3000, 0]]


def test_rates_average_over_the_last_ten_seconds(console: Page) -> None:
    rate = run_module(
        console,
        "chart.js",
        """
        const h = new m.PoolHistory();
        h.add(0, { queued: 0, succeeded: 0, failed: 0 });  // older than the window
        for (let s = 1; s <= 20; s += 1) {
          h.add(s * 1000, { queued: 0, succeeded: s * 100, failed: 0 });
        }
        return h.rates().throughput;
        """,
    )
    assert rate == pytest.approx(100.0)


def test_page_buttons(console: Page) -> None:
    items = run_module(
        console,
        "tasks.js",
        "return [[1, 1], [1, 3], [5, 10], [2, 10], [10, 10], [1, 0]]"
        ".map(([p, t]) => m.pageItems(p, t));",
    )
    assert items == [
        [1],
        [1, 2, 3],
        [1, "gap", 4, 5, 6, "gap", 10],
        [1, 2, 3, "gap", 10],
        [1, "gap", 9, 10],
        [1],
    ]


def test_formatting(console: Page) -> None:
    out = run_module(
        console,
        "format.js",
        """
        return {
          d: [null, 0.0004, 0.25, 2.5, 42, 125, 7300].map(m.duration),
          r: [null, 0, 0.25, 12.4, 1234].map(m.rate),
          p: [null, 0, 0.004, 0.05, 0.5].map(m.percent),
          id: [m.shortId("a-3"), m.shortId("0123456789abcdef")],
        };
        """,
    )
    assert out["d"] == ["—", "<1 ms", "250 ms", "2.50 s", "42.0 s", "2 m 05 s", "2 h 01 m"]
    assert out["r"] == ["—", "0/s", "0.3/s", "12/s", "1,234/s"]
    assert out["p"] == ["—", "0%", "<1%", "5.0%", "50%"]
    assert out["id"] == ["a-3", "01234567…"]
