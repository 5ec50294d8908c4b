"""``poolwatch demo``: pools, tasks and a load generator that make every signal live.

Pools:

- ``io``: 16 workers; tasks sleep 10-200 ms like network calls.
- ``cpu``: 2 workers; busy loops.
- ``flaky``: 4 workers; about one task in five fails with a realistic exception.
- ``bounded``: 2 workers, a queue of 8, policy ``abort``: bursts get rejected.
- ``slow``: 2 workers, run timeout 1 s, queue timeout 4 s: some tasks run past their
  timeout and take a while to stop (overdue tasks, run timeouts), and at the crest of
  each wave the queue grows until tasks time out waiting (queue timeouts).
- ``dask`` (with ``poolwatch demo --dask``): CPU-bound tasks on a Dask cluster
  (``dask_demo.py``).

The tasks are registered (``demo.sleep``, ``demo.crunch``, ``demo.flaky``,
``demo.hang``) so they can be submitted over HTTP too. All of them check
``current_task()`` and stop when a cancel is requested.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from poolwatch.config import PoolConfig
from poolwatch.errors import RejectedError, TaskCancelledError
from poolwatch.tasks import task
from poolwatch.work import current_task

if TYPE_CHECKING:
    from poolwatch.manager import PoolManager

__all__ = ["DEMO_POOLS", "LoadGenerator", "crunch", "flaky", "hang", "sleep"]

logger = logging.getLogger("poolwatch.demo")

DEMO_POOLS = (
    PoolConfig(name="io", max_workers=16),
    PoolConfig(name="cpu", max_workers=2),
    PoolConfig(name="flaky", max_workers=4),
    PoolConfig(name="bounded", max_workers=2, queue_capacity=8, rejection_policy="abort"),
    PoolConfig(name="slow", max_workers=2, run_timeout=1.0, queue_timeout=4.0),
)

_MAX_SECONDS = 300.0
_MAX_N = 50_000_000


def _seconds(name: str, value: float) -> float:
    if not 0 <= value <= _MAX_SECONDS:
        raise ValueError(f"{name} must be between 0 and {_MAX_SECONDS:g} seconds, got {value!r}")
    return value


def _cooperative_sleep(seconds: float) -> None:
    """Sleep ``seconds`` in short slices, raising TaskCancelledError once a cancel is asked."""
    ctx = current_task()
    deadline = time.monotonic() + seconds
    while True:
        if ctx is not None:
            ctx.raise_if_cancel_requested()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.02))


@task("demo.sleep")
def sleep(seconds: float = 0.05) -> float:
    """Wait like an I/O call (a network request, a query) and return the seconds waited."""
    _cooperative_sleep(_seconds("seconds", seconds))
    return seconds


@task("demo.crunch")
def crunch(n: int = 200_000) -> int:
    """Busy CPU work: the sum of squares below ``n`` (checks for cancel every 10,000 steps)."""
    if not 0 <= n <= _MAX_N:
        raise ValueError(f"n must be between 0 and {_MAX_N}, got {n!r}")
    ctx = current_task()
    total = 0
    for start in range(0, n, 10_000):
        if ctx is not None:
            ctx.raise_if_cancel_requested()
        total += sum(i * i for i in range(start, min(start + 10_000, n)))
    return total


_FAILURES: tuple[Callable[[], Exception], ...] = (
    lambda: ConnectionResetError(104, "Connection reset by peer"),
    lambda: TimeoutError("upstream payments-api did not answer within 2.0s"),
    lambda: ValueError("malformed record at offset 812: expected ',' or '}'"),
    lambda: KeyError("customer_id"),
)


@task("demo.flaky")
def flaky(fail_ratio: float = 0.2, seconds: float = 0.05) -> str:
    """Call an unreliable upstream: wait ``seconds``, then fail with probability ``fail_ratio``."""
    if not 0 <= fail_ratio <= 1:
        raise ValueError(f"fail_ratio must be between 0 and 1, got {fail_ratio!r}")
    _cooperative_sleep(_seconds("seconds", seconds))
    if random.random() < fail_ratio:
        raise random.choice(_FAILURES)()
    return "ok"


@task("demo.hang")
def hang(seconds: float = 2.0, linger: float = 0.0) -> float:
    """Work that may outlive its run timeout.

    Once asked to stop it takes ``linger`` more seconds to wind down (closing
    connections, say) before it stops, so it shows up as overdue meanwhile.
    """
    _seconds("linger", linger)
    try:
        _cooperative_sleep(_seconds("seconds", seconds))
    except TaskCancelledError:
        time.sleep(linger)
        raise
    return seconds


def create_demo_pools(manager: PoolManager) -> None:
    for pool in DEMO_POOLS:
        manager.create_pool(pool.name, **pool.create_kwargs())


class LoadGenerator:
    """A background thread that submits demo tasks in waves, with periodic bursts.

    The rate of each pool follows a slow sine wave (period ``wave_period`` seconds);
    every ``burst_every`` seconds the ``bounded`` pool gets a burst larger than its
    queue, so rejections show up. :meth:`stop` ends the thread promptly.
    """

    def __init__(
        self,
        manager: PoolManager,
        *,
        wave_period: float = 60.0,
        burst_every: float = 15.0,
        tick: float = 0.1,
        seed: int | None = None,
    ) -> None:
        self.manager = manager
        self.wave_period = wave_period
        self.burst_every = burst_every
        self.tick = tick
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poolwatch-demo-load", daemon=True)
        self._credit: dict[str, float] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _plan(
        self,
    ) -> list[tuple[str, float, Callable[[], tuple[Callable[..., Any], tuple[Any, ...]]]]]:
        """Per pool: tasks per second at the wave's mean, and a maker of (fn, args)."""
        rng = self._rng
        return [
            ("io", 40.0, lambda: (sleep, (rng.uniform(0.01, 0.2),))),
            ("cpu", 4.0, lambda: (crunch, (rng.randrange(20_000, 200_000),))),
            ("flaky", 10.0, lambda: (flaky, (0.2, rng.uniform(0.01, 0.1)))),
            ("bounded", 5.0, lambda: (sleep, (rng.uniform(0.05, 0.3),))),
            ("slow", 1.0, lambda: (hang, (rng.uniform(0.3, 1.6), rng.uniform(0.2, 2.5)))),
            # Only with ``poolwatch demo --dask`` (see dask_demo.py); else skipped.
            ("dask", 8.0, lambda: (crunch, (rng.randrange(20_000, 200_000),))),
        ]

    def _run(self) -> None:
        plan = self._plan()
        began = time.monotonic()
        next_burst = began + min(5.0, self.burst_every)
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            wave = 1.0 + 0.8 * math.sin(2 * math.pi * (now - began) / self.wave_period)
            for name, rate, make in plan:
                credit = self._credit.get(name, 0.0) + rate * wave * self.tick
                count = int(credit)
                self._credit[name] = credit - count
                for _ in range(count):
                    if not self._submit(name, *make()):
                        return
            if now >= next_burst:
                next_burst = now + self.burst_every
                for _ in range(20):
                    if not self._submit("bounded", sleep, (self._rng.uniform(0.1, 0.4),)):
                        return

    def _submit(self, pool_name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
        """Submit one task; ``False`` once the pools are going away."""
        try:
            self.manager.get_pool(pool_name).submit(fn, *args)
        except KeyError:
            return True  # removed over the API: keep feeding the others
        except RejectedError as exc:
            if exc.reason == "shutdown":
                return not self._stop.is_set()
        except RuntimeError:
            return False
        return True
