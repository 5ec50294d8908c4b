"""The contract's metric families, and that they agree with stats() and the records."""

from __future__ import annotations

import math
import subprocess
import threading
from concurrent.futures import CancelledError

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

import poolwatch
from poolwatch import PoolManager, TaskCancelledError, current_task
from poolwatch.metrics import render_metrics
from support import require_tool, wait_until

FAMILIES = {
    "poolwatch_tasks_submitted": ("counter", {"pool"}),
    "poolwatch_tasks_rejected": ("counter", {"pool", "reason"}),
    "poolwatch_tasks_completed": ("counter", {"pool", "task", "outcome"}),
    "poolwatch_tasks_timeouts": ("counter", {"pool", "kind"}),
    "poolwatch_task_queue_wait_seconds": ("histogram", {"pool"}),
    "poolwatch_task_run_seconds": ("histogram", {"pool", "task"}),
    "poolwatch_pool_max_workers": ("gauge", {"pool"}),
    "poolwatch_pool_workers": ("gauge", {"pool"}),
    "poolwatch_pool_active_workers": ("gauge", {"pool"}),
    "poolwatch_pool_queued_tasks": ("gauge", {"pool"}),
    "poolwatch_pool_queue_capacity": ("gauge", {"pool"}),
    "poolwatch_pool_oldest_queued_seconds": ("gauge", {"pool"}),
    "poolwatch_pool_overdue_tasks": ("gauge", {"pool"}),
    "poolwatch_pool_state": ("gauge", {"pool", "state"}),
    "poolwatch_build_info": ("gauge", {"version"}),
}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, labels)
    assert v is not None, f"no sample {name}{labels}"
    return v


def ok(x: int) -> int:
    return x


def fail() -> None:
    raise ValueError("boom")


def test_every_contract_family_has_its_type_and_labels(
    manager: PoolManager, registry: CollectorRegistry
) -> None:
    pool = manager.create_pool("p", max_workers=2)
    pool.submit(ok, 1).result()
    text = generate_latest(registry).decode()
    found = {f.name: f for f in text_string_to_metric_families(text)}
    for name, (kind, labels) in FAMILIES.items():
        assert name in found, f"{name} missing"
        family = found[name]
        assert family.type == kind
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                assert set(sample.labels) == labels | {"le"}
            else:
                assert set(sample.labels) == labels, sample
    assert value(registry, "poolwatch_build_info", version=poolwatch.__version__) == 1


def test_counts_agree_with_stats_and_records(
    manager: PoolManager, registry: CollectorRegistry
) -> None:
    pool = manager.create_pool("agree", max_workers=3, queue_capacity=5, history_size=1000)
    gate = threading.Event()
    blockers = [pool.submit(gate.wait) for _ in range(3)]
    queued = [pool.submit(ok, i) for i in range(5)]
    with pytest.raises(poolwatch.RejectedError):
        pool.submit(ok, 99)
    assert queued[0].cancel()
    gate.set()
    for f in blockers + queued[1:]:
        f.result()
    failures = [pool.submit(fail) for _ in range(4)]
    for f in failures:
        with pytest.raises(ValueError, match="boom"):
            f.result()
    wait_until(lambda: pool.stats().active == 0, message="pool idle")

    stats = pool.stats()
    page = manager.tasks(pool="agree", limit=1000)
    by_state: dict[str, int] = {}
    for t in page.items:
        by_state[t.state.value] = by_state.get(t.state.value, 0) + 1
    assert stats.submitted == value(registry, "poolwatch_tasks_submitted_total", pool="agree")
    assert stats.submitted == 3 + 5 + 4 == page.total
    assert (
        stats.rejected
        == 1
        == value(registry, "poolwatch_tasks_rejected_total", pool="agree", reason="queue_full")
    )
    completed = {
        outcome: sum(
            value(registry, "poolwatch_tasks_completed_total", pool="agree", task=t,
                  outcome=outcome)
            for t in ("threading.Event.wait", f"{__name__}.ok", f"{__name__}.fail")
        )
        for outcome in ("succeeded", "failed", "cancelled")
    }  # fmt: skip
    assert completed == {
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "cancelled": stats.cancelled,
    }
    assert by_state == {"succeeded": 7, "failed": 4, "cancelled": 1}
    assert (stats.succeeded, stats.failed, stats.cancelled) == (7, 4, 1)
    runs = sum(
        value(registry, "poolwatch_task_run_seconds_count", pool="agree", task=t)
        for t in ("threading.Event.wait", f"{__name__}.ok", f"{__name__}.fail")
    )
    assert runs == 11  # every task that ran; the cancelled one never did
    assert value(registry, "poolwatch_task_queue_wait_seconds_count", pool="agree") == 11
    assert value(registry, "poolwatch_pool_queue_capacity", pool="agree") == 5
    assert value(registry, "poolwatch_pool_state", pool="agree", state="running") == 1
    assert value(registry, "poolwatch_pool_state", pool="agree", state="paused") == 0


