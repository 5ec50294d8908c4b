"""Codes of the task states, as the pool, its records and its history store them."""

from __future__ import annotations

__all__ = ["CANCELLED", "FAILED", "FINISHED", "LIVE", "N_STATES", "QUEUED", "RUNNING", "SUCCEEDED"]

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = range(5)
N_STATES = 5
LIVE = frozenset({QUEUED, RUNNING})
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})
