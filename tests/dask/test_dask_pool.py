"""``kind="dask"`` on a real LocalCluster: results, failures, cancellation, timeouts,
dying workers, accounting, metrics, spans and what shutdown closes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Executor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from poolwatch import PoolManager, TaskState
from poolwatch.dask_pool import IN_FLIGHT_PER_THREAD, DaskPool
from support import require_module, wait_until

# Skipped without the [dask] extra, but under CI=true (which installs it) a failure.
distributed = require_module("distributed", hint="pip install -e '.[dev]' installs it")
import dasktasks  # noqa: E402

from poolwatch.dask_backend import BrokenDaskPool  # noqa: E402


def _pool(manager: PoolManager, client: Any, name: str = "d", **settings: Any) -> DaskPool:
    pool = manager.create_pool(name, kind="dask", client=client, **settings)
    assert isinstance(pool, DaskPool)
    return pool


def _blocked(pool: DaskPool, gates: Any, token: str) -> tuple[Any, Any]:
    """A task running on the cluster until its gate opens: (gate, its future)."""
    gate = gates(token)
    future = pool.submit(dasktasks.gated, token)
    gate.wait_started()
    return gate, future


def _accounted(pool: DaskPool) -> None:
    s = pool.stats()
    assert s.submitted == s.succeeded + s.failed + s.cancelled + s.active + s.queued, s


# -- results and failures ---------------------------------------------------------------


def test_results_come_back_from_the_cluster(manager: PoolManager, dask_client: Any) -> None:
    pool = _pool(manager, dask_client, max_workers=3)
    assert isinstance(pool, Executor)
    assert pool.kind == "dask"
    assert pool.client is dask_client
    assert [f.result(30) for f in [pool.submit(dasktasks.square, i) for i in range(20)]] == [
        i * i for i in range(20)
    ]
    assert list(pool.map(dasktasks.square, range(5), timeout=30)) == [0, 1, 4, 9, 16]
    # The task ran in a Dask worker process, not here.
    pid, address = pool.submit(dasktasks.where).result(30)
    assert pid != os.getpid()
    assert address in dask_client.scheduler_info()["workers"]
    s = pool.stats()
    assert (s.submitted, s.succeeded, s.failed) == (26, 26, 0)


def test_keywords_reach_the_task_not_dask(manager: PoolManager, dask_client: Any) -> None:
    pool = _pool(manager, dask_client, max_workers=1)
    f = pool.submit(dasktasks.echo_keywords, key="k", priority=7, workers="nobody")
    assert f.result(30) == ("k", 7, "nobody")


def test_a_failure_keeps_its_remote_traceback(manager: PoolManager, dask_client: Any) -> None:
    pool = _pool(manager, dask_client, max_workers=1)
    f = pool.submit(dasktasks.fail_deep, "disk full on worker")
    with pytest.raises(ValueError, match="disk full on worker"):
        f.result(30)
    info = f.info()
    assert info.state is TaskState.FAILED
    assert info.error_type == "ValueError"
    assert info.error_message == "disk full on worker"
    assert info.traceback is not None
    # The frames the error had on the worker, innermost last, and none of Dask's client.
    assert info.traceback.index("in fail_deep") < info.traceback.index("in _raise_value_error")
    assert "distributed" not in info.traceback
    assert info.traceback.rstrip().endswith("ValueError: disk full on worker")
    assert pool.stats().failed == 1


# -- cancellation and timeouts --------------------------------------------------------------


def test_queued_tasks_cancel_exactly_and_never_reach_dask(
    manager: PoolManager, dask_client: Any, gates: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=1)
    gate, running = _blocked(pool, gates, token)
    queued = [pool.submit(dasktasks.mark, f"{token}-{i}") for i in range(3)]
    assert [pool.cancel(f.task_id) for f in queued] == ["cancelled"] * 3
    assert all(f.cancelled() for f in queued)
    gate.open()
    assert running.result(30) == token
    assert pool.submit(dasktasks.square, 4).result(30) == 16
    for i in range(3):  # the cancelled ones never ran anywhere
        assert not distributed.Event(f"ran-{token}-{i}", client=dask_client).is_set()
    s = pool.stats()
    assert (s.submitted, s.succeeded, s.cancelled, s.failed) == (5, 2, 3, 0)


def test_a_running_task_is_cancelled_on_dask(
    manager: PoolManager, dask_client: Any, gates: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=1)
    gate, f = _blocked(pool, gates, token)
    assert pool.cancel(f.task_id) == "requested"
    # Ends at once, though the function goes on running on its worker until the gate opens.
    with pytest.raises(CancelledError):
        f.result(30)
    info = f.info()
    assert info.state is TaskState.CANCELLED
    assert info.cancel_requested
    assert info.error_type is None  # cancelled as asked: no error to keep
    # The pool's slot is free again at once.
    assert pool.submit(dasktasks.square, 5).result(30) == 25
    gate.open()
    assert pool.cancel(f.task_id) == "finished"
    s = pool.stats()
    assert (s.cancelled, s.succeeded, s.failed) == (1, 1, 0)


def test_run_timeout_kill_cancels_on_dask(
    manager: PoolManager, dask_client: Any, gates: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=1, run_timeout=0.2, on_run_timeout="kill")
    gates(token)
    f = pool.submit(dasktasks.gated, token)
    with pytest.raises(CancelledError):
        f.result(30)
    info = f.info()
    assert info.state is TaskState.CANCELLED
    assert info.cancel_requested
    # The record says why it ended.
    assert info.error_type == "TaskInterruptedError"
    assert (
        info.error_message == f"task {f.task_id} ran past its run timeout and was cancelled on Dask"
    )
    s = pool.stats()
    assert (s.run_timeouts, s.cancelled, s.overdue) == (1, 1, 0)


def test_run_timeout_request_lets_the_task_finish(
    manager: PoolManager, dask_client: Any, gates: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=1, run_timeout=0.2)
    gate, f = _blocked(pool, gates, token)
    wait_until(lambda: pool.stats().overdue == 1, timeout=10)
    gate.open()
    assert f.result(30) == token  # still SUCCEEDED: Dask was not asked to cancel it
    s = pool.stats()
    assert (s.run_timeouts, s.succeeded, s.overdue) == (1, 1, 0)


def test_queue_timeout_cancels_a_waiting_task(
    manager: PoolManager, dask_client: Any, gates: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=1, queue_timeout=0.2)
    gate, first = _blocked(pool, gates, token)
    waiting = pool.submit(dasktasks.mark, token)
    with pytest.raises(CancelledError):
        waiting.result(30)
    gate.open()
    assert first.result(30) == token
    assert not distributed.Event(f"ran-{token}", client=dask_client).is_set()
    s = pool.stats()
    assert (s.queue_timeouts, s.cancelled, s.succeeded) == (1, 1, 1)


# -- workers that die -------------------------------------------------------------------


def test_a_worker_killed_mid_task_gets_its_task_retried(
    manager: PoolManager, dask_client: Any, tmp_path: Path
) -> None:
    pool = _pool(manager, dask_client, max_workers=1)
    marker = tmp_path / "died"
    assert pool.submit(dasktasks.die_once, str(marker)).result(60) == "survived"
    assert marker.exists()  # it did die once
    s = pool.stats()
    assert (s.submitted, s.succeeded, s.failed) == (1, 1, 0)


def test_a_task_that_keeps_killing_workers_fails_with_killed_worker(
    manager: PoolManager, dask_client: Any
) -> None:
    pool = _pool(manager, dask_client, max_workers=1)
    f = pool.submit(dasktasks.die)
    with pytest.raises(distributed.scheduler.KilledWorker):
        f.result(120)
    assert f.info().error_type == "KilledWorker"
    dask_client.wait_for_workers(2, timeout=60)
    assert pool.submit(dasktasks.square, 6).result(30) == 36  # the pool goes on
    s = pool.stats()
    assert (s.submitted, s.succeeded, s.failed) == (2, 1, 1)


# -- accounting, metrics, settings ----------------------------------------------------------


def test_accounting_is_exact_under_a_mixed_load(
    manager: PoolManager, registry: CollectorRegistry, dask_client: Any, gates: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=4)
    gate, blocker = _blocked(pool, gates, token)
    pool.pause()
    futures = [
        pool.submit(dasktasks.square, i) if i % 3 else pool.submit(dasktasks.fail_deep, str(i))
        for i in range(60)
    ]
    cancelled = [pool.cancel(f.task_id) for f in futures[::5]]
    assert cancelled == ["cancelled"] * 12
    pool.resume()
    gate.open()
    blocker.result(30)
    assert not wait(futures, timeout=60).not_done
    s = pool.stats()
    failed = sum(1 for i, f in enumerate(futures) if i % 5 and not i % 3)
    assert (s.submitted, s.cancelled, s.failed) == (61, 12, failed)
    assert s.succeeded == 61 - 12 - failed
    _accounted(pool)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"pool": "d", **labels})

    assert sample("poolwatch_pool_info", kind="dask") == 1
    assert sample("poolwatch_tasks_submitted_total") == 61
    completed = {
        outcome: sum(
            registry.get_sample_value(
                "poolwatch_tasks_completed_total", {"pool": "d", "task": t, "outcome": outcome}
            )
            or 0
            for t in ("dasktasks.square", "dasktasks.fail_deep", "dasktasks.gated")
        )
        for outcome in ("succeeded", "failed", "cancelled")
    }
    assert completed == {"succeeded": s.succeeded, "failed": s.failed, "cancelled": 12}


def test_cancels_racing_every_step_of_the_hand_over_are_counted_exactly(
    manager: PoolManager, dask_client: Any
) -> None:
    """Cancels land while tasks are queued, being handed to Dask, waiting on the
    scheduler, running and finishing: each ends once, as what its record says."""
    pool = _pool(manager, dask_client, max_workers=8)
    futures = []
    results = []
    for i in range(300):
        f = pool.submit(dasktasks.square, i)
        futures.append(f)
        if i % 2:
            results.append(pool.cancel(futures[i // 2].task_id))
    assert set(results) <= {"cancelled", "requested", "finished"}
    assert not wait(futures, timeout=60).not_done
    done = [f.info() for f in futures]
    assert all(i.state.finished for i in done)
    states = [i.state for i in done]
    assert set(states) <= {TaskState.SUCCEEDED, TaskState.CANCELLED}
    for f, info in zip(futures, done, strict=True):
        assert f.cancelled() == (info.state is TaskState.CANCELLED)
        if info.state is TaskState.SUCCEEDED:
            assert f.result() == futures.index(f) ** 2
    s = pool.stats()
    assert s.submitted == 300
    assert (s.succeeded, s.cancelled, s.failed) == (
        states.count(TaskState.SUCCEEDED),
        states.count(TaskState.CANCELLED),
        0,
    )
    assert s.cancelled >= results.count("cancelled")
    _accounted(pool)


@contextmanager
def _one_batch(pool: DaskPool, tasks: int) -> Iterator[None]:
    """The client's event loop kept busy while the block submits ``tasks`` tasks and
    until all of them are handed over: they wait to be sent together."""
    client = pool.client
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        release.wait(30)

    client.loop.add_callback(hold)
    assert held.wait(30), "the client's loop never ran the hold"
    try:
        yield
        wait_until(lambda: pool._backend.unsent() == tasks, message="not all handed over")
    finally:
        release.set()


@contextmanager
def _graph_log(client: Any, name: str) -> Iterator[Callable[[], list[list[str]]]]:
    """A scheduler plugin logging each graph's keys; yields what reads the log."""
    client.register_plugin(dasktasks.GraphLog(name))
    try:
        yield lambda: client.run_on_scheduler(dasktasks.graphs_seen, name)
    finally:
        client.unregister_scheduler_plugin(name)