def test_gauges_follow_live_state(manager: PoolManager, registry: CollectorRegistry) -> None:
    pool = manager.create_pool("live", max_workers=2)
    assert math.isinf(value(registry, "poolwatch_pool_queue_capacity", pool="live"))
    gate = threading.Event()
    started = threading.Semaphore(0)

    def hold() -> None:
        started.release()
        gate.wait()

    running = [pool.submit(hold) for _ in range(2)]
    for _ in range(2):
        assert started.acquire(timeout=5)
    pool.pause()
    waiting = [pool.submit(ok, i) for i in range(3)]
    assert value(registry, "poolwatch_pool_active_workers", pool="live") == 2
    assert value(registry, "poolwatch_pool_workers", pool="live") == 2
    assert value(registry, "poolwatch_pool_queued_tasks", pool="live") == 3
    assert value(registry, "poolwatch_pool_oldest_queued_seconds", pool="live") > 0
    assert value(registry, "poolwatch_pool_state", pool="live", state="paused") == 1
    pool.configure(max_workers=4)
    assert value(registry, "poolwatch_pool_max_workers", pool="live") == 4
    pool.resume()
    gate.set()
    for f in running + waiting:
        f.result()
    wait_until(lambda: pool.stats().queued == 0)
    assert value(registry, "poolwatch_pool_queued_tasks", pool="live") == 0
    assert value(registry, "poolwatch_pool_oldest_queued_seconds", pool="live") == 0


def test_task_label_is_capped_per_pool(registry: CollectorRegistry) -> None:
    with PoolManager(registry=registry, task_label_limit=2) as manager:
        pool = manager.create_pool("cap", max_workers=1)
        fns = []
        for i in range(4):
            ns: dict[str, object] = {"__name__": "gen"}
            exec(f"def task_{i}():\n    return {i}", ns)  # four distinct task names
            fns.append(ns[f"task_{i}"])
        for fn in fns:
            pool.submit(fn).result()  # type: ignore[arg-type]
        text = generate_latest(registry).decode()
        tasks = {
            s.labels["task"]
            for f in text_string_to_metric_families(text)
            if f.name == "poolwatch_tasks_completed"
            for s in f.samples
        }
        assert tasks == {"gen.task_0", "gen.task_1", "_other"}
        assert value(
            registry, "poolwatch_tasks_completed_total", pool="cap", task="_other",
            outcome="succeeded",
        ) == 2  # fmt: skip
        # the records keep the real names
        names = {t.name for t in manager.tasks(pool="cap").items}
        assert names == {f"gen.task_{i}" for i in range(4)}


def test_removed_pool_vanishes_and_returns_clean(
    manager: PoolManager, registry: CollectorRegistry
) -> None:
    pool = manager.create_pool("gone", max_workers=1)
    pool.submit(ok, 1).result()
    assert value(registry, "poolwatch_tasks_submitted_total", pool="gone") == 1
    manager.remove_pool("gone")
    assert 'pool="gone"' not in generate_latest(registry).decode()
    manager.create_pool("gone", max_workers=1)
    assert value(registry, "poolwatch_tasks_submitted_total", pool="gone") == 0


