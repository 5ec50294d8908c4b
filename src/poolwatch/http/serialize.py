"""Engine snapshots as JSON-ready dicts."""

from __future__ import annotations

import enum
import inspect
import json
import math
import time
from collections.abc import Iterable
from json.encoder import encode_basestring
from typing import Any

from starlette.responses import JSONResponse as _StarletteJSONResponse

from poolwatch.records import PoolStats, TaskInfo
from poolwatch.stacks import TaskStack
from poolwatch.tasks import TaskType

__all__ = [
    "TOTAL_FIELDS",
    "JSONResponse",
    "dumps",
    "iso_time",
    "pagination",
    "pool_json",
    "stack_json",
    "stats_json",
    "task_json",
    "task_json_text",
    "task_type_json",
    "totals_json",
    "utf8",
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
_DIGITS = [f"{n:03d}" for n in range(1000)]


def iso_time(epoch: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with a ``Z`` suffix (microsecond precision)."""
    return None if epoch is None else _iso_time(epoch)


def _iso_time(epoch: float) -> str:
    # Three times per task in every task listing: the formatted second is cached
    # (bounded; tasks in a page mostly share their seconds) and the microseconds are
    # two table lookups. Rounds like ``datetime.fromtimestamp``.
    whole = int(epoch)
    micros = round((epoch - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    head = _SECOND_TEXT.get(whole)
    if head is None:
        if len(_SECOND_TEXT) >= 4096:
            _SECOND_TEXT.clear()
        head = _SECOND_TEXT[whole] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))
    return f"{head}{_DIGITS[micros // 1000]}{_DIGITS[micros % 1000]}Z"


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pool_json(stats: PoolStats, kind: str) -> dict[str, Any]:
    """Every ``PoolStats`` field under its own name, and the pool's ``kind``."""
    return {
        "name": stats.name,
        "kind": kind,
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
        "queue_timeouts": stats.queue_timeouts,
        "run_timeouts": stats.run_timeouts,
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
        "overdue_stack": _stack(info.overdue_stack),
    }


_NO_ERROR = '"error_type":null,"error_message":null,"traceback":null'


def _text(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def _number(value: float | None) -> str:
    return "null" if value is None else repr(value)


def task_json_text(info: TaskInfo) -> str:
    """``dumps(task_json(info))``, written directly: task pages are the API's heaviest
    read, and skipping the dict makes them cheaper. The same text, character for character.
    """
    if info.error_type is None:
        error_text = _NO_ERROR
    else:
        error_text = (
            f'"error_type":{encode_basestring(info.error_type)},'
            f'"error_message":{_text(info.error_message)},'
            f'"traceback":{_text(info.traceback)}'
        )
    started = "null" if info.started_at is None else f'"{_iso_time(info.started_at)}"'
    finished = "null" if info.finished_at is None else f'"{_iso_time(info.finished_at)}"'
    trace = "null" if info.trace_id is None else f'"{info.trace_id}"'
    stack = "null" if info.overdue_stack is None else dumps(_stack(info.overdue_stack))
    return (
        f'{{"id":{encode_basestring(info.id)},"pool":{encode_basestring(info.pool)},'
        f'"name":{encode_basestring(info.name)},"state":"{info.state._value_}",'
        f'"submitted_at":"{_iso_time(info.submitted_at)}","started_at":{started},'
        f'"finished_at":{finished},"queue_wait":{_number(info.queue_wait)},'
        f'"run_time":{_number(info.run_time)},{error_text},'
        f'"cancel_requested":{"true" if info.cancel_requested else "false"},'
        f'"worker":{_text(info.worker)},"trace_id":{trace},"overdue_stack":{stack}}}'
    )


def _stack(stack: TaskStack | None) -> dict[str, Any] | None:
    return None if stack is None else stack_json(stack)


def stack_json(stack: TaskStack) -> dict[str, Any]:
    """A task's stack, innermost frame last; ``taken_at`` as ISO 8601 UTC."""
    return {
        "task_id": stack.task_id,
        "pool": stack.pool,
        "thread": stack.thread,
        "taken_at": _iso_time(stack.taken_at),
        "truncated": stack.truncated,
        "frames": [
            {
                "file": f.file,
                "line": f.line,
                "function": f.function,
                "source": f.source,
                "library": f.library,
            }
            for f in stack.frames
        ],
    }


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    """JSON text exactly as Starlette's ``JSONResponse`` renders it."""
    return _ENCODER.encode(value)


def utf8(text: str) -> bytes:
    """JSON text as UTF-8 bytes.

    Python strings may hold unpaired surrogates (a request's ``"\\ud800"`` escape, a
    task's exception message), which UTF-8 cannot encode. They only ever stand inside
    JSON strings here, so each is written as its ``\\uXXXX`` escape instead: the
    response stays valid JSON and decodes to the same string.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


class JSONResponse(_StarletteJSONResponse):
    """Starlette's ``JSONResponse``, but never failing on an unpaired surrogate."""

    def render(self, content: Any) -> bytes:
        return utf8(dumps(content))


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


def stats_json(totals: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    """``/api/stats``: ``totals`` (with every key ``totals_json`` gives) and which
    process answered, for how many processes."""
    keys = ("pools", *TOTAL_FIELDS, "oldest_queued_age", "pool_states")
    return {**{key: totals[key] for key in keys}, "server": server}


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
