"""``poolwatch demo --dask [ADDRESS]``: the demo's ``dask`` pool, on a Dask cluster.

Without an address the demo starts a ``LocalCluster`` of two worker processes (one
thread each) on loopback and closes it when it stops; with one (the compose stack passes
``tcp://dask-scheduler:8786``) the pool connects to that scheduler and owns only its
client. The pool (kind ``dask``, 8 tasks in flight) gets ``demo.crunch``, CPU-bound work
threads cannot speed up, from the demo's load generator. The workers import
``poolwatch.demo`` to run it: they need poolwatch installed (the compose stack's workers
run the poolwatch image).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import LocalCluster

    from poolwatch.manager import PoolManager

__all__ = ["LOCAL", "POOL", "local_cluster", "start_dask_pool"]

#: ``--dask`` given without an address: a LocalCluster started by the demo.
LOCAL = "local"
POOL = "dask"
IN_FLIGHT = 8


def local_cluster() -> LocalCluster:
    """A Dask ``LocalCluster`` of two worker processes of one thread each, on loopback,
    without a dashboard (the demo's, the tests' and the benchmark's)."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
        # The scheduler's HTTP server (/health, /metrics) on a free port rather than
        # 8787, which another cluster on the machine may hold.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )  # fmt: skip


def start_dask_pool(manager: PoolManager, target: str) -> Callable[[], None]:
    """Create the demo's ``dask`` pool on ``target`` (an address, or ``LOCAL``); returns
    what stops it and the cluster the demo started, if any. ``ImportError`` without the
    ``[dask]`` extra, with the command that installs it."""
    try:
        import distributed  # noqa: F401  (only whether it is there)
    except ImportError:
        raise ImportError(
            "--dask needs the distributed package: pip install 'poolwatch[dask]'"
        ) from None
    cluster = None
    address = target
    if target == LOCAL:
        cluster = local_cluster()
        address = cluster.scheduler_address
    try:
        pool = manager.create_pool(POOL, kind="dask", address=address, max_workers=IN_FLIGHT)
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise

    def stop() -> None:
        # Tasks in flight end first (queued ones are cancelled), then the pool's client
        # closes, then the cluster it ran on.
        pool.shutdown(wait=True, cancel_futures=True)
        if cluster is not None:
            cluster.close()

    return stop
