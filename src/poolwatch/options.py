"""The rules for pool settings, stated once.

``create_pool`` and ``configure`` call these checks; the config file and the HTTP API
call the very same ones (``poolwatch.http.schemas`` builds its fields from the
:class:`Setting` objects here), so a value is accepted or refused alike everywhere and
the refusal reads the same. Each message starts with the setting's name, states the
rule and shows the value it got, so it can be shown to a user unchanged; the config
file only puts the key's place in front (``pools[1].max_workers must be ...``).

Bounds, and why:

- ``max_workers``: 1 to 10,000 threads. Past that a pool exhausts the process's thread
  limit long before it does useful work.
- ``queue_capacity``: 0 to 10,000,000, or None for unbounded. 0 means no waiting room:
  a task starts on a free worker at once or meets the rejection policy.
- ``queue_timeout``/``run_timeout``: more than 0 and at most 30 days, or None for no
  limit. Longer waits overflow some platforms' timers.
- ``history_size``: 0 to 1,000,000 finished tasks kept per pool; 0 keeps none (the
  counters still count every task).

Settings of one kind only (``create_pool(kind=..., **kind_options)``):

- ``on_run_timeout``: ``"request"`` (a cooperative cancel request, every kind) or
  ``"kill"`` (also end the task where it runs: its process, for ``kind="process"``; a
  Dask cancel, for ``kind="dask"``).
- ``address`` (dask): the Dask scheduler's address, such as ``"tcp://10.0.0.5:8786"``:
  1 to 1,024 characters, no spaces; None when a ``client`` is given instead.
- ``max_tasks_per_child`` (process): 1 to 1,000,000,000 tasks before a child process is
  replaced, or None for children that live as long as their worker.
- ``mp_context`` (process): a ``multiprocessing`` context or a start method's name
  (``"spawn"``, ``"forkserver"``, ``"fork"``); None picks ``forkserver`` where the
  platform has it, else ``spawn`` (see ``default_mp_context``).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import re
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any, Literal

__all__ = [
    "HISTORY_SIZE",
    "MAX_SECONDS",
    "MAX_TASKS_PER_CHILD",
    "MAX_WORKERS",
    "ON_RUN_TIMEOUT",
    "POOL_NAME_RE",
    "QUEUE_CAPACITY",
    "QUEUE_TIMEOUT",
    "REJECTION_POLICIES",
    "RUN_TIMEOUT",
    "SETTINGS",
    "Setting",
    "bounds_text",
    "check_dask_address",
    "check_history_size",
    "check_max_tasks_per_child",
    "check_max_workers",
    "check_mp_context",
    "check_on_run_timeout",
    "check_pool_name",
    "check_queue_capacity",
    "check_rejection_policy",
    "check_start_method",
    "check_timeout",
    "default_mp_context",
    "show",
]

POOL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REJECTION_POLICIES = ("abort", "caller_runs", "discard", "discard_oldest")
ON_RUN_TIMEOUT = ("request", "kill")
#: The longest timeout accepted (30 days).
MAX_SECONDS = 2_592_000.0


def show(value: Any, limit: int = 60) -> str:
    """A short JSON-like rendering of a value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        try:
            text = repr(value)
        except ValueError:
            if not isinstance(value, int):
                raise
            # Past the interpreter's int-to-text digit limit.
            text = f"an integer of about {int(value.bit_length() * math.log10(2))} digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def bounds_text(
    minimum: float | None, exclusive_minimum: float | None, maximum: float | None
) -> str:
    """Bounds in words: ``> 0 and <= 30``; empty when there are none."""
    bounds = []
    if exclusive_minimum is not None:
        bounds.append(f"> {_num(exclusive_minimum)}")
    if minimum is not None:
        bounds.append(f">= {_num(minimum)}")
    if maximum is not None:
        bounds.append(f"<= {_num(maximum)}")
    return " and ".join(bounds)


@dataclass(frozen=True, slots=True)
class Setting:
    """The rule for one numeric pool setting: its kind, bounds and what None means.

    ``minimum``/``maximum`` are inclusive, ``exclusive_minimum`` strict. ``none_means``
    is set for settings that accept None (null in JSON, left out in a config file).
    ``lead`` replaces the start of the rule's wording where a familiar message exists
    (the stdlib's "max_workers must be greater than 0").
    """

    name: str
    kind: Literal["integer", "number"]
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    none_means: str | None = None
    unit: str = ""
    lead: str = ""

    @property
    def nullable(self) -> bool:
        return self.none_means is not None

    def rule(self) -> str:
        """What a valid value looks like, in words."""
        noun = "an integer" if self.kind == "integer" else "a number"
        if self.unit:
            noun += f" of {self.unit}"
        if self.lead:
            text = f"{self.lead} ({noun}"
            if self.maximum is not None:
                text += f" of at most {_num(self.maximum)}"
            text += ")"
        elif self.minimum is not None and self.maximum is not None:
            text = f"{noun} from {_num(self.minimum)} to {_num(self.maximum)}"
        else:
            bounds = bounds_text(self.minimum, self.exclusive_minimum, self.maximum)
            text = f"{noun} {bounds}".strip()
        if self.none_means is not None:
            text += f", or None (null) for {self.none_means}"
        return text

    def message(self, value: Any) -> str:
        return f"{self.name} must be {self.rule()}, got {show(value)}"

    def check(self, value: Any) -> Any:
        """``value`` checked (integers stay int, numbers become float): TypeError for the
        wrong type, ValueError out of bounds."""
        if value is None:
            if self.none_means is not None:
                return None
            raise TypeError(self.message(value))
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(self.message(value))
        if self.kind == "integer" and not isinstance(value, int):
            raise TypeError(self.message(value))
        # Comparisons of a huge int with these floats are exact and never overflow.
        if (
            (isinstance(value, float) and not math.isfinite(value))
            or (self.minimum is not None and value < self.minimum)
            or (self.exclusive_minimum is not None and value <= self.exclusive_minimum)
            or (self.maximum is not None and value > self.maximum)
        ):
            raise ValueError(self.message(value))
        return int(value) if self.kind == "integer" else float(value)


