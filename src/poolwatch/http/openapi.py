"""The OpenAPI 3 document of ``/api``.

Request schemas come from the same :class:`~poolwatch.http.fields.Field` objects that
validate requests; response schemas are derived from the ``PoolStats`` and
``TaskInfo`` dataclasses, so neither can drift from what the server does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from poolwatch.http.fields import POOL_NAME_PATTERN, Field
from poolwatch.http.recent import LATENCY_QUERY, SAMPLES_QUERY
from poolwatch.http.schemas import (
    DELETE_QUERY,
    KIND,
    POOL_CREATE,
    POOL_PATCH,
    REJECTION_POLICIES,
    TASK_QUERY,
    TASK_STATES,
    TASK_SUBMIT,
)
from poolwatch.http.serialize import TOTAL_FIELDS
from poolwatch.records import PoolState, PoolStats, TaskInfo
from poolwatch.samples import SERIES

__all__ = ["openapi_document"]

_SCALARS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_TIME_FIELDS = frozenset({"submitted_at", "started_at", "finished_at"})


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _record_schema(cls: type, description: str, enums: Mapping[str, list[str]]) -> dict[str, Any]:
    """A JSON object schema with one required property per dataclass field."""
    props: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        annotation = str(f.type).replace(" ", "")
        nullable = annotation.endswith("|None")
        base = annotation.removesuffix("|None")
        if f.name == "overdue_stack":  # a TaskStack, or null
            schema: dict[str, Any] = {"allOf": [_ref("TaskStack")], "nullable": True}
            nullable = False
        elif f.name in _TIME_FIELDS:
            schema = {"type": "string", "format": "date-time"}
        elif f.name in enums:
            schema = {"type": "string", "enum": list(enums[f.name])}
        else:
            schema = {"type": _SCALARS[base]}
        if nullable:
            schema["nullable"] = True
        props[f.name] = schema
    return {
        "type": "object",
        "description": description,
        "required": list(props),
        "properties": props,
    }


def _body_schema(fields: Mapping[str, Field], description: str) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": {name: f.json_schema() for name, f in fields.items()},
    }
    required = [name for name, f in fields.items() if f.required]
    if required:
        schema["required"] = required
    return schema


def _query_params(fields: Mapping[str, Field]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f.description,
            "schema": {k: v for k, v in f.json_schema().items() if k != "description"},
        }
        for name, f in fields.items()
    ]


_POOL_NAME_PARAM = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "Pool name.",
    "schema": {"type": "string", "pattern": POOL_NAME_PATTERN},
}
_TASK_ID_PARAM = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "description": "Task id, as returned on submission.",
    "schema": {"type": "string"},
}

_ERROR_TEXT = {
    400: "Malformed request body: not sent as Content-Type application/json, not JSON, empty, "
    "a repeated key, a number that is not finite or has too many digits, or a bad "
    "Content-Length.",
    401: "A token is configured and the request has none or a wrong one.",
    403: "Read-only server; or no token is configured and the server is not bound to "
    "loopback, the Host header is not a loopback name, or the request came from a page "
    "of another origin (Origin, Sec-Fetch-Site).",
    404: "No such pool or task.",
    409: (
        "Conflict with the current state (duplicate pool, pool shutting down, task not "
        "running, submitting to a family of executors)."
    ),
    413: "Request body too large.",
    422: "A field or parameter is invalid; the message names it and the fix.",
    503: "The pool rejected the task (queue full, shut down) or the server is stopping.",
}


_STACK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A running task's live Python stack, innermost frame last.",
    "required": ["task_id", "pool", "thread", "taken_at", "truncated", "frames"],
    "properties": {
        "task_id": {"type": "string"},
        "pool": {"type": "string"},
        "thread": {"type": "string", "description": "Name of the thread running the task."},
        "taken_at": {"type": "string", "format": "date-time"},
        "truncated": {"type": "boolean", "description": "Outer frames were left out."},
        "frames": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["file", "line", "function", "source", "library"],
                "properties": {
                    "file": {"type": "string"},
                    "line": {"type": "integer"},
                    "function": {"type": "string"},
                    "source": {"type": "string", "nullable": True},
                    "library": {
                        "type": "boolean",
                        "description": "Standard library, installed package or poolwatch.",
                    },
                },
            },
        },
    },
}


_NUMBER_OR_NULL = {"type": "number", "nullable": True}
_LATENCY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Quantiles in seconds over the window (null with no observations).",
    "required": ["count", "p50", "p95", "p99"],
    "properties": {
        "count": {"type": "integer"},
        "p50": _NUMBER_OR_NULL,
        "p95": _NUMBER_OR_NULL,
        "p99": _NUMBER_OR_NULL,
    },
}
_SAMPLES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Per pool, one value a second: gauges as sampled, counters as increments.",
    "required": ["interval", "series", "sampling", "data"],
    "properties": {
        "interval": {"type": "number", "description": "Seconds between samples."},
        "series": {"type": "array", "items": {"type": "string", "enum": list(SERIES)}},
        "sampling": {"type": "boolean", "description": "The sampler runs."},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pool", "start", "values"],
                "properties": {
                    "pool": {"type": "string"},
                    "start": {"type": "string", "format": "date-time"},
                    "values": {
                        "type": "object",
                        "required": list(SERIES),
                        "properties": {
                            name: {"type": "array", "items": {"type": "integer"}} for name in SERIES
                        },
                    },
                },
            },
        },
    },
}
_LATENCY_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["window", "covered", "data"],
    "properties": {
        "window": {"type": "integer"},
        "covered": {"type": "number", "description": "Seconds the data actually spans."},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pool", "queue_wait", "run_time", "tasks"],
                "properties": {
                    "pool": {"type": "string"},
                    "queue_wait": _LATENCY_SCHEMA,
                    "run_time": _LATENCY_SCHEMA,
                    "tasks": {
                        "type": "array",
                        "items": {
                            "allOf": [
                                _LATENCY_SCHEMA,
                                {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": {"type": "string"}},
                                },
                            ]
                        },
                    },
                },
            },
        },
    },
}
_CONSOLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["trace_url", "grafana_url", "grafana_dashboard_path"],
    "properties": {
        "trace_url": {"type": "string", "nullable": True},
        "grafana_url": {"type": "string", "nullable": True},
        "grafana_dashboard_path": {"type": "string"},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    op_id: str,
    ok: int,
    ok_schema: dict[str, Any],
    ok_text: str,
    *,
    errors: tuple[int, ...] = (),
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    mutation: bool = False,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {str(ok): _json(ok_schema, ok_text)}
    if headers:
        responses[str(ok)]["headers"] = headers
    codes = set(errors)
    if mutation:
        codes |= {401, 403}
    for code in sorted(codes):
        responses[str(code)] = _json(_ref("Error"), _ERROR_TEXT[code])
    op: dict[str, Any] = {"summary": summary, "operationId": op_id, "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if mutation:
        op["security"] = [{"bearerAuth": []}, {}]
    return op


def _list_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": _ref(name)}},
    }


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Short machine code."},
                    "message": {"type": "string", "description": "What and how to fix."},
                },
            }
        },
    }


def _pool_schema() -> dict[str, Any]:
    """A pool: its ``PoolStats`` and its kind."""
    schema = _record_schema(
        PoolStats,
        "A pool's kind, configuration and live counters (PoolStats).",
        {"state": [s.value for s in PoolState], "rejection_policy": list(REJECTION_POLICIES)},
    )
    schema["properties"]["kind"] = {
        "type": "string",
        "enum": list(KIND.choices or ()),
        "description": "Where its tasks run (see createPool).",
    }
    schema["required"].append("kind")
    return schema


def _record_schemas() -> dict[str, Any]:
    """The schemas derived from the engine's ``PoolStats`` and ``TaskInfo`` records."""
    return {
        "Pool": _pool_schema(),
        "Task": _record_schema(
            TaskInfo,
            "One task (TaskInfo); times are ISO 8601 UTC.",
            {"state": list(TASK_STATES)},
        ),
        "TaskStack": _STACK_SCHEMA,
    }


