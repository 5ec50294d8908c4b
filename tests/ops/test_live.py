"""The operations kit live: ``poolwatch demo`` under a real Prometheus and Alertmanager.

One stack serves the whole module (see ``livestack.py``). The tests drive pools of
the demo into each kind of trouble over its HTTP API and wait for the matching
alerts of ``deploy/rules/poolwatch-alerts.yml`` to fire and to reach Alertmanager
(``deploy/alertmanager.yml``), then check that every dashboard query and recording
rule returns data.

The test copy of the rules differs from the shipped one only in ``for`` (1 s instead
of minutes) and in the thresholds listed in ``livestack.THRESHOLD_OVERRIDES`` (the
queue-wait alert fires at 1 s instead of 60 s). Overdue tasks come from
``demo.hang`` with ``linger``: asked to stop by its run timeout, it takes a minute more.
"""

from __future__ import annotations

import functools
import json
import math
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import support
from ops import opsfiles
from ops.livestack import (
    JOB,
    Stack,
    live_stack,
    poolwatch_command,
    prometheus_config,
    wait_for,
)

pytestmark = pytest.mark.prometheus

#: Grafana variables, as "All" (or the only job) would expand them.
VARIABLES = {
    "$__rate_interval": "1m",
    "$job": JOB,
    "$instance": ".*",
    "$pool": ".*",
    "$task": ".*",
}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+), (?P<label>\w+)\)$")


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    if "$" in expr:
        raise AssertionError(f"unsubstituted variable in {expr}")
    return expr


@dataclass
class Trouble:
    """Pools driven into trouble, one per alert, fed a little more on every step."""

    stack: Stack
    backlog: int = 0
    steps: int = 0

    def start(self) -> None:
        s = self.stack
        s.create_pool(name="ops-saturated", max_workers=2)
        s.create_pool(name="ops-stalled", max_workers=1)
        s.create_pool(name="ops-backlog", max_workers=1)
        s.pause("ops-backlog")
        # A small bounded queue, 7 of 8 full: the backlog alert is relative to capacity.
        s.create_pool(name="ops-nearly-full", max_workers=1, queue_capacity=8)
        s.pause("ops-nearly-full")
        for _ in range(7):
            self.accepted(s.submit("ops-nearly-full", "demo.sleep", seconds=0.01))
        s.create_pool(name="ops-failing", max_workers=4)
        s.create_pool(name="ops-rejecting", max_workers=1, queue_capacity=1)
        s.create_pool(name="ops-timeouts", max_workers=2, run_timeout=0.1)
        s.create_pool(name="ops-overdue", max_workers=1, run_timeout=0.1)
        # Long tasks that hold their workers for the whole test.
        for pool in ("ops-saturated", "ops-saturated", "ops-stalled", "ops-rejecting"):
            self.accepted(s.submit(pool, "demo.hang", seconds=120))
        # Past its run timeout within 0.1 s, then slow to stop: overdue for a minute.
        self.accepted(s.submit("ops-overdue", "demo.hang", seconds=120, linger=60))
        for _ in range(2):  # queued behind the stalled pool's only worker
            self.accepted(s.submit("ops-stalled", "demo.sleep", seconds=0.01))

    @staticmethod
    def accepted(body: Any) -> None:
        if not (isinstance(body, dict) and "id" in body):
            raise AssertionError(f"the demo refused a task: {body}")

    def feeding(self, check: Callable[[], bool]) -> Callable[[], bool]:
        """``check``, preceded by a step: keeps the rates up while a test waits on data."""

        def step_then_check() -> bool:
            self.step()
            return check()

        return step_then_check

    def step(self) -> None:
        """More of the same: failures, rejections, run timeouts and a growing backlog."""
        s = self.stack
        self.steps += 1
        for _ in range(4):
            self.accepted(s.submit("ops-failing", "demo.flaky", fail_ratio=1.0, seconds=0))
        for _ in range(3):  # its worker hangs and its queue of one is full: refused
            s.submit("ops-rejecting", "demo.sleep", seconds=0.01)
        self.accepted(s.submit("ops-timeouts", "demo.hang", seconds=5))
        # "Growing" needs Prometheus to see the queue rise: start once it holds the empty one.
        if self.backlog or s.query('poolwatch_pool_queued_tasks{pool="ops-backlog"} == 0'):
            for _ in range(15 if self.backlog < 200 else 0):
                self.accepted(s.submit("ops-backlog", "demo.sleep", seconds=0.01))
                self.backlog += 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with live_stack(tmp_path_factory.mktemp("ops-live")) as live:
        yield live