def _ours(graphs: list[list[str]], pool: DaskPool) -> list[list[str]]:
    infix = pool._backend._key_infix
    return [g for g in graphs if any(infix in k for k in g)]


def test_tasks_handed_over_together_reach_dask_as_one_graph(
    manager: PoolManager, dask_client: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=20)
    with _graph_log(dask_client, f"graphs-{token}") as graphs:
        with _one_batch(pool, 20):
            futures = [pool.submit(dasktasks.square, i) for i in range(20)]
        assert [f.result(30) for f in futures] == [i * i for i in range(20)]
        ours = _ours(graphs(), pool)
    assert len(ours) == 1, ours
    assert len(ours[0]) == 20
    assert pool.stats().succeeded == 20


def test_each_task_of_a_mixed_batch_gets_its_own_keywords_and_end(
    manager: PoolManager, dask_client: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=3)
    with _one_batch(pool, 3):
        plain = pool.submit(dasktasks.square, 3)
        keywords = pool.submit(dasktasks.echo_keywords, key="k", priority=2, workers="w")
        failing = pool.submit(dasktasks.fail_deep, token)
    assert plain.result(30) == 9
    assert keywords.result(30) == ("k", 2, "w")
    error = failing.exception(30)
    assert isinstance(error, ValueError)
    assert str(error) == token
    frames = traceback.extract_tb(error.__traceback__)
    names = [f.name for f in frames]  # poolwatch's frames here, then the worker's own
    first = names.index("fail_deep")
    assert names[first:] == ["fail_deep", "_raise_value_error"]
    assert all("/poolwatch/" in f.filename for f in frames[:first]), frames  # none of Dask's
    s = pool.stats()
    assert (s.succeeded, s.failed) == (2, 1)


