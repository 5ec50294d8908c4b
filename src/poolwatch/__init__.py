"""poolwatch: observable, controllable thread pools for Python services.

``PoolManager`` owns named ``ManagedPool``s, drop-in ``concurrent.futures`` executors
whose every task is counted, timed, traced and kept in a bounded history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import PoolExistsError, RejectedError, TaskCancelledError
from .executor import ThreadPoolExecutor, default_manager, instrument, uninstrument
from .family import PoolFamily
from .future import TaskFuture
from .manager import PoolManager
from .pool import ManagedPool
from .records import PoolState, PoolStats, TaskInfo, TaskPage, TaskState
from .stacks import StackFrame, TaskStack
from .tasks import TaskType, task
from .work import WorkItem, cancel_requested, current_task, raise_if_cancel_requested

if TYPE_CHECKING:
    from .config import load_config
    from .http import create_app

__all__ = [
    "ManagedPool",
    "PoolExistsError",
    "PoolFamily",
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
    "task",
    "uninstrument",
]


def __getattr__(name: str) -> Any:
    # The web layer (Starlette) is imported only by those who use it.
    if name == "create_app":
        from .http import create_app

        return create_app
    if name == "load_config":
        from .config import load_config

        return load_config
    raise AttributeError(f"module 'poolwatch' has no attribute {name!r}")
