"""Checks of pool settings, shared by ``create_pool`` and ``configure``.

Each check names the setting, the rule and the value it got, so the message can be shown
to a user unchanged (the HTTP API does).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "POOL_NAME_RE",
    "REJECTION_POLICIES",
    "check_history_size",
    "check_max_workers",
    "check_pool_name",
    "check_queue_capacity",
    "check_rejection_policy",
    "check_timeout",
]

POOL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REJECTION_POLICIES = ("abort", "caller_runs", "discard", "discard_oldest")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_pool_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"pool name must be a string, got {type(name).__name__}")
    if not POOL_NAME_RE.fullmatch(name):
        raise ValueError(
            f"pool name must match {POOL_NAME_RE.pattern} (start with a letter or digit, then "
            f"letters, digits, '_', '.', '-'; at most 64 characters), got {name!r}"
        )
    return name


def check_max_workers(value: Any) -> int:
    if not _is_int(value):
        raise TypeError(f"max_workers must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"max_workers must be greater than 0 (an integer >= 1), got {value!r}")
    return int(value)


def check_queue_capacity(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(
            f"queue_capacity must be an integer >= 0, or None for unbounded, got {value!r}"
        )
    if value < 0:
        raise ValueError(
            f"queue_capacity must be an integer >= 0, or None for unbounded, got {value!r}"
        )
    return int(value)


def check_rejection_policy(value: Any) -> str:
    if value not in REJECTION_POLICIES or not isinstance(value, str):
        raise ValueError(
            f"rejection_policy must be one of {', '.join(map(repr, REJECTION_POLICIES))}, "
            f"got {value!r}"
        )
    return value


def check_timeout(setting: str, value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{setting} must be a number of seconds > 0, or None, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{setting} must be a number of seconds > 0, or None, got {value!r}")
    return float(value)


def check_history_size(value: Any) -> int:
    if not _is_int(value):
        raise TypeError(f"history_size must be an integer >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"history_size must be an integer >= 0, got {value!r}")
    return int(value)