def test_a_task_cancelled_before_its_batch_left_never_reaches_dask(
    manager: PoolManager, dask_client: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=3)
    with _graph_log(dask_client, f"graphs-{token}") as graphs:
        with _one_batch(pool, 3):
            futures = [pool.submit(dasktasks.mark, f"{token}-{i}") for i in range(3)]
            wait_until(lambda: pool._backend.unsent() == 3, message="not all handed over")
            assert pool.cancel(futures[1].task_id) == "requested"  # running, for the pool
        with pytest.raises(CancelledError):
            futures[1].result(30)
        assert (futures[0].result(30), futures[2].result(30)) == (f"{token}-0", f"{token}-2")
        ours = _ours(graphs(), pool)
    sent = [k for g in ours for k in g]
    assert len(sent) == 2
    assert not any(k.endswith(futures[1].task_id) for k in sent)
    assert not distributed.Event(f"ran-{token}-1", client=dask_client).is_set()
    info = futures[1].info()
    assert info.state is TaskState.CANCELLED
    assert info.cancel_requested
    s = pool.stats()
    assert (s.succeeded, s.cancelled, s.failed) == (2, 1, 0)


def test_a_task_dask_refuses_fails_alone_and_its_batch_runs(
    manager: PoolManager, dask_client: Any
) -> None:
    pool = _pool(manager, dask_client, max_workers=3)
    with _one_batch(pool, 3):
        before = pool.submit(dasktasks.square, 2)
        refused = pool.submit(dasktasks.square, threading.Lock())  # does not pickle
        after = pool.submit(dasktasks.square, 3)
    assert (before.result(30), after.result(30)) == (4, 9)
    error = refused.exception(30)
    assert isinstance(error, TypeError)
    assert str(error) == (
        f"task {refused.task_id} could not be sent to Dask: "
        "TypeError: cannot pickle '_thread.lock' object"
    )
    assert error.__cause__ is None  # nothing of the refused graph is kept
    s = pool.stats()
    assert (s.succeeded, s.failed) == (2, 1)


