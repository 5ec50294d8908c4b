"""What the control API accepts: request bodies, query strings, task arguments.

Each parser returns checked values or raises :class:`~poolwatch.http.fields.FieldError`,
which the routes turn into a 422 naming the field and the fix.
"""

from __future__ import annotations

import dataclasses
import inspect
import multiprocessing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams

from poolwatch import options
from poolwatch.http.fields import POOL_NAME_PATTERN, Field, FieldError, check_object, show
from poolwatch.kinds import KINDS, check_kind_name
from poolwatch.records import TaskState
from poolwatch.tasks import TaskType

__all__ = [
    "DELETE_QUERY",
    "FILE_KIND_OPTIONS",
    "KIND",
    "KIND_OPTIONS",
    "MAX_PER_PAGE",
    "POOL_CREATE",
    "POOL_PATCH",
    "REJECTION_POLICIES",
    "TASK_QUERY",
    "TASK_SUBMIT",
    "TaskQuery",
    "bind_task_arguments",
    "parse_query",
    "parse_task_query",
]

MAX_PER_PAGE = 200
REJECTION_POLICIES = options.REJECTION_POLICIES
TASK_STATES = tuple(state.value for state in TaskState)


def _fields(*items: Field) -> dict[str, Field]:
    return {item.name: item for item in items}


NAME = Field(
    "name",
    "string",
    "Pool name; also the `pool` label of its metrics.",
    required=True,
    pattern=POOL_NAME_PATTERN,
    checker=options.check_pool_name,
)
MAX_WORKERS = Field.for_setting(options.MAX_WORKERS, "Most worker threads the pool runs.")
QUEUE_CAPACITY = Field.for_setting(
    options.QUEUE_CAPACITY,
    "Most tasks waiting to start; 0 for none (a task starts at once or is rejected); "
    "null for an unbounded queue.",
)
REJECTION_POLICY = Field(
    "rejection_policy",
    "string",
    "What happens to a task submitted while the queue is full.",
    choices=REJECTION_POLICIES,
    checker=options.check_rejection_policy,
)
QUEUE_TIMEOUT = Field.for_setting(
    options.QUEUE_TIMEOUT,
    "Seconds a task may wait before starting; it is cancelled after that. Null: no limit.",
)
RUN_TIMEOUT = Field.for_setting(
    options.RUN_TIMEOUT,
    "Seconds a task may run before it is marked overdue and asked to cancel. Null: no limit.",
)
PAUSED = Field("paused", "boolean", "true pauses the pool (nothing new starts), false resumes it.")
HISTORY_SIZE = Field.for_setting(
    options.HISTORY_SIZE, "Finished tasks kept for inspection per pool; 0 keeps none."
)
KIND = Field(
    "kind",
    "string",
    'Where the tasks run: "thread" (the default), the pool\'s own worker threads; '
    '"process", one worker process per worker. The options marked "kind process" '
    "apply to that kind only; another kind refuses them.",
    choices=tuple(KINDS),
    checker=check_kind_name,
    default="thread",
)
MAX_TASKS_PER_CHILD = Field.for_setting(
    options.MAX_TASKS_PER_CHILD,
    "Kind process: tasks a worker process runs before it is replaced; null: it lives as "
    "long as its worker.",
)
ON_RUN_TIMEOUT = Field(
    "on_run_timeout",
    "string",
    'Kinds process and dask: what a task past its run_timeout gets. "request" (the '
    'default): a cooperative cancel request; "kill": its worker process is killed and '
    "replaced (process), or Dask cancels it (dask); the task ends cancelled.",
    choices=options.ON_RUN_TIMEOUT,
    checker=options.check_on_run_timeout,
)
MP_CONTEXT = Field(
    "mp_context",
    "string",
    "Kind process: the multiprocessing start method of the worker processes; null: "
    '"forkserver" where the platform has it, else "spawn".',
    nullable=True,
    choices=tuple(multiprocessing.get_all_start_methods()),
    checker=options.check_start_method,
)
DASK_ADDRESS = Field(
    "address",
    "string",
    'Kind dask: the scheduler\'s address, such as "tcp://10.0.0.5:8786". Only in the '
    "config file: a request over HTTP cannot make the service connect somewhere.",
    max_length=1024,
    checker=options.check_dask_address,
)
#: The options of one kind, as ``create_pool(kind=..., **kind_options)`` takes them.
KIND_OPTIONS = (MAX_TASKS_PER_CHILD, ON_RUN_TIMEOUT, MP_CONTEXT)
#: ... and those only a config file may give.
FILE_KIND_OPTIONS = (*KIND_OPTIONS, DASK_ADDRESS)

