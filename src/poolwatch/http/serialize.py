"""Engine snapshots as JSON-ready dicts."""

from __future__ import annotations

import enum
import inspect
import math
import time
from collections.abc import Iterable
from typing import Any

from poolwatch.records import PoolStats, TaskInfo
from poolwatch.tasks import TaskType

__all__ = [
    "TOTAL_FIELDS",
    "iso_time",
    "pagination",
    "pool_json",
    "task_json",
    "task_type_json",
    "totals_json",
]

TOTAL_FIELDS = (
    "max_workers",
    "workers",
    "active",
    "idle",
    "queued",
    "submitted",
    "succeeded",
    "failed",
    "cancelled",
    "rejected",
    "overdue",
)


_SECOND_TEXT: dict[int, str] = {}


def iso_time(epoch: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with a ``Z`` suffix (microsecond precision).

    Tasks in a page mostly share their seconds, so the formatted second is cached
    (bounded); this runs three times per task in every task listing.
    """
    if epoch is None:
        return None
    whole = int(epoch)
    micros = round((epoch - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    head = _SECOND_TEXT.get(whole)
    if head is None:
        if len(_SECOND_TEXT) >= 4096:
            _SECOND_TEXT.clear()
        head = _SECOND_TEXT[whole] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{head}.{micros:06d}Z"


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pool_json(stats: PoolStats) -> dict[str, Any]:
    """Every ``PoolStats`` field under its own name."""
    return {
        "name": stats.name,
        "state": stats.state.value,
        "max_workers": stats.max_workers,
        "workers": stats.workers,
        "active": stats.active,
        "idle": stats.idle,
        "queued": stats.queued,
        "queue_capacity": stats.queue_capacity,
        "rejection_policy": stats.rejection_policy,
        "queue_timeout": stats.queue_timeout,
        "run_timeout": stats.run_timeout,
        "submitted": stats.submitted,
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "cancelled": stats.cancelled,
        "rejected": stats.rejected,
        "overdue": stats.overdue,
        "oldest_queued_age": _plain(stats.oldest_queued_age),
    }


def task_json(info: TaskInfo) -> dict[str, Any]:
    """Every ``TaskInfo`` field under its own name; times as ISO 8601 UTC strings."""
    return {
        "id": info.id,
        "pool": info.pool,
        "name": info.name,
        "state": info.state.value,
        "submitted_at": iso_time(info.submitted_at),
        "started_at": iso_time(info.started_at),
        "finished_at": iso_time(info.finished_at),
        "queue_wait": info.queue_wait,
        "run_time": info.run_time,
        "error_type": info.error_type,
        "error_message": info.error_message,
        "traceback": info.traceback,
        "cancel_requested": info.cancel_requested,
        "worker": info.worker,
        "trace_id": info.trace_id,
    }


def totals_json(all_stats: Iterable[PoolStats]) -> dict[str, Any]:
    """Sums across pools, plus how many pools there are in each state."""
    totals: dict[str, Any] = dict.fromkeys(TOTAL_FIELDS, 0)
    states: dict[str, int] = {}
    count = 0
    oldest = 0.0
    for stats in all_stats:
        count += 1
        for name in TOTAL_FIELDS:
            totals[name] += getattr(stats, name)
        states[stats.state.value] = states.get(stats.state.value, 0) + 1
        oldest = max(oldest, stats.oldest_queued_age)
    return {"pools": count, **totals, "oldest_queued_age": oldest, "pool_states": states}


def _default_json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return _plain(value)
    return repr(value)


def _annotation(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def task_type_json(task_type: TaskType) -> dict[str, Any]:
    """A registered task with its parameters, for clients that build submit forms."""
    params = []
    for param in task_type.signature.parameters.values():
        has_default = param.default is not inspect.Parameter.empty
        params.append(
            {
                "name": param.name,
                "kind": param.kind.name.lower(),
                "annotation": _annotation(param.annotation),
                "required": not has_default
                and param.kind
                not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD),
                "default": _default_json(param.default) if has_default else None,
            }
        )
    return {
        "name": task_type.name,
        "description": task_type.description,
        "run_timeout": task_type.run_timeout,
        "parameters": params,
    }


def pagination(page: int, per_page: int, total: int) -> dict[str, Any]:
    """``total_pages`` is 0 when nothing matched; a page past the end is simply empty."""
    total_pages = -(-total // per_page)
    return {
        "page": page,
        "per_page": per_page,
        "total": total,
        "total_pages": total_pages,
        "has_prev": page > 1,
        "has_next": page < total_pages,
    }