def test_coroutine_functions_are_awaited_on_the_worker(
    manager: PoolManager, dask_client: Any
) -> None:
    pool = _pool(manager, dask_client, max_workers=4)
    with _one_batch(pool, 4):
        futures = [pool.submit(dasktasks.square_later, i) for i in range(2)]
        futures += [pool.submit(dasktasks.square, i) for i in range(2, 4)]
    assert [f.result(30) for f in futures] == [0, 1, 4, 9]


def test_dask_futures_among_the_arguments_are_resolved(
    manager: PoolManager, dask_client: Any
) -> None:
    pool = _pool(manager, dask_client, max_workers=2)
    three = dask_client.submit(dasktasks.square, 3, pure=False)  # 9, on the cluster
    assert pool.submit(dasktasks.square, three).result(30) == 81
    assert pool.submit(dasktasks.echo_keywords, key=three, priority=1, workers="w").result(30) == (
        9,
        1,
        "w",
    )


def test_run_timeout_kill_before_the_batch_left_keeps_why(
    manager: PoolManager, dask_client: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=1, run_timeout=0.05, on_run_timeout="kill")
    with _one_batch(pool, 1):
        f = pool.submit(dasktasks.mark, token)
        wait_until(
            lambda: all(h.cancel_asked for h in pool._backend._outbox),
            message="the run timeout never interrupted the task",
        )
    with pytest.raises(CancelledError):
        f.result(30)
    info = f.info()
    assert info.state is TaskState.CANCELLED
    assert info.error_type == "TaskInterruptedError"
    assert info.error_message == f"task {f.task_id} ran past its run timeout before it reached Dask"
    assert not distributed.Event(f"ran-{token}", client=dask_client).is_set()


