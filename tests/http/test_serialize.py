"""JSON renderings of engine records."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from poolwatch.history import ErrorInfo
from poolwatch.http.serialize import (
    dumps,
    iso_time,
    pagination,
    pool_json,
    task_json,
    task_json_text,
)
from poolwatch.records import PoolState, PoolStats, TaskInfo, TaskState


@given(st.floats(min_value=0, max_value=4e9))
def test_iso_time_matches_datetime(epoch: float) -> None:
    expected = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")
    assert iso_time(epoch) == expected.replace("+00:00", "Z")


def test_iso_time_none() -> None:
    assert iso_time(None) is None


def test_task_json_has_every_field() -> None:
    info = TaskInfo(
        id="t1", pool="p", name="n", state=TaskState.FAILED, submitted_at=0.5,
        started_at=1.0, finished_at=None, queue_wait=0.5, run_time=None,
        error_type="ValueError", error_message="x", traceback="tb", cancel_requested=False,
        worker="w-1", trace_id=None,
    )  # fmt: skip
    out = task_json(info)
    assert list(out) == [f.name for f in dataclasses.fields(TaskInfo)]
    assert out["state"] == "failed"
    assert out["submitted_at"] == "1970-01-01T00:00:00.500000Z"
    assert out["finished_at"] is None


_times = st.floats(min_value=0, max_value=4e9)
_maybe_time = st.none() | _times
_durations = st.none() | st.floats(min_value=0, max_value=1e6) | st.sampled_from([1e-7, 0.0])
_names = st.text(min_size=1, max_size=12)  # any text: quotes, controls, non-ASCII
_errors = st.none() | st.builds(ErrorInfo, _names, st.text(max_size=40), st.text(max_size=80))


@given(
    task_id=st.from_regex(r"[0-9a-f]{1,12}-[0-9a-f]{1,16}", fullmatch=True),
    pool=_names,
    name=_names,
    state=st.sampled_from(TaskState),
    times=st.tuples(_times, _maybe_time, _maybe_time, _durations, _durations),
    error=_errors,
    cancel_requested=st.booleans(),
    worker=st.none() | _names,
    trace_id=st.sampled_from([0, 1, 2**128 - 1]) | st.integers(0, 2**128 - 1),
)
def test_task_json_text_is_the_json_of_task_json(
    task_id: str,
    pool: str,
    name: str,
    state: TaskState,
    times: tuple[float, float | None, float | None, float | None, float | None],
    error: ErrorInfo | None,
    cancel_requested: bool,
    worker: str | None,
    trace_id: int,
) -> None:
    submitted, started, finished, queue_wait, run_time = times
    info = TaskInfo(
        id=task_id, pool=pool, name=name, state=state, submitted_at=submitted,
        started_at=started, finished_at=finished, queue_wait=queue_wait, run_time=run_time,
        error_type=None if error is None else error.type,
        error_message=None if error is None else error.message,
        traceback=None if error is None else error.traceback,
        cancel_requested=cancel_requested, worker=worker,
        trace_id=f"{trace_id:032x}" if trace_id else None,
    )  # fmt: skip
    assert task_json_text(info) == dumps(task_json(info))


def test_pagination_edges() -> None:
    assert pagination(1, 20, 0) == {
        "page": 1, "per_page": 20, "total": 0, "total_pages": 0,
        "has_prev": False, "has_next": False,
    }  # fmt: skip
    assert pagination(2, 20, 41)["total_pages"] == 3
    assert pagination(3, 20, 41)["has_next"] is False


def test_pool_json_has_every_field() -> None:
    stats = PoolStats(
        name="p", state=PoolState.PAUSED, max_workers=2, workers=1, active=1, idle=0,
        queued=3, queue_capacity=None, rejection_policy="abort", queue_timeout=None,
        run_timeout=1.5, submitted=9, succeeded=4, failed=1, cancelled=0, rejected=2,
        overdue=0, oldest_queued_age=0.25, queue_timeouts=1, run_timeouts=2,
    )  # fmt: skip
    out = pool_json(stats, "process")
    names = [f.name for f in dataclasses.fields(PoolStats)]
    assert list(out) == ["name", "kind", *names[1:]]
    assert out["kind"] == "process"
    assert out["state"] == "paused"
    assert out["queue_capacity"] is None
    assert out["oldest_queued_age"] == 0.25