def _pagination_schema(int_prop: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["page", "per_page", "total", "total_pages", "has_prev", "has_next"],
        "properties": {
            "page": int_prop,
            "per_page": int_prop,
            "total": int_prop,
            "total_pages": int_prop,
            "has_prev": {"type": "boolean"},
            "has_next": {"type": "boolean"},
        },
    }


def _task_type_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name", "description", "run_timeout", "parameters"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "run_timeout": {"type": "number", "nullable": True},
            "parameters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "kind", "annotation", "required", "default"],
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "annotation": {"type": "string", "nullable": True},
                        "required": {"type": "boolean"},
                        "default": {"nullable": True},
                    },
                },
            },
        },
    }


def _stats_schema(int_prop: dict[str, str]) -> dict[str, Any]:
    totals = dict.fromkeys(("pools", *TOTAL_FIELDS), int_prop)
    return {
        "type": "object",
        "required": [*totals, "oldest_queued_age", "pool_states", "server"],
        "properties": {
            **totals,
            "oldest_queued_age": {"type": "number"},
            "pool_states": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
            },
            "server": _server_schema(int_prop),
        },
    }


def _server_schema(int_prop: dict[str, str]) -> dict[str, Any]:
    counts = ("pid", "processes", "live_processes", "unreadable_files")
    return {
        "type": "object",
        "description": "Which process answered, and how many processes the totals count: "
        "with PROMETHEUS_MULTIPROC_DIR set (multiprocess), every process of the server; "
        "counters include processes that exited, the other numbers live ones only.",
        "required": ["multiprocess", *counts],
        "properties": {"multiprocess": {"type": "boolean"}, **dict.fromkeys(counts, int_prop)},
    }