def test_max_workers_bounds_the_tasks_in_flight_and_resizes_live(
    manager: PoolManager, dask_client: Any, gates: Any, token: str
) -> None:
    pool = _pool(manager, dask_client, max_workers=1)
    first, second = gates(f"{token}a"), gates(f"{token}b")
    a = pool.submit(dasktasks.gated, first.token)
    b = pool.submit(dasktasks.gated, second.token)
    first.wait_started()
    assert (pool.stats().active, pool.stats().queued) == (1, 1)
    pool.configure(max_workers=2)
    second.wait_started()  # the second runs beside the first once the pool grew
    assert pool.stats().active == 2
    first.open()
    second.open()
    assert (a.result(30), b.result(30)) == (first.token, second.token)


def test_default_max_workers_follows_the_cluster(manager: PoolManager, dask_client: Any) -> None:
    pool = _pool(manager, dask_client)
    threads = sum(dask_client.nthreads().values())
    assert threads == 2
    assert pool.stats().max_workers == IN_FLIGHT_PER_THREAD * threads


# -- tracing --------------------------------------------------------------------------------


def test_spans_made_inside_the_task_are_children_of_its_span(dask_client: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with PoolManager(registry=CollectorRegistry(), tracer_provider=provider) as manager:
        pool = _pool(manager, dask_client, max_workers=1)
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("request") as request:
            f = pool.submit(dasktasks.traced_child)
        trace_id, parent_id, remote = f.result(30)
    provider.shutdown()
    (task_span,) = [s for s in exporter.get_finished_spans() if s.name == "dasktasks.traced_child"]
    assert task_span.parent is not None
    assert task_span.parent.span_id == request.get_span_context().span_id
    assert task_span.attributes is not None
    assert task_span.attributes["poolwatch.pool.name"] == "d"
    # The span made on the Dask worker hangs under the task's span, across processes.
    assert trace_id == task_span.context.trace_id
    assert parent_id == task_span.context.span_id
    assert remote == 1


def test_without_tracing_the_task_runs_bare(manager: PoolManager, dask_client: Any) -> None:
    pool = _pool(manager, dask_client, max_workers=1)
    assert pool.submit(dasktasks.current_span_is_valid).result(30) is False


# -- settings refused, shutdown -------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({}, ValueError, "exactly one of client= .* or address="),
        (
            {"client": "c", "address": "tcp://127.0.0.1:1"},
            TypeError,
            "must be a distributed.Client",
        ),
        ({"address": "tcp://a b"}, ValueError, "address must be a Dask scheduler's address"),
        ({"address": 8786}, ValueError, "address must be .* got 8786"),
        ({"address": "tcp://x:1", "mp_context": "spawn"}, TypeError, "'mp_context' for a pool"),
        ({"address": "tcp://x:1", "on_run_timeout": "stop"}, ValueError, "on_run_timeout must"),
    ],
)
def test_bad_options_are_refused_clearly(
    manager: PoolManager, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        manager.create_pool("d", kind="dask", **options)
    assert "d" not in manager


def test_an_initializer_is_refused(manager: PoolManager, dask_client: Any) -> None:
    with pytest.raises(TypeError, match="WorkerPlugin"):
        manager.create_pool("d", kind="dask", client=dask_client, initializer=print)
    assert "d" not in manager


def test_a_pool_made_from_an_address_closes_its_client(
    manager: PoolManager, cluster: Any, dask_client: Any
) -> None:
    pool = manager.create_pool("d", kind="dask", address=cluster.scheduler_address)
    assert isinstance(pool, DaskPool)
    own = pool.client
    assert own is not dask_client
    assert pool.submit(dasktasks.square, 7).result(30) == 49
    manager.remove_pool("d")
    assert own.status == "closed"
    assert dask_client.status == "running"


def test_a_pool_given_a_client_leaves_it_open(manager: PoolManager, dask_client: Any) -> None:
    pool = _pool(manager, dask_client, max_workers=1)
    assert pool.submit(dasktasks.square, 8).result(30) == 64
    pool.shutdown(wait=True)
    assert dask_client.status == "running"
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(dasktasks.square, 1)


def test_a_closed_client_breaks_the_pool_clearly(manager: PoolManager, cluster: Any) -> None:
    client = distributed.Client(cluster.scheduler_address, set_as_default=False)
    pool = _pool(manager, client, max_workers=1)
    client.close()
    f = pool.submit(dasktasks.square, 2)
    with pytest.raises(BrokenDaskPool, match="Dask client is closed"):
        f.result(30)
    with pytest.raises(BrokenDaskPool):
        pool.submit(dasktasks.square, 3)


def test_importing_poolwatch_does_not_import_dask() -> None:
    code = (
        "import sys, poolwatch, poolwatch.kinds, poolwatch.dask_pool, poolwatch.http;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