def test_timeouts_are_counted(manager: PoolManager, registry: CollectorRegistry) -> None:
    pool = manager.create_pool("slow", max_workers=1, run_timeout=0.05)
    stop = threading.Event()
    seen_request = threading.Event()
    started = threading.Event()
    release = threading.Event()

    def overstay() -> None:
        task = current_task()
        assert task is not None
        started.set()
        while not task.cancel_requested:
            stop.wait(0.005)
        seen_request.set()
        release.wait(5)  # hold the only worker until the queued task has timed out
        task.raise_if_cancel_requested()

    running = pool.submit(overstay)
    assert started.wait(5)
    pool.configure(queue_timeout=0.05)  # only now: the running task must not time out queued
    starved = pool.submit(ok, 1)  # waits behind it past queue_timeout
    assert seen_request.wait(5)
    wait_until(starved.done, message="queue timeout cancels the starved task")
    release.set()
    with pytest.raises(CancelledError):
        running.result(5)
    assert starved.cancelled()
    assert value(registry, "poolwatch_tasks_timeouts_total", pool="slow", kind="run") == 1
    assert value(registry, "poolwatch_tasks_timeouts_total", pool="slow", kind="queue") == 1
    assert value(registry, "poolwatch_pool_overdue_tasks", pool="slow") == 0
    assert pool.stats().cancelled == 2
    assert issubclass(TaskCancelledError, Exception)


def test_exemplars_carry_trace_ids_in_openmetrics(
    traced: PoolManager, registry: CollectorRegistry
) -> None:
    pool = traced.create_pool("ex", max_workers=1)
    fut = pool.submit(ok, 1)
    fut.result()
    info = wait_until(lambda: fut.info() if fut.info().trace_id else None)
    text = generate_openmetrics(registry).decode()
    lines = [
        ln for ln in text.splitlines() if "poolwatch_task_run_seconds_bucket" in ln and "#" in ln
    ]
    assert lines, "no exemplar on the run-time histogram"
    assert f'trace_id="{info.trace_id}"' in lines[0]
    assert text.rstrip().endswith("# EOF")


def test_promtool_finds_nothing_to_report(
    manager: PoolManager, registry: CollectorRegistry, tmp_path: object
) -> None:
    promtool = require_tool("promtool", hint="Debian package prometheus")
    pool = manager.create_pool("lint", max_workers=2, queue_capacity=1)
    for f in [pool.submit(ok, i) for i in range(3)]:
        f.result()
    pool.submit(fail).exception()
    served, _ = render_metrics(manager, "text/plain")
    for text in (generate_latest(registry), served):
        proc = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False
        )
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout.decode() == ""
        assert proc.stderr.decode() == ""


def test_two_managers_cannot_share_a_registry(registry: CollectorRegistry) -> None:
    with PoolManager(registry=registry), pytest.raises(ValueError, match="already exports"):
        PoolManager(registry=registry)
    # after shutdown the registry is free again
    with PoolManager(registry=registry) as again:
        again.create_pool("ok", max_workers=1)


@pytest.mark.parametrize("accept", ["text/plain", "application/openmetrics-text; version=1.0.0"])
def test_fast_rendering_matches_the_registry(
    traced: PoolManager, registry: CollectorRegistry, accept: str
) -> None:
    from prometheus_client import Counter
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )

    other = Counter("app_requests", "An application's own metric.", registry=registry)
    other.inc(3)
    for name in ("a", "b.c", "d-e"):
        pool = traced.create_pool(name, max_workers=2, queue_capacity=3)
        for f in [pool.submit(ok, i) for i in range(4)]:
            f.result()
        pool.submit(fail).exception()
    traced.get_pool("a").pause()
    body, content_type = render_metrics(traced, accept)
    text = body.decode()
    if accept.startswith("application/openmetrics-text"):
        assert content_type.startswith("application/openmetrics-text")
        expected = generate_openmetrics(registry).decode()
        parse = parse_openmetrics
        assert text.endswith("# EOF\n")
        assert text.count("# EOF") == 1
        assert "# {trace_id=" in text
    else:
        assert content_type.startswith("text/plain")
        expected = generate_latest(registry).decode()
        parse = text_string_to_metric_families

    def samples(t: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in parse(t)
            for s in fam.samples
            if not s.name.endswith("_created")
        }

    got, want = samples(text), samples(expected)
    assert got.keys() == want.keys()
    drift = ("poolwatch_pool_oldest_queued_seconds",)  # a clock reading: taken twice
    for key, v in want.items():
        if key[0] not in drift:
            assert got[key] == pytest.approx(v), key
    assert got[("app_requests_total", ())] == 3