def _info_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["version", "read_only", "auth_required", "mutations_allowed"],
        "properties": {
            "version": {"type": "string"},
            "read_only": {"type": "boolean"},
            "auth_required": {"type": "boolean"},
            "mutations_allowed": {"type": "boolean"},
        },
    }


def _components() -> dict[str, Any]:
    int_prop = {"type": "integer"}
    return {
        "schemas": {
            "Error": _error_schema(),
            **_record_schemas(),
            "Pagination": _pagination_schema(int_prop),
            "TaskType": _task_type_schema(),
            "Stats": _stats_schema(int_prop),
            "Info": _info_schema(),
        },
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "Needed for POST, PATCH and DELETE when the server has a token.",
            }
        },
    }


_LOCATION = {"Location": {"schema": {"type": "string"}, "description": "URL of the resource."}}


def _server_paths() -> dict[str, Any]:
    return {
        "/api/info": {
            "get": _op(
                "Server version and what this client may do",
                "getInfo",
                200,
                _ref("Info"),
                "Server info.",
            )
        },
    }


def _pool_paths() -> dict[str, Any]:
    """``/api/pools`` and ``/api/pools/{name}``."""
    return {
        "/api/pools": {
            "get": _op("List pools", "listPools", 200, _list_of("Pool"), "All pools, by name."),
            "post": _op(
                "Create a pool",
                "createPool",
                201,
                _ref("Pool"),
                "The new pool.",
                errors=(400, 409, 413, 422, 503),
                body=_body_schema(POOL_CREATE, "A new pool."),
                mutation=True,
                headers=_LOCATION,
            ),
        },
        "/api/pools/{name}": {
            "parameters": [_POOL_NAME_PARAM],
            "get": _op("Get a pool", "getPool", 200, _ref("Pool"), "The pool.", errors=(404,)),
            "patch": _op(
                "Reconfigure, pause or resume a pool",
                "updatePool",
                200,
                _ref("Pool"),
                "The pool after the change.",
                errors=(400, 404, 409, 413, 422),
                body=_body_schema(POOL_PATCH, "Fields to change; omitted ones stay."),
                mutation=True,
            ),
            "delete": _op(
                "Shut down and remove a pool",
                "deletePool",
                200,
                _ref("Pool"),
                "The pool's final stats.",
                errors=(404, 422),
                params=_query_params(DELETE_QUERY),
                mutation=True,
            ),
        },
    }


