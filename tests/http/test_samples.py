"""The sample history and latency quantiles, and the routes that serve them."""

from __future__ import annotations

import threading

import pytest

from poolwatch import PoolManager
from poolwatch.accounting import BUCKETS
from poolwatch.samples import SERIES, SampleHistory, quantile, served_history
from support import wait_until


class Clock:
    """A hand-driven monotonic clock for the history."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def history(manager: PoolManager, clock: Clock) -> SampleHistory:
    return SampleHistory(manager, clock=clock, wall=lambda: 1_000.0)


def _tick(history: SampleHistory, clock: Clock, at: float) -> None:
    clock.now = at
    history.sample()


def test_gauges_as_sampled_and_counters_as_increments(
    manager: PoolManager, history: SampleHistory, clock: Clock, release: threading.Event
) -> None:
    pool = manager.create_pool("s", max_workers=2, queue_capacity=3)
    _tick(history, clock, 0)
    held = [pool.submit(release.wait, 10) for _ in range(5)]
    wait_until(lambda: pool.stats().active == 2, message="two running")
    _tick(history, clock, 1)
    release.set()
    for f in held:
        f.result(timeout=10)
    _tick(history, clock, 2)
    _tick(history, clock, 5)  # a late sampler: seconds 3 and 4 are filled in
    [samples] = history.samples()
    assert samples.pool == "s"
    assert samples.start == 1_000.0
    assert list(samples.values) == list(SERIES)
    v = samples.values
    assert v["queued"] == [0, 3, 0, 0, 0, 0]
    assert v["active"] == [0, 2, 0, 0, 0, 0]
    assert v["completed"] == [0, 0, 5, 0, 0, 0]
    assert sum(v["failed"]) == 0
    # Tick 2 and later: no new rejections, and the filled seconds count nothing.
    assert v["rejected"][2:] == [0, 0, 0, 0]


def test_keeps_fifteen_minutes_in_bounded_memory(
    manager: PoolManager, history: SampleHistory, clock: Clock
) -> None:
    for i in range(3):
        manager.create_pool(f"m{i}", max_workers=1)
    for t in range(905):
        _tick(history, clock, t)
    size_at_905 = history.memory_bytes()
    for t in range(905, 3000):
        _tick(history, clock, t)
    [first, *_] = history.samples()
    assert len(first.values["queued"]) == 900
    assert first.start == 1_000.0 + 2100
    assert history.memory_bytes() < size_at_905 * 1.2  # bounded, not growing
    assert len(history.samples(seconds=60)[0].values["workers"]) == 60
    assert [s.pool for s in history.samples(pool="m1")] == ["m1"]


def test_a_removed_pool_leaves_and_a_new_one_of_that_name_starts_afresh(
    manager: PoolManager, history: SampleHistory, clock: Clock
) -> None:
    manager.create_pool("r", max_workers=1).submit(int).result(timeout=10)
    _tick(history, clock, 0)
    manager.remove_pool("r")
    _tick(history, clock, 1)
    assert history.samples() == []
    manager.create_pool("r", max_workers=1)
    _tick(history, clock, 2)
    [again] = history.samples()
    assert again.start == 1_002.0
    assert again.values["completed"] == [0]


def test_quantile_interpolates_like_prometheus() -> None:
    counts = [0] * (len(BUCKETS) + 1)
    assert quantile(0.5, counts) is None
    i = BUCKETS.index(0.1)
    counts[i] = 10  # ten observations in (0.05, 0.1]
    assert quantile(0.5, counts) == pytest.approx(0.075)
    assert quantile(0.99, counts) == pytest.approx(0.0995)
    counts[-1] = 90  # ninety past the last bound
    assert quantile(0.99, counts) == BUCKETS[-1]


def test_latency_covers_the_window_only(
    manager: PoolManager, history: SampleHistory, clock: Clock
) -> None:
    pool = manager.create_pool("lat", max_workers=2)
    _tick(history, clock, 0)
    for _ in range(4):
        pool.submit(int).result(timeout=10)
    for t in range(1, 400):
        _tick(history, clock, t)
    for _ in range(6):
        pool.submit(str).result(timeout=10)
    covered, [recent] = history.latency(manager.pools(), 60)
    assert 50 <= covered <= 60  # to within one ten-second checkpoint
    assert recent.queue_wait.count == 6
    assert recent.run_time.count == 6
    assert dict(recent.tasks)["builtins.str"].count == 6
    assert "builtins.int" not in dict(recent.tasks) or dict(recent.tasks)["builtins.int"].count == 0
    covered, [everything] = history.latency(manager.pools(), 900)
    assert covered == pytest.approx(399, abs=1)
    assert everything.run_time.count == 10
    assert everything.run_time.p50 is not None
    assert everything.run_time.p50 <= BUCKETS[0]


def test_endpoints_serve_samples_while_the_app_runs(make_client, manager: PoolManager) -> None:
    manager.create_pool("e", max_workers=1)
    client = make_client()
    body = wait_until(
        lambda: (b := client.get("/api/samples").json())["data"] and b,
        message="a first sample",
    )
    assert body["interval"] == 1.0
    assert body["sampling"] is True
    assert body["series"] == list(SERIES)
    [pool] = body["data"]
    assert pool["pool"] == "e"
    assert pool["start"].endswith("Z")
    assert pool["values"]["workers"][0] == 0
    lat = client.get("/api/latency", params={"window": 60}).json()
    assert lat["window"] == 60
    assert [p["pool"] for p in lat["data"]] == ["e"]
    assert set(lat["data"][0]["run_time"]) == {"count", "p50", "p95", "p99"}
    assert served_history(manager).running


def test_sampler_stops_with_the_app(make_client, manager: PoolManager) -> None:
    from starlette.testclient import TestClient

    from poolwatch.http import create_app

    with TestClient(create_app(manager, bind_host="127.0.0.1")) as one:
        assert one.get("/api/samples").json()["sampling"] is True
        with TestClient(create_app(manager, bind_host="127.0.0.1")):
            samplers = [t for t in threading.enumerate() if t.name == "poolwatch-sampler"]
            assert len(samplers) == 1  # one thread per manager, however many apps
        assert served_history(manager).running
    assert not served_history(manager).running
    assert not any(t.name == "poolwatch-sampler" for t in threading.enumerate())


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/samples?seconds=0", 422, "invalid_field"),
        ("/api/samples?seconds=901", 422, "invalid_field"),
        ("/api/samples?seconds=abc", 422, "invalid_field"),
        ("/api/samples?pool=nope", 404, "pool_not_found"),
        ("/api/samples?bogus=1", 422, "invalid_field"),
        ("/api/latency?window=5", 422, "invalid_field"),
        ("/api/latency?window=300&window=60", 422, "invalid_field"),
        ("/api/latency?pool=bad%20name", 422, "invalid_field"),
        ("/api/latency?pool=nope", 404, "pool_not_found"),
    ],
)
def test_bad_queries_get_clear_errors(
    client, assert_error, path: str, status: int, code: str
) -> None:
    assert_error(client.get(path), status, code)


def test_console_settings(make_client, assert_error) -> None:
    plain = make_client().get("/api/console").json()
    assert plain["trace_url"] is None
    assert plain["grafana_url"] is None
    linked = make_client(
        trace_url="http://jaeger:16686/trace/{trace_id}", grafana_url="http://grafana:3000"
    ).get("/api/console")
    assert linked.json()["trace_url"] == "http://jaeger:16686/trace/{trace_id}"
    assert linked.json()["grafana_dashboard_path"].startswith("/d/poolwatch-pool")
    with pytest.raises(ValueError, match=r"trace_url must contain \{trace_id\}"):
        make_client(trace_url="http://jaeger:16686/trace/")
    with pytest.raises(ValueError, match="grafana_url must be an http"):
        make_client(grafana_url="javascript:alert(1)")
