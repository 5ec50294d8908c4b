"""The bounded history of finished tasks, one per pool.

Finished tasks are kept in parallel typed arrays used as a ring: about 60 bytes a task,
no Python object per task, and nothing that belongs to the user (functions, arguments,
results) is ever held. Only failed tasks carry an error record (``error_info``), in a
sparse dict.

Not thread-safe on its own: the owning pool calls it under its lock.
"""

from __future__ import annotations

import math
import traceback
from array import array
from dataclasses import dataclass
from typing import Any

from .states import N_STATES

__all__ = ["ErrorInfo", "History", "error_info"]

NAN = math.nan

_TRACEBACK_LIMIT = 8192  # characters kept of a failed task's traceback
_MESSAGE_LIMIT = 2048
_FIRST_CHUNK = 64  # slots reserved by the first append; then the arrays double


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What a failed task raised: type name, message and a bounded traceback."""

    type: str
    message: str
    traceback: str


def error_info(exc: BaseException) -> ErrorInfo:
    """What a failed task raised. Never raises: the exception's own code runs here (its
    ``__str__`` may raise anything, even KeyboardInterrupt), and the task must still end."""
    try:
        message = str(exc)
    except BaseException:
        message = "<the exception's __str__ failed>"
    try:
        # Skip the worker's own frame: the traceback starts in the task's code.
        frames = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        tb = "".join(traceback.format_exception(type(exc), exc, frames))
    except BaseException:
        tb = ""
    if len(tb) > _TRACEBACK_LIMIT:
        tb = "...\n" + tb[-_TRACEBACK_LIMIT:]
    return ErrorInfo(type(exc).__qualname__, message[:_MESSAGE_LIMIT], tb)


class History:
    """A ring of the last ``capacity`` finished tasks, in the order they finished."""

    __slots__ = (
        "_counts",
        "_errors",
        "_finished",
        "_flags",
        "_kind",
        "_seq",
        "_stacks",
        "_started",
        "_state",
        "_submitted",
        "_trace",
        "_worker",
        "appended",
        "capacity",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.appended = 0  # ever appended; the next slot is appended % capacity
        self._seq = array("q")
        self._kind = array("i")
        self._worker = array("i")
        self._state = bytearray()
        self._flags = bytearray()
        self._submitted = array("d")
        self._started = array("d")
        self._finished = array("d")
        self._trace = array("Q")  # two words a task: high and low half of the trace id
        self._errors: dict[int, ErrorInfo] = {}
        self._stacks: dict[int, Any] = {}  # the stacks of tasks that overran, by slot
        # Entries held, by kind * N_STATES + state: totals for filtered pages in O(kinds).
        self._counts: list[int] = []

    def __len__(self) -> int:
        return min(self.appended, self.capacity)

    def append(
        self,
        seq: int,
        kind: int,
        state: int,
        worker: int,
        submitted: float,
        started: float,
        finished: float,
        trace_id: int,
        cancel_requested: bool,
        error: ErrorInfo | None,
        overdue_stack: Any = None,
    ) -> None:
        """Record a finished task, evicting the oldest entry when full.

        ``started`` is NaN for a task that never started; ``trace_id`` 0 for none.
        One path for every append: the arrays grow in chunks ahead of use, so a slot is
        always written in place (this runs under the pool's lock for every task).
        """
        n = self.appended
        cap = self.capacity
        if n < cap:
            slot = n
            if slot == len(self._seq):
                self._reserve(min(cap, max(_FIRST_CHUNK, 2 * slot)))
        elif cap == 0:  # history_size=0 keeps none
            return
        else:
            slot = n % cap
            # Evict the oldest entry.
            self._counts[self._kind[slot] * N_STATES + self._state[slot]] -= 1
            if self._errors or self._stacks:
                self._errors.pop(slot, None)
                self._stacks.pop(slot, None)
            if self._trace[2 * slot] or self._trace[2 * slot + 1]:
                self._trace[2 * slot] = self._trace[2 * slot + 1] = 0
        self.appended = n + 1
        i = kind * N_STATES + state
        try:
            self._counts[i] += 1
        except IndexError:  # a kind not seen before: a row of counts for it
            self._counts.extend([0] * ((kind + 1) * N_STATES - len(self._counts)))
            self._counts[i] += 1
        self._seq[slot] = seq
        self._kind[slot] = kind
        self._worker[slot] = worker
        self._state[slot] = state
        self._flags[slot] = cancel_requested
        self._submitted[slot] = submitted
        self._started[slot] = started
        self._finished[slot] = finished
        if trace_id:
            self._trace[2 * slot] = trace_id >> 64
            self._trace[2 * slot + 1] = trace_id & 0xFFFF_FFFF_FFFF_FFFF
        if error is not None:
            self._errors[slot] = error
        if overdue_stack is not None:
            self._stacks[slot] = overdue_stack

    def _reserve(self, size: int) -> None:
        """Grow every array to ``size`` slots (zeros past the entries held)."""
        more = size - len(self._seq)
        for column in (self._seq, self._kind, self._worker, self._submitted, self._started,
                       self._finished):  # fmt: skip
            column.extend(array(column.typecode, bytes(more * column.itemsize)))
        self._trace.extend(array("Q", bytes(16 * more)))
        zeros = bytes(more)
        self._state += zeros
        self._flags += zeros

    def row(self, slot: int) -> tuple[Any, ...]:
        """A slot's fields: seq, kind, state, worker, submitted, started (or None),
        finished, trace id (0 for none), cancel requested, error (or None), overdue
        stack (or None)."""
        started = self._started[slot]
        return (
            self._seq[slot],
            self._kind[slot],
            self._state[slot],
            self._worker[slot],
            self._submitted[slot],
            None if math.isnan(started) else started,
            self._finished[slot],
            (self._trace[2 * slot] << 64) | self._trace[2 * slot + 1],
            bool(self._flags[slot]),
            self._errors.get(slot),
            self._stacks.get(slot),
        )

    def find(self, seq: int) -> int | None:
        """The slot of task ``seq``, or ``None`` if it was never here or was evicted."""
        if seq <= 0:  # never a task's number; the slots reserved ahead of use hold 0
            return None
        try:
            return self._seq.index(seq)  # a scan in C: about 1 ms per million entries
        except ValueError:
            return None

    def seq_at(self, slot: int) -> int:
        return self._seq[slot]

    def state_at(self, slot: int) -> int:
        return self._state[slot]

    def kind_at(self, slot: int) -> int:
        return self._kind[slot]

    def finished_at(self, slot: int) -> float:
        return self._finished[slot]

    def count(self, *, kinds: list[int] | None = None, states: list[int] | None = None) -> int:
        """How many entries are held with a kind in ``kinds`` and a state in ``states``."""
        counts = self._counts
        n_kinds = len(counts) // N_STATES
        total = 0
        for k in range(n_kinds) if kinds is None else kinds:
            if k >= n_kinds:
                continue
            base = k * N_STATES
            for s in range(N_STATES) if states is None else states:
                total += counts[base + s]
        return total
