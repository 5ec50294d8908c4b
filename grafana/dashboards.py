"""The poolwatch Grafana dashboards, as code.

Two dashboards:

- ``poolwatch / Overview``: every pool of every instance side by side (throughput,
  failures, rejections, timeouts, saturation, queues, latency quantiles);
- ``poolwatch / Pool``: one pool in depth, down to each task name, with exemplars on
  the run-time panel that link to the trace of a single execution.

The committed JSON under ``grafana/dashboards/`` is generated from this module (and
its building blocks in ``panels.py``); edit the code, then rewrite the JSON with::

    .venv/bin/python grafana/dashboards.py

``tests/ops/test_dashboards.py`` fails while the two disagree. Heavy expressions read
the recording rules of ``deploy/rules/poolwatch-recording.yml``; per-task panels and
the exemplar panel read the raw series (recording rules drop exemplars and the
``task`` label).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from panels import (
    CHANGE_ANNOTATIONS,
    FAILED,
    FAILURE_RATIO_WARN,
    INSTANCES,
    OLDEST_QUEUED_WARN,
    OVERVIEW_UID,
    POOL_UID,
    SATURATION_WARN,
    TASKS,
    base,
    graph,
    label_table,
    quantiles,
    query,
    sel,
    single_stat,
    variables,
)

OUTPUT_DIR = Path(__file__).resolve().parent / "dashboards"


# --------------------------------------------------------------------------- overview


def overview() -> dashboard.Dashboard:
    """All pools of all instances, one series per (instance, pool)."""
    series = "{{pool}} @ {{instance}}"
    completed = sel("pool:poolwatch_tasks_completed:rate1m")
    board = base(
        OVERVIEW_UID,
        "poolwatch / Overview",
        "Every poolwatch pool across instances: throughput, failures, saturation, queues, "
        "latency. Click a series to open its pool.",
    ).variables(variables(pool_multi=True, with_task=False))

    board = (
        board.with_row(dashboard.Row("At a glance"))
        .with_panel(
            single_stat(
                "Targets up",
                "Scrape targets of the selected jobs and instances that answer.",
                f"sum({sel('up', INSTANCES)})",
            )
        )
        .with_panel(
            single_stat(
                "Pools",
                "Pools across the selected instances.",
                f"count({sel('poolwatch_pool_max_workers')})",
            )
        )
        .with_panel(
            single_stat(
                "Throughput",
                "Tasks completed per second, all outcomes.",
                f"sum({completed})",
                unit="ops",
            )
        )
        .with_panel(
            single_stat(
                "Failure ratio",
                "Share of the tasks completed in the last minute that failed.",
                f"sum({sel('pool_outcome:poolwatch_tasks_completed:rate1m', extra=FAILED)})"
                f" / sum({completed})",
                unit="percentunit",
                warn=FAILURE_RATIO_WARN,
            )
        )
        .with_panel(
            single_stat(
                "Busy workers",
                "Workers running a task, as a share of all configured workers.",
                f"sum({sel('poolwatch_pool_active_workers')})"
                f" / sum({sel('poolwatch_pool_max_workers')})",
                unit="percentunit",
                warn=SATURATION_WARN,
            )
        )
        .with_panel(
            single_stat(
                "Queued tasks",
                "Tasks waiting for a worker.",
                f"sum({sel('poolwatch_pool_queued_tasks')})",
            )
        )
        .with_panel(
            single_stat(
                "Rejections",
                "Submissions refused per second (queue full or shutting down).",
                f"sum({sel('pool_reason:poolwatch_tasks_rejected:rate1m')})",
                unit="ops",
                warn=0.001,
            )
        )
        .with_panel(
            single_stat(
                "Overdue tasks",
                "Tasks running past their run timeout right now.",
                f"sum({sel('poolwatch_pool_overdue_tasks')})",
                warn=1,
            )
        )
    )

    board = board.with_panel(
        label_table(
            "Pools and their kinds",
            "Each pool of the selected instances and its kind: where its tasks run (thread, "
            "process or dask). Click a row to open the pool.",
            sel("poolwatch_pool_info"),
            ("job", "instance", "pool", "kind"),
        )
    )

    board = (
        board.with_row(dashboard.Row("Throughput and errors"))
        .with_panel(
            graph(
                "Completed tasks",
                "Tasks completed per second, all outcomes.",
                [query(completed, series)],
                unit="ops",
                link_to_pool=True,
            )
        )
        .with_panel(
            graph(
                "Failure ratio",
                "Share of completed tasks that failed over the last minute "
                "(the alert looks at 5 minutes).",
                [query(sel("pool:poolwatch_tasks_failed:ratio_rate1m"), series)],
                unit="percentunit",
                warn=FAILURE_RATIO_WARN,
                link_to_pool=True,
            )
        )
        .with_panel(
            graph(
                "Rejections",
                "Submissions refused per second, by reason.",
                [
                    query(
                        sel("pool_reason:poolwatch_tasks_rejected:rate1m"),
                        series + " ({{reason}})",
                    )
                ],
                unit="ops",
                link_to_pool=True,
            )
        )
        .with_panel(
            graph(
                "Timeouts",
                "Per second: queue timeouts (cancelled before they started) and run timeouts "
                "(marked overdue).",
                [query(sel("pool_kind:poolwatch_tasks_timeouts:rate1m"), series + " ({{kind}})")],
                unit="ops",
                link_to_pool=True,
            )
        )
    )

    board = (
        board.with_row(dashboard.Row("Saturation and queues"))
        .with_panel(
            graph(
                "Saturation",
                "Workers running a task / configured workers.",
                [query(sel("pool:poolwatch_pool_saturation:ratio"), series)],
                unit="percentunit",
                max_value=1,
                warn=SATURATION_WARN,
                link_to_pool=True,
            )
        )
        .with_panel(
            graph(
                "Queue depth",
                "Tasks waiting for a worker.",
                [query(sel("poolwatch_pool_queued_tasks"), series)],
                link_to_pool=True,
            )
        )
        .with_panel(
            graph(
                "Oldest queued task",
                "How long the task at the head of each queue has waited.",
                [query(sel("poolwatch_pool_oldest_queued_seconds"), series)],
                unit="s",
                warn=OLDEST_QUEUED_WARN,
                link_to_pool=True,
            )
        )
        .with_panel(
            graph(
                "Overdue tasks",
                "Tasks running past their run timeout; each one holds a worker thread.",
                [query(sel("poolwatch_pool_overdue_tasks"), series)],
                link_to_pool=True,
            )
        )
    )

    return (
        board.with_row(dashboard.Row("Latency"))
        .with_panel(
            graph(
                "Queue wait",
                "Submit to start: p50 / p95 / p99 per pool, across the selected instances.",
                quantiles(
                    "sum by (pool, le) "
                    f"({sel('pool:poolwatch_task_queue_wait_seconds_bucket:rate1m')})",
                    "{{pool}} ",
                ),
                unit="s",
            )
        )
        .with_panel(
            graph(
                "Run time",
                "Start to finish: p50 / p95 / p99 per pool, across the selected instances.",
                quantiles(
                    f"sum by (pool, le) ({sel('pool:poolwatch_task_run_seconds_bucket:rate1m')})",
                    "{{pool}} ",
                ),
                unit="s",
            )
        )
    )


# --------------------------------------------------------------------------- one pool


def _rate(metric: str, extra: str = "") -> str:
    return f"rate({sel(metric, TASKS, extra)}[$__rate_interval])"


def pool() -> dashboard.Dashboard:
    """One pool in depth, summed across the selected instances unless split by instance."""
    per_instance = "{{instance}}"
    state_mappings: list[models.ValueMapping] = [
        models.ValueMap(options={"1": models.ValueMappingResult(color="green", index=0)})
    ]
    # An unbounded queue reports +Inf, which Grafana reads as the number Infinity.
    capacity_mappings: list[models.ValueMapping] = [
        models.ValueMap(options={"Infinity": models.ValueMappingResult(text="unbounded", index=0)})
    ]
    board = base(
        POOL_UID,
        "poolwatch / Pool",
        "One poolwatch pool in depth: workers, queue, outcomes, timeouts, latency, and each "
        "task name. Run-time exemplars link to traces.",
    ).variables(variables(pool_multi=False, with_task=True))

    board = (
        board.with_row(dashboard.Row("Now"))
        .with_panel(
            single_stat(
                "State",
                "running, paused, shutting_down or terminated.",
                f"max by (state) ({sel('poolwatch_pool_state')} == 1)",
                legend="{{state}}",
                text_mode=common.BigValueTextMode.NAME,
                no_value="absent",
                mappings=state_mappings,
            )
        )
        .with_panel(
            single_stat(
                "Kind",
                "Where the pool's tasks run: its threads (thread), worker processes (process) "
                "or a Dask cluster (dask).",
                f"max by (kind) ({sel('poolwatch_pool_info')})",
                legend="{{kind}}",
                text_mode=common.BigValueTextMode.NAME,
                no_value="absent",
            )
        )
        .with_panel(
            single_stat(
                "Max workers",
                "Configured worker limit.",
                f"sum({sel('poolwatch_pool_max_workers')})",
            )
        )
        .with_panel(
            single_stat(
                "Live workers",
                "Worker threads alive (surplus workers retire when idle after a shrink).",
                f"sum({sel('poolwatch_pool_workers')})",
            )
        )
        .with_panel(
            single_stat(
                "Active workers",
                "Workers running a task.",
                f"sum({sel('poolwatch_pool_active_workers')})",
            )
        )
        .with_panel(
            single_stat(
                "Queued",
                "Tasks waiting for a worker.",
                f"sum({sel('poolwatch_pool_queued_tasks')})",
            )
        )
        .with_panel(
            single_stat(
                "Queue capacity",
                "Queue limit per instance; submissions past it follow the rejection policy.",
                f"max({sel('poolwatch_pool_queue_capacity')})",
                mappings=capacity_mappings,
            )
        )
        .with_panel(
            single_stat(
                "Oldest queued",
                "Wait of the task at the head of the queue.",
                f"max({sel('poolwatch_pool_oldest_queued_seconds')})",
                unit="s",
                warn=OLDEST_QUEUED_WARN,
            )
        )
        .with_panel(
            single_stat(
                "Overdue",
                "Tasks running past their run timeout.",
                f"sum({sel('poolwatch_pool_overdue_tasks')})",
                warn=1,
            )
        )
    )

    board = (
        board.with_row(dashboard.Row("Flow"))
        .with_panel(
            graph(
                "Submitted, completed, rejected",
                "Per second: accepted submissions, completions by outcome, refusals by reason.",
                [
                    query(f"sum({sel('pool:poolwatch_tasks_submitted:rate1m')})", "submitted"),
                    query(
                        "sum by (outcome) "
                        f"({sel('pool_outcome:poolwatch_tasks_completed:rate1m')})",
                        "{{outcome}}",
                    ),
                    query(
                        f"sum by (reason) ({sel('pool_reason:poolwatch_tasks_rejected:rate1m')})",
                        "rejected ({{reason}})",
                    ),
                ],
                unit="ops",
            )
        )
        .with_panel(
            graph(
                "Failure ratio",
                "Share of completed tasks that failed, per instance.",
                [query(sel("pool:poolwatch_tasks_failed:ratio_rate1m"), per_instance)],
                unit="percentunit",
                warn=FAILURE_RATIO_WARN,
            )
        )
        .with_panel(
            graph(
                "Timeouts",
                "Queue timeouts and run timeouts per second.",
                [
                    query(
                        f"sum by (kind) ({sel('pool_kind:poolwatch_tasks_timeouts:rate1m')})",
                        "{{kind}}",
                    )
                ],
                unit="ops",
            )
        )
        .with_panel(
            graph(
                "Overdue tasks",
                "Tasks running past their run timeout, per instance.",
                [query(sel("poolwatch_pool_overdue_tasks"), per_instance)],
            )
        )
    )

    board = (
        board.with_row(dashboard.Row("Workers and queue"))
        .with_panel(
            graph(
                "Workers",
                "Configured limit, live threads and busy threads.",
                [
                    query(f"sum({sel('poolwatch_pool_max_workers')})", "max"),
                    query(f"sum({sel('poolwatch_pool_workers')})", "live"),
                    query(f"sum({sel('poolwatch_pool_active_workers')})", "active"),
                ],
            )
        )
        .with_panel(
            graph(
                "Saturation",
                "Busy workers / configured workers, per instance.",
                [query(sel("pool:poolwatch_pool_saturation:ratio"), per_instance)],
                unit="percentunit",
                max_value=1,
                warn=SATURATION_WARN,
            )
        )
        .with_panel(
            graph(
                "Queue",
                "Queued tasks and, for a bounded queue, its capacity, per instance.",
                [
                    query(sel("poolwatch_pool_queued_tasks"), "queued @ {{instance}}"),
                    query(
                        f"{sel('poolwatch_pool_queue_capacity')} < +Inf", "capacity @ {{instance}}"
                    ),
                ],
            )
        )
        .with_panel(
            graph(
                "Oldest queued task",
                "Wait of the task at the head of the queue, per instance.",
                [query(sel("poolwatch_pool_oldest_queued_seconds"), per_instance)],
                unit="s",
                warn=OLDEST_QUEUED_WARN,
            )
        )
    )

    run_quantiles = quantiles(f"sum by (le) ({_rate('poolwatch_task_run_seconds_bucket')})")
    # One exemplar query is enough: the same exemplars would otherwise be drawn three times.
    run_quantiles[-1] = run_quantiles[-1].exemplar(True)
    board = (
        board.with_row(dashboard.Row("Latency"))
        .with_panel(
            graph(
                "Queue wait",
                "Submit to start: p50 / p95 / p99.",
                quantiles(
                    f"sum by (le) ({sel('pool:poolwatch_task_queue_wait_seconds_bucket:rate1m')})"
                ),
                unit="s",
            )
        )
        .with_panel(
            graph(
                "Run time (exemplars link to traces)",
                "Start to finish for the selected tasks: p50 / p95 / p99. Each dot is an "
                "exemplar, one execution, with a link to its trace.",
                run_quantiles,
                unit="s",
            )
        )
    )

    completions = _rate("poolwatch_tasks_completed_total")
    return (
        board.with_row(dashboard.Row("Per task"))
        .with_panel(
            graph(
                "Completed per task",
                "Completions per second by task name and outcome.",
                [query(f"sum by (task, outcome) ({completions})", "{{task}} {{outcome}}")],
                unit="ops",
            )
        )
        .with_panel(
            graph(
                "Failure ratio per task",
                "Share of each task's completions that failed.",
                [
                    query(
                        "sum by (task) "
                        f"({_rate('poolwatch_tasks_completed_total', FAILED)})"
                        f" / sum by (task) ({completions})",
                        "{{task}}",
                    )
                ],
                unit="percentunit",
                warn=FAILURE_RATIO_WARN,
            )
        )
        .with_panel(
            graph(
                "Run time p95 per task",
                "95th percentile of run time by task name.",
                [
                    query(
                        "histogram_quantile(0.95, sum by (task, le) "
                        f"({_rate('poolwatch_task_run_seconds_bucket')}))",
                        "{{task}}",
                    )
                ],
                unit="s",
            )
        )
        .with_panel(
            graph(
                "Mean run time per task",
                "Average run time by task name.",
                [
                    query(
                        f"sum by (task) ({_rate('poolwatch_task_run_seconds_sum')})"
                        f" / sum by (task) ({_rate('poolwatch_task_run_seconds_count')})",
                        "{{task}}",
                    )
                ],
                unit="s",
            )
        )
    )


# --------------------------------------------------------------------------- output

DASHBOARDS = {"poolwatch-overview.json": overview, "poolwatch-pool.json": pool}


def render(name: str) -> str:
    """The JSON text of dashboard file ``name``, as committed."""
    built = DASHBOARDS[name]().build()
    data = json.loads(JSONEncoder(sort_keys=True).encode(built))
    # Stable panel ids, in layout order: Grafana keys panel links and view URLs on them.
    for number, panel in enumerate(data["panels"], start=1):
        panel["id"] = number
    # The Prometheus fields of an annotation query, which the SDK does not model.
    titles = {name: title for name, _, _, title in CHANGE_ANNOTATIONS}
    for annotation in data.get("annotations", {}).get("list", []):
        annotation.update(
            step="15s",
            titleFormat=titles[annotation["name"]],
            textFormat="{{instance}} (job {{job}})",
            tagKeys="pool,instance",
            useValueForTime=False,
        )
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] = ()) -> int:
    """Write every dashboard into OUTPUT_DIR; with ``--check``, only report drift."""
    check = "--check" in argv
    stale: list[Path] = []
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        path = OUTPUT_DIR / name
        text = render(name)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not check:
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'out of date' if check else 'wrote'}: {path}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