@pytest.fixture(scope="module")
def trouble(stack: Stack) -> Iterator[Trouble]:
    induced = Trouble(stack)
    induced.start()
    yield induced
    stack.cancel_running()


def expected_alerts(stack: Stack) -> set[tuple[str, str]]:
    return {
        ("PoolwatchTargetDown", stack.dead_target),
        ("PoolwatchPoolSaturated", "ops-saturated"),
        ("PoolwatchPoolStalled", "ops-stalled"),
        ("PoolwatchQueueBacklogGrowing", "ops-backlog"),
        ("PoolwatchQueueBacklogGrowing", "ops-nearly-full"),
        ("PoolwatchQueueWaitTooLong", "ops-backlog"),
        ("PoolwatchHighFailureRatio", "ops-failing"),
        ("PoolwatchTasksRejected", "ops-rejecting"),
        ("PoolwatchTaskTimeouts", "ops-timeouts"),
        ("PoolwatchTasksOverdue", "ops-overdue"),
    }


def test_induced_trouble_fires_the_matching_alerts(stack: Stack, trouble: Trouble) -> None:
    expected = expected_alerts(stack)
    firing: set[tuple[str, str]] = set()

    def all_firing() -> bool:
        nonlocal firing
        trouble.step()
        firing = stack.firing()
        return expected <= firing

    wait_for(
        all_firing,
        timeout=60,
        describe=lambda: (
            f"alerts still missing: {sorted(expected - firing)}; firing: "
            f"{sorted(firing)}; {trouble.steps} steps\n{stack.diagnostics()}"
        ),
    )
    # ... and only where the trouble is.
    assert ("PoolwatchTargetDown", stack.demo_target) not in firing
    assert ("PoolwatchPoolStalled", "ops-backlog") not in firing, "a paused pool is not stalled"
    assert ("PoolwatchPoolStalled", "ops-saturated") not in firing, "nothing queued there"
    assert ("PoolwatchHighFailureRatio", "io") not in firing
    labels = {
        a["labels"]["alertname"]: a for a in stack.api("alerts")["alerts"] if a["state"] == "firing"
    }
    stalled = labels["PoolwatchPoolStalled"]
    assert stalled["labels"]["severity"] == "critical"
    assert (
        stalled["annotations"]["runbook_url"] == f"{opsfiles.runbook_base()}#poolwatchpoolstalled"
    )
    # The job is not named "poolwatch" here: the alert knows it by its metrics.
    down = labels["PoolwatchTargetDown"]
    assert down["labels"]["job"] == JOB


def has_data(stack: Stack, expr: str) -> bool:
    """True once the query returns a sample that is a number (not NaN)."""
    return any(not math.isnan(float(r["value"][1])) for r in stack.query(expr))


def dashboard_queries() -> list[tuple[str, str]]:
    found = []
    for name, board in opsfiles.dashboards().items():
        for panel in opsfiles.panels(board):
            for target in panel["targets"]:
                found.append((f"{name}: {panel['title']} [{target['refId']}]", target["expr"]))
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                match = LABEL_VALUES.match(variable["query"])
                assert match, f"{name}: unexpected variable query {variable['query']}"
                expr = f"count by ({match['label']}) ({match['selector']})"
                found.append((f"{name}: variable ${variable['name']}", expr))
    return found


def test_every_dashboard_query_returns_data(stack: Stack, trouble: Trouble) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 50, "the dashboards lost their queries"
    for where, expr in queries:
        query = substitute(expr)
        support.wait_until(
            trouble.feeding(functools.partial(has_data, stack, query)),
            timeout=20,
            interval=0.25,
            message=f"data for {where}: {query}",
        )


def test_every_recording_rule_returns_data(stack: Stack, trouble: Trouble) -> None:
    for rule in opsfiles.recording_rules():
        support.wait_until(
            trouble.feeding(functools.partial(has_data, stack, rule["record"])),
            timeout=20,
            interval=0.25,
            message=f"data for recording rule {rule['record']}",
        )


