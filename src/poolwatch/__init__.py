"""poolwatch: observable, controllable thread pools for Python services.

``PoolManager`` owns named pools, drop-in ``concurrent.futures`` executors (on threads,
``ManagedPool``, or worker processes, ``ManagedProcessPool``) whose every task is
counted, timed, traced and kept in a bounded history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import PoolExistsError, RejectedError, TaskCancelledError, TaskInterruptedError
from .executor import (
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    default_manager,
    instrument,
    uninstrument,
)
from .family import PoolFamily
from .future import TaskFuture
from .manager import PoolManager
from .pool import ManagedPool, ManagedProcessPool, PoolBase
from .processes import ProcessCrashedError
from .records import PoolState, PoolStats, TaskInfo, TaskPage, TaskState
from .stacks import StackFrame, TaskStack
from .tasks import TaskType, task
from .work import WorkItem, cancel_requested, current_task, raise_if_cancel_requested

if TYPE_CHECKING:
    from .config import load_config
    from .http import ServeError, ServiceHandle, create_app, start_service

__all__ = [
    "ManagedPool",
    "ManagedProcessPool",
    "PoolBase",
    "PoolExistsError",
    "PoolFamily",
    "PoolManager",
    "PoolState",
    "PoolStats",
    "ProcessCrashedError",
    "ProcessPoolExecutor",
    "RejectedError",
    "ServeError",
    "ServiceHandle",
    "StackFrame",
    "TaskCancelledError",
    "TaskFuture",
    "TaskInfo",
    "TaskInterruptedError",
    "TaskPage",
    "TaskStack",
    "TaskState",
    "TaskType",
    "ThreadPoolExecutor",
    "WorkItem",
    "__version__",
    "cancel_requested",
    "create_app",
    "current_task",
    "default_manager",
    "instrument",
    "load_config",
    "raise_if_cancel_requested",
    "start_service",
    "task",
    "uninstrument",
]


_WEB_NAMES = frozenset({"create_app", "start_service", "ServiceHandle", "ServeError"})


def __getattr__(name: str) -> Any:
    # The web layer (Starlette, uvicorn) is imported only by those who use it.
    if name in _WEB_NAMES:
        from . import http

        return getattr(http, name)
    if name == "load_config":
        from .config import load_config

        return load_config
    raise AttributeError(f"module 'poolwatch' has no attribute {name!r}")