POOL_CREATE = _fields(
    NAME,
    dataclasses.replace(MAX_WORKERS, required=True),
    QUEUE_CAPACITY,
    REJECTION_POLICY,
    QUEUE_TIMEOUT,
    RUN_TIMEOUT,
    HISTORY_SIZE,
    KIND,
    *KIND_OPTIONS,
)
POOL_PATCH = _fields(
    MAX_WORKERS, QUEUE_CAPACITY, REJECTION_POLICY, QUEUE_TIMEOUT, RUN_TIMEOUT, PAUSED
)
TASK_SUBMIT = _fields(
    Field(
        "task",
        "string",
        "A registered task name (see GET /api/task-types).",
        required=True,
        max_length=128,
    ),
    Field("args", "array", "Positional arguments (JSON values)."),
    Field("kwargs", "object", "Keyword arguments (JSON values)."),
)
TASK_QUERY = _fields(
    Field("pool", "string", "Only tasks of this pool.", pattern=POOL_NAME_PATTERN),
    Field("state", "string", "Only tasks in this state.", choices=TASK_STATES),
    Field("name", "string", "Only tasks with this exact task name.", max_length=256),
    Field("page", "integer", "Page number, from 1.", minimum=1, maximum=1_000_000_000, default=1),
    Field(
        "per_page",
        "integer",
        "Tasks per page.",
        minimum=1,
        maximum=MAX_PER_PAGE,
        default=20,
    ),
)
DELETE_QUERY = _fields(
    Field(
        "cancel_pending",
        "boolean",
        "Cancel queued tasks instead of letting them run before the pool goes.",
        default=False,
    )
)


def parse_query(params: QueryParams, fields: Mapping[str, Field]) -> dict[str, Any]:
    """Check a query string: unknown or repeated parameters, then each value."""
    unknown = [key for key in params if key not in fields]
    if unknown:
        names = ", ".join(unknown)
        allowed = ", ".join(fields) or "none"
        raise FieldError(
            unknown[0],
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {names} "
            f"(allowed: {allowed})",
        )
    values: dict[str, Any] = {}
    for key in params:
        raw = params.getlist(key)
        if len(raw) > 1:
            raise FieldError(key, f"query parameter {key} was given {len(raw)} times; give it once")
        values[key] = fields[key].parse_query(raw[0])
    return values


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A checked ``GET /api/tasks`` query."""

    pool: str | None
    state: str | None
    name: str | None
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def parse_task_query(params: QueryParams) -> TaskQuery:
    values = parse_query(params, TASK_QUERY)
    return TaskQuery(
        pool=values.get("pool"),
        state=values.get("state"),
        name=values.get("name"),
        page=values.get("page", 1),
        per_page=values.get("per_page", 20),
    )


def parse_body(data: Any, fields: Mapping[str, Field]) -> dict[str, Any]:
    """Check a decoded JSON body against ``fields``."""
    return check_object(data, fields)


# -- task arguments -------------------------------------------------------------------

_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def _expected_types(annotation: Any) -> tuple[str, tuple[type, ...]] | None:
    """The JSON-checkable types behind a simple annotation (``int``, ``"float"``), else None."""
    if isinstance(annotation, str):
        key = annotation.strip()
    elif isinstance(annotation, type):
        key = annotation.__name__
    else:
        return None
    types = _SIMPLE_TYPES.get(key)
    return (key, types) if types is not None else None


def bind_task_arguments(task_type: TaskType, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Check ``args``/``kwargs`` against the task's signature before it is queued.

    Arity and names come from ``Signature.bind``; parameters annotated with a simple
    type (int, float, str, bool, list, dict) must also have a JSON value of that type.
    """
    try:
        bound = task_type.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise FieldError(
            "args", f"arguments do not fit task {task_type.name}{task_type.signature}: {exc}"
        ) from None
    for pname, value in bound.arguments.items():
        param = task_type.signature.parameters[pname]
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        expected = _expected_types(param.annotation)
        if expected is None:
            continue
        type_name, types = expected
        wrong_bool = isinstance(value, bool) and bool not in types
        if not isinstance(value, types) or wrong_bool:
            raise FieldError(
                pname,
                f"argument {pname} of task {task_type.name} must be {type_name}, got {show(value)}",
            )