def _submit_path() -> dict[str, Any]:
    accepted = {
        "type": "object",
        "required": ["id", "pool", "task"],
        "properties": {
            "id": {"type": "string"},
            "pool": {"type": "string"},
            "task": {"type": "string"},
        },
    }
    return {
        "/api/pools/{name}/tasks": {
            "parameters": [_POOL_NAME_PARAM],
            "post": _op(
                "Submit a registered task",
                "submitTask",
                202,
                accepted,
                "Queued; poll the Location.",
                errors=(400, 404, 409, 413, 422, 503),
                body=_body_schema(TASK_SUBMIT, "A registered task and its arguments."),
                mutation=True,
                headers=_LOCATION,
            ),
        },
    }


_TASK_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["data", "pagination"],
    "properties": {
        "data": {"type": "array", "items": _ref("Task")},
        "pagination": _ref("Pagination"),
    },
}
_CANCEL_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["result"],
    "properties": {"result": {"type": "string", "enum": ["cancelled", "requested", "finished"]}},
}


def _task_paths() -> dict[str, Any]:
    """``/api/tasks``, the paths of one task, and the task types."""
    return {
        "/api/tasks": {
            "get": _op(
                "List tasks, newest first",
                "listTasks",
                200,
                _TASK_PAGE,
                "One page of tasks.",
                errors=(422,),
                params=_query_params(TASK_QUERY),
            ),
        },
        "/api/tasks/{task_id}": {
            "parameters": [_TASK_ID_PARAM],
            "get": _op("Get a task", "getTask", 200, _ref("Task"), "The task.", errors=(404,)),
        },
        "/api/tasks/{task_id}/stack": {
            "parameters": [_TASK_ID_PARAM],
            "get": _op(
                "Live stack of a running task",
                "getTaskStack",
                200,
                _ref("TaskStack"),
                "The stack, taken now.",
                errors=(404, 409),
            ),
        },
        "/api/tasks/{task_id}/cancel": {
            "parameters": [_TASK_ID_PARAM],
            "post": _op(
                "Cancel a task",
                "cancelTask",
                200,
                _CANCEL_RESULT,
                "cancelled (was queued), requested (running) or finished.",
                errors=(404,),
                mutation=True,
            ),
        },
        "/api/task-types": {
            "get": _op(
                "Registered task types",
                "listTaskTypes",
                200,
                _list_of("TaskType"),
                "Tasks that can be submitted by name.",
            ),
        },
    }


def _console_paths() -> dict[str, Any]:
    """The reads behind the console's charts and links, and the totals."""
    return {
        "/api/samples": {
            "get": _op(
                "Each pool's samples of the last 15 minutes, one a second",
                "getSamples",
                200,
                _SAMPLES_SCHEMA,
                "The samples.",
                errors=(404, 422),
                params=_query_params(SAMPLES_QUERY),
            ),
        },
        "/api/latency": {
            "get": _op(
                "Queue-wait and run-time quantiles per pool and task name",
                "getLatency",
                200,
                _LATENCY_PAGE,
                "Quantiles over the window.",
                errors=(404, 422),
                params=_query_params(LATENCY_QUERY),
            ),
        },
        "/api/console": {
            "get": _op(
                "Links the console builds",
                "getConsoleSettings",
                200,
                _CONSOLE_SCHEMA,
                "Trace and Grafana URLs.",
            ),
        },
        "/api/stats": {
            "get": _op(
                "Totals across pools (across processes in a multi-process server)",
                "getStats",
                200,
                _ref("Stats"),
                "Totals.",
            ),
        },
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The document as a JSON-ready dict (``servers`` is added per request)."""
    paths = {
        **_server_paths(),
        **_pool_paths(),
        **_submit_path(),
        **_task_paths(),
        **_console_paths(),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "poolwatch control API",
            "version": version,
            "description": "Inspect and control the thread pools of a poolwatch service. "
            'Errors are {"error": {"code", "message"}}.',
        },
        "paths": paths,
        "components": _components(),
    }
