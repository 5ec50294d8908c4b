"""How ``poolwatch ctl`` shows the API's answers to people: aligned tables and listings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["pool_details", "pools_table", "stack_listing", "table", "task_details", "tasks_table"]

_POOL_COLUMNS = (
    ("NAME", "name"),
    ("KIND", "kind"),
    ("STATE", "state"),
    ("ACTIVE", "active"),
    ("WORKERS", "workers"),
    ("MAX", "max_workers"),
    ("QUEUED", "queued"),
    ("CAPACITY", "queue_capacity"),
    ("POLICY", "rejection_policy"),
    ("SUCCEEDED", "succeeded"),
    ("FAILED", "failed"),
    ("REJECTED", "rejected"),
)
_TASK_COLUMNS = (
    ("ID", "id"),
    ("POOL", "pool"),
    ("NAME", "name"),
    ("STATE", "state"),
    ("SUBMITTED", "submitted_at"),
    ("WAIT", "queue_wait"),
    ("RUN", "run_time"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        bool(rows) and all(isinstance(row[i], int | float) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def pools_table(pools: list[dict[str, Any]]) -> str:
    if not pools:
        return "no pools"
    return table(
        [h for h, _ in _POOL_COLUMNS], [[p.get(k) for _, k in _POOL_COLUMNS] for p in pools]
    )


def _details(record: dict[str, Any], skip: Sequence[str] = ()) -> str:
    shown = {k: v for k, v in record.items() if k not in skip and not isinstance(v, list | dict)}
    width = max(len(k) for k in shown) if shown else 0
    return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in shown.items())


def pool_details(pool: dict[str, Any]) -> str:
    return _details(pool)


def tasks_table(page: dict[str, Any]) -> str:
    tasks = page["data"]
    info = page["pagination"]
    footer = f"page {info['page']} of {max(info['total_pages'], 1)} ({info['total']} tasks)"
    if not tasks:
        return f"no tasks\n{footer}"
    body = table(
        [h for h, _ in _TASK_COLUMNS], [[t.get(k) for _, k in _TASK_COLUMNS] for t in tasks]
    )
    return f"{body}\n{footer}"


def task_details(task: dict[str, Any]) -> str:
    text = _details(task, skip=("traceback", "overdue_stack"))
    if task.get("traceback"):
        text += "\n\n" + str(task["traceback"]).rstrip()
    return text


def stack_listing(stack: dict[str, Any]) -> str:
    """A traceback-like listing, innermost frame last; library frames are marked."""
    lines = [
        f"Stack of task {stack['task_id']} (pool {stack['pool']}, thread {stack['thread']}), "
        f"taken at {stack['taken_at']}; innermost frame last:"
    ]
    if stack.get("truncated"):
        lines.append("  ... outer frames left out")
    for frame in stack["frames"]:
        mark = "lib " if frame.get("library") else "task"
        lines.append(
            f'  {mark}  File "{frame["file"]}", line {frame["line"]}, in {frame["function"]}'
        )
        if frame.get("source"):
            lines.append(f"          {str(frame['source']).strip()}")
    lines.append("(task: the task's own code; lib: the standard library and installed packages)")
    return "\n".join(lines)
