"""poolwatch: observable, controllable thread pools for Python services.

``PoolManager`` owns named ``ManagedPool``s, drop-in ``concurrent.futures`` executors
whose every task is counted, timed, traced and kept in a bounded history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import PoolExistsError, RejectedError, TaskCancelledError
from .future import TaskFuture, current_task
from .manager import PoolManager
from .pool import ManagedPool
from .records import PoolState, PoolStats, TaskInfo, TaskPage, TaskState
from .stacks import StackFrame, TaskStack
from .tasks import TaskType, task

if TYPE_CHECKING:
    from .http import create_app

__all__ = [
    "ManagedPool",
    "PoolExistsError",
    "PoolManager",
    "PoolState",
    "PoolStats",
    "RejectedError",
    "StackFrame",
    "TaskCancelledError",
    "TaskFuture",
    "TaskInfo",
    "TaskPage",
    "TaskStack",
    "TaskState",
    "TaskType",
    "__version__",
    "create_app",
    "current_task",
    "task",
]


def __getattr__(name: str) -> Any:
    # The web layer (Starlette) is imported only by those who use it.
    if name == "create_app":
        from .http import create_app

        return create_app
    raise AttributeError(f"module 'poolwatch' has no attribute {name!r}")
