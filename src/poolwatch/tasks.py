"""Named task types: ``@poolwatch.task`` and the registry used for submission by name.

The registry is process-wide and thread-safe. Decorating a function does not wrap it:
the function is returned unchanged (callable as before), with its task type attached.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["TaskType", "get_task_type", "registered_tasks", "task", "task_name_of"]

F = TypeVar("F", bound=Callable[..., Any])

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
TASK_ATTR = "__poolwatch_task__"  # where @task puts the TaskType on the function
_UNWRAP_LIMIT = 16  # partials of partials followed at most this deep


@dataclass(frozen=True, slots=True)
class TaskType:
    """A registered task: its name, function, default run timeout and signature."""

    name: str
    fn: Callable[..., Any]
    run_timeout: float | None
    signature: inspect.Signature
    description: str


_lock = threading.Lock()
_registry: dict[str, TaskType] = {}


def task(name: str | None = None, *, run_timeout: float | None = None) -> Callable[[F], F]:
    """Name a function as a task type and register it for submission by name over HTTP.

    ``run_timeout`` (seconds) applies to this task type instead of the pool's own.
    Registering a second, different function under a name already taken raises
    ``ValueError``; re-registering the same function (a module reload) is allowed.
    """
    if name is not None and (not isinstance(name, str) or not _NAME_RE.fullmatch(name)):
        raise ValueError(
            f"task name must match {_NAME_RE.pattern} (letters, digits, '_', '.', ':', '-'; "
            f"at most 128 characters), got {name!r}"
        )
    if run_timeout is not None and not (
        isinstance(run_timeout, int | float)
        and not isinstance(run_timeout, bool)
        and run_timeout > 0
    ):
        raise ValueError(
            f"run_timeout must be a number of seconds > 0 or None, got {run_timeout!r}"
        )

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@task decorates a function, got {type(fn).__name__}")
        task_name = name if name is not None else default_name(fn)
        tt = TaskType(
            name=task_name,
            fn=fn,
            run_timeout=float(run_timeout) if run_timeout is not None else None,
            signature=inspect.signature(fn),
            description=inspect.getdoc(fn) or "",
        )
        with _lock:
            old = _registry.get(task_name)
            if old is not None and _qualified(old.fn) != _qualified(fn):
                raise ValueError(
                    f"task name {task_name!r} is already registered for {_qualified(old.fn)}; "
                    "choose another name"
                )
            _registry[task_name] = tt
        setattr(fn, TASK_ATTR, tt)
        return fn

    return decorate


def _qualified(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def default_name(fn: Callable[..., Any]) -> str:
    """The name of an undecorated callable: ``module.qualname`` (or the type's, for objects).

    A ``functools.partial`` is named after the function it wraps. No other attribute is
    followed: a callable object's ``func`` may be anything (a ``Mock`` makes a new one on
    every access).
    """
    for _ in range(_UNWRAP_LIMIT):
        if not isinstance(fn, functools.partial):
            break
        fn = fn.func
    qual = getattr(fn, "__qualname__", None)
    if isinstance(qual, str):
        return f"{getattr(fn, '__module__', None) or '?'}.{qual}"
    kind = type(fn)
    return f"{kind.__module__}.{kind.__qualname__}"


def task_type_of(fn: Callable[..., Any]) -> TaskType | None:
    """The task type attached by ``@task``, or ``None``."""
    tt = getattr(fn, TASK_ATTR, None)
    return tt if isinstance(tt, TaskType) else None


def task_name_of(fn: Callable[..., Any]) -> str:
    """The name a task running ``fn`` gets."""
    tt = task_type_of(fn)
    return tt.name if tt is not None else default_name(fn)


def registered_tasks() -> dict[str, TaskType]:
    """A copy of the registry: name -> task type."""
    with _lock:
        return dict(_registry)


def get_task_type(name: str) -> TaskType:
    """The registered task type ``name``; ``KeyError`` if none."""
    with _lock:
        return _registry[name]