MAX_WORKERS = Setting("max_workers", "integer", minimum=1, maximum=10_000, lead="greater than 0")
QUEUE_CAPACITY = Setting(
    "queue_capacity", "integer", minimum=0, maximum=10_000_000, none_means="an unbounded queue"
)
QUEUE_TIMEOUT = Setting(
    "queue_timeout",
    "number",
    exclusive_minimum=0,
    maximum=MAX_SECONDS,
    none_means="no limit",
    unit="seconds",
)
RUN_TIMEOUT = Setting(
    "run_timeout",
    "number",
    exclusive_minimum=0,
    maximum=MAX_SECONDS,
    none_means="no limit",
    unit="seconds",
)
HISTORY_SIZE = Setting("history_size", "integer", minimum=0, maximum=1_000_000)
MAX_TASKS_PER_CHILD = Setting(
    "max_tasks_per_child",
    "integer",
    minimum=1,
    maximum=1_000_000_000,
    none_means="children that live as long as their worker",
)

#: Every numeric setting, by name.
SETTINGS = {
    s.name: s
    for s in (
        MAX_WORKERS, QUEUE_CAPACITY, QUEUE_TIMEOUT, RUN_TIMEOUT, HISTORY_SIZE, MAX_TASKS_PER_CHILD,
    )
}  # fmt: skip


def check_pool_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a string matching {POOL_NAME_RE.pattern}, got {show(name)}")
    if not POOL_NAME_RE.fullmatch(name):
        raise ValueError(
            f"name must match {POOL_NAME_RE.pattern} (start with a letter or digit, then "
            f"letters, digits, '_', '.', '-'; at most 64 characters), got {show(name)}"
        )
    return name


def check_max_workers(value: Any) -> int:
    result: int = MAX_WORKERS.check(value)
    return result


def check_queue_capacity(value: Any) -> int | None:
    result: int | None = QUEUE_CAPACITY.check(value)
    return result


def _check_choice(setting: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{setting} must be one of {', '.join(map(json.dumps, choices))}, got {show(value)}"
        )
    return value


def check_rejection_policy(value: Any) -> str:
    return _check_choice("rejection_policy", value, REJECTION_POLICIES)


def check_timeout(setting: str, value: Any) -> float | None:
    """``setting`` is ``"queue_timeout"`` or ``"run_timeout"``."""
    result: float | None = SETTINGS[setting].check(value)
    return result


def check_history_size(value: Any) -> int:
    result: int = HISTORY_SIZE.check(value)
    return result


def check_on_run_timeout(value: Any) -> str:
    return _check_choice("on_run_timeout", value, ON_RUN_TIMEOUT)


def check_max_tasks_per_child(value: Any) -> int | None:
    result: int | None = MAX_TASKS_PER_CHILD.check(value)
    return result


def default_mp_context() -> BaseContext:
    """``forkserver`` where the platform has it, else ``spawn``: never ``fork``, since a
    process pool's parent always runs threads (its workers, the timeout monitor) and a
    child forked from it may inherit a lock some thread held. Python 3.14 made the same
    choice for ``ProcessPoolExecutor``."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def check_start_method(value: Any) -> str | None:
    """``mp_context`` as a config file or HTTP give it: a start method's name, or None
    (the default); refused in the words of ``check_mp_context``."""
    methods = multiprocessing.get_all_start_methods()
    if value is None or (isinstance(value, str) and value in methods):
        return value
    raise ValueError(
        "mp_context must be a multiprocessing context, one of "
        f"{', '.join(map(json.dumps, methods))}, or None (null) for the default, "
        f"got {show(value)}"
    )


_DASK_ADDRESS_LIMIT = 1024


def check_dask_address(value: Any) -> str | None:
    """A Dask scheduler's address (``"tcp://host:8786"``, ``"host:8786"``), or None."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= _DASK_ADDRESS_LIMIT
        or any(c.isspace() for c in value)
    ):
        raise ValueError(
            "address must be a Dask scheduler's address such as 'tcp://10.0.0.5:8786' "
            f"(1 to {_DASK_ADDRESS_LIMIT} characters, no spaces), or None (null), "
            f"got {show(value)}"
        )
    return value


def check_mp_context(value: Any) -> BaseContext:
    """A ``multiprocessing`` context, from a context, a start method's name or None."""
    if isinstance(value, BaseContext):
        return value
    method = check_start_method(value)
    return default_mp_context() if method is None else multiprocessing.get_context(method)
