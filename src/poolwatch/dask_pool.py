"""``DaskPool``: a pool whose tasks run on a Dask distributed cluster (kind ``"dask"``).

``create_pool(name, kind="dask", client=... | address=..., max_workers=..., ...)``. The
pool keeps its queue, capacity, policies, pause, resize, timeouts, records, metrics and
spans; ``max_workers`` bounds its tasks in flight on the cluster (each one waited for by
one of the pool's threads; they go to Dask in batches). See ``dask_backend`` for what
Dask can and cannot stop.

Importing this module does not import Dask: ``distributed`` is imported when a pool of
this kind is made (``pip install 'poolwatch[dask]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .backend import Backend
from .engine import PoolEngine
from .pool import PoolBase

if TYPE_CHECKING:
    from distributed import Client

    from .dask_backend import DaskBackend

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "IN_FLIGHT_PER_THREAD",
    "DaskPool",
    "build_dask",
    "check_client",
    "default_workers",
]

#: Tasks in flight per thread of the cluster when ``max_workers`` is not given: enough
#: that Dask's workers stay busy while results travel back, even for short tasks on a
#: loaded machine (docs/performance.md has the measurements behind it) ...
IN_FLIGHT_PER_THREAD = 32
#: ... up to this many: each task in flight is one of the pool's threads, waiting.
DEFAULT_MAX_IN_FLIGHT = 1024

_NEEDS_EXTRA = "kind 'dask' needs the distributed package: pip install 'poolwatch[dask]'"


class DaskPool(PoolBase):
    """A named, observable pool whose tasks run on a Dask cluster (kind ``"dask"``).

    A ``concurrent.futures.Executor``: ``submit``, ``map``, ``shutdown`` and the context
    manager behave as the stdlib's. Tasks, their arguments and results travel to the
    cluster, so they must pickle (cloudpickle: lambdas and closures do). Thread-safe.

    ``cancel(task_id)`` of a running task (``"requested"``) cancels it on Dask: it ends
    CANCELLED at once and its result is discarded, though a Dask worker already running
    its function lets that finish (Dask does not interrupt Python code).
    """

    def __init__(self, engine: PoolEngine, backend: DaskBackend) -> None:
        super().__init__(engine)
        self._backend = backend

    @property
    def client(self) -> Client:
        """The ``distributed.Client`` the pool submits through (closed at shutdown only if
        the pool made it from an ``address``)."""
        return self._backend.client


def check_client(value: Any) -> Any:
    """A ``distributed.Client``, or None."""
    if value is None:
        return None
    from distributed import Client

    if not isinstance(value, Client):
        raise TypeError(f"client must be a distributed.Client, got {type(value).__name__}")
    return value


def default_workers(client: Client) -> int:
    """``max_workers`` when not given: ``IN_FLIGHT_PER_THREAD`` tasks in flight for each
    thread the cluster has now (at least one thread's worth, for a cluster still
    starting), at most ``DEFAULT_MAX_IN_FLIGHT``."""
    threads: int = sum(client.nthreads().values())
    return min(IN_FLIGHT_PER_THREAD * max(1, threads), DEFAULT_MAX_IN_FLIGHT)


def build_dask(
    make_engine: Callable[..., PoolEngine],
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    kind_options: dict[str, Any],
) -> PoolBase:
    """The pool for ``create_pool(kind="dask", ...)``: exactly one of ``client`` and
    ``address``; a client made from ``address`` belongs to the pool."""
    client, address = kind_options["client"], kind_options["address"]
    if (client is None) == (address is None):
        raise ValueError(
            "a pool of kind 'dask' needs exactly one of client= (a distributed.Client) "
            "or address= (the scheduler's, such as 'tcp://10.0.0.5:8786')"
        )
    if initializer is not None:
        raise TypeError(
            "initializer is not supported for kind 'dask': tasks run on the cluster's "
            "workers; set those up with a Dask WorkerPlugin (client.register_plugin)"
        )
    try:
        from distributed import Client

        from .dask_backend import DaskBackend
    except ImportError as exc:
        raise ImportError(_NEEDS_EXTRA) from exc
    owns = client is None
    if owns:
        # Not the process's default client: code using Dask directly keeps its own.
        client = Client(address, set_as_default=False)
    backend = DaskBackend(client, owns_client=owns)
    runner: Backend = backend  # for the type checker: it is the engine's kind of backend
    try:
        engine = make_engine(
            initializer=None, initargs=(), backend=runner,
            on_run_timeout=kind_options["on_run_timeout"],
            workers_default=lambda: default_workers(client),
        )  # fmt: skip
    except BaseException:
        backend.close()
        raise
    return DaskPool(engine, backend)
