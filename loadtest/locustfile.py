"""Locust users for the HTTP load test; ``loadtest/load.py`` runs them one tag at a time.

Tags (one endpoint each, so each run measures one thing):

- ``list_pools``: ``GET /api/pools``
- ``list_tasks``: ``GET /api/tasks?per_page=20``
- ``submit``: ``POST /api/pools/bench/tasks`` (the ``bench`` pool is created by load.py)
- ``metrics``: ``GET /metrics``
- ``trivial``: ``GET /trivial``, the baseline: a bare Starlette JSON endpoint
- ``healthz``: ``GET /healthz``, a JSON endpoint as trivial, served by poolwatch's own
  process (under the same pool load as the API), behind its middleware

``LOADTEST_USER_RPS`` paces each user to that many requests per second on average, with
exponentially distributed waits (for latency at a known load): arrivals then form a
Poisson process, as independent clients do. Fixed-interval pacing would fire every
user's request in the same instant after a common start, and measure the queue of that
burst rather than the server. Unset, users send back to back (for capacity).

Used on its own: ``locust -f loadtest/locustfile.py -H http://127.0.0.1:8000 -T list_pools``.
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, constant, tag, task

SUBMIT_BODY = {"task": "demo.sleep", "args": [0]}
USER_RPS = float(os.environ.get("LOADTEST_USER_RPS", "0") or 0)


def poisson_arrivals(rps: float) -> object:
    """A locust ``wait_time``: exponential waits with mean ``1 / rps`` seconds."""

    def wait_time(user: FastHttpUser) -> float:
        return random.expovariate(rps)

    return wait_time


class PoolwatchUser(FastHttpUser):
    """One request type per run (selected by tag), paced or back to back."""

    wait_time = poisson_arrivals(USER_RPS) if USER_RPS > 0 else constant(0)

    @tag("list_pools")
    @task
    def list_pools(self) -> None:
        self.client.get("/api/pools", name="GET /api/pools")

    @tag("list_tasks")
    @task
    def list_tasks(self) -> None:
        self.client.get("/api/tasks?per_page=20", name="GET /api/tasks")

    @tag("submit")
    @task
    def submit(self) -> None:
        self.client.post(
            "/api/pools/bench/tasks", json=SUBMIT_BODY, name="POST /api/pools/{name}/tasks"
        )

    @tag("metrics")
    @task
    def metrics(self) -> None:
        self.client.get("/metrics", name="GET /metrics")

    @tag("healthz")
    @task
    def healthz(self) -> None:
        self.client.get("/healthz", name="GET /healthz (same process)")

    @tag("trivial")
    @task
    def trivial(self) -> None:
        self.client.get("/trivial", name="GET /trivial (baseline)")