def test_run_time_exemplars_carry_trace_ids(stack: Stack) -> None:
    """Spans reach the OTLP endpoint, and Prometheus keeps their trace ids as exemplars."""
    support.wait_until(
        lambda: any(path == "/v1/traces" for path in stack.trace_exports),
        timeout=20,
        message="the demo to export spans to OTEL_EXPORTER_OTLP_ENDPOINT",
    )

    def trace_ids() -> set[str]:
        data = stack.api(
            "query_exemplars",
            query=f'poolwatch_task_run_seconds_bucket{{job="{JOB}"}}',
            start="0",
            end="9999999999",
        )
        return {e["labels"].get("trace_id", "") for series in data for e in series["exemplars"]}

    ids = support.wait_until(trace_ids, timeout=20, message="run-time exemplars in Prometheus")
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids


def test_alertmanager_routes_by_severity_and_inhibits(stack: Stack, trouble: Trouble) -> None:
    """deploy/alertmanager.yml, live: critical pages, the rest opens tickets, and a
    stalled pool's saturation alert is silenced by the stall."""
    wanted = [
        ("PoolwatchPoolStalled", "ops-stalled"),
        ("PoolwatchPoolSaturated", "ops-stalled"),
        ("PoolwatchPoolSaturated", "ops-saturated"),
        ("PoolwatchTargetDown", stack.dead_target),
    ]
    held: dict[tuple[str, str], dict[str, Any]] = {}

    def received() -> bool:
        nonlocal held
        trouble.step()
        held = stack.notified()
        return all(key in held for key in wanted) and bool(held[wanted[1]]["status"]["inhibitedBy"])

    wait_for(
        received,
        timeout=30,
        describe=lambda: f"Alertmanager holds {sorted(held)}\n{stack.diagnostics()}",
    )
    stalled, inhibited, saturated, down = (held[key] for key in wanted)
    assert [r["name"] for r in stalled["receivers"]] == ["pager"]
    assert [r["name"] for r in down["receivers"]] == ["pager"]
    assert [r["name"] for r in saturated["receivers"]] == ["tickets"]
    assert stalled["status"]["state"] == "active"
    assert saturated["status"]["state"] == "active", "only the stalled pool is inhibited"
    assert inhibited["status"]["state"] == "suppressed"
    assert inhibited["status"]["inhibitedBy"] == [stalled["fingerprint"]]


def test_generated_prometheus_config_is_valid(tmp_path: Path) -> None:
    """The config the live stack runs is the shipped one, made fast: promtool accepts it."""
    promtool = support.require_tool("promtool", hint="apt-get install prometheus")
    live = Stack(
        demo_url="http://127.0.0.1:1",
        demo_target="127.0.0.1:1",
        dead_target="127.0.0.1:2",
        prometheus_url="http://127.0.0.1:3",
        alertmanager_url="http://127.0.0.1:4",
        trace_exports=[],
    )
    config = prometheus_config(tmp_path, live)
    done = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 2 rule files found" in done.stdout
    alerts = json.loads((tmp_path / "poolwatch-alerts.yml").read_text(encoding="utf-8"))
    rules = [rule for group in alerts["groups"] for rule in group["rules"]]
    assert {rule["for"] for rule in rules} == {"1s"}
    wait = next(rule for rule in rules if rule["alert"] == "PoolwatchQueueWaitTooLong")
    assert wait["expr"].strip() == "poolwatch_pool_oldest_queued_seconds > 1"


def test_pool_changes_show_as_annotations(stack: Stack, trouble: Trouble) -> None:
    """Each change annotation's query finds the change that was made over the API."""
    stack.create_pool(name="ops-changes", max_workers=1, queue_capacity=4)
    # Prometheus must see the settings before the change, or there is no change to see.
    support.wait_until(
        functools.partial(has_data, stack, 'poolwatch_pool_max_workers{pool="ops-changes"} == 1'),
        timeout=20,
        message="a scrape of the new pool",
    )
    body = {"max_workers": 3, "queue_capacity": 9}
    changed = json.loads(
        subprocess.run(
            [
                *poolwatch_command(),
                "ctl",
                "--url",
                stack.demo_url,
                "--json",
                "pools",
                "set",
                "ops-changes",
                *(f"{k}={v}" for k, v in body.items()),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    )
    assert (changed["max_workers"], changed["queue_capacity"]) == (3, 9)
    stack.pause("ops-changes")
    board = opsfiles.dashboards()["poolwatch-pool.json"]
    for annotation in board["annotations"]["list"]:
        query = substitute(annotation["expr"])
        support.wait_until(
            functools.partial(has_data, stack, query),
            timeout=20,
            interval=0.25,
            message=f"the {annotation['name']} annotation to find the change: {query}",
        )
