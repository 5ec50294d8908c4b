"""A process file of a multi-process server: its format, its writer, how files add up.

Each process of a server (gunicorn or ``uvicorn --workers``) writes its own numbers to
one file in the directory named by ``PROMETHEUS_MULTIPROC_DIR`` (see ``multiproc.py``):
a JSON header line (who wrote it, its pools' stats), then poolwatch's families as
``/metrics`` renders them, then ``# EOF``. Files add up the way prometheus_client's own
multiprocess mode adds up its ``*.db`` files:

- counters and histograms are summed over every process that ever published, including
  processes that have exited, so they never go down when a worker is replaced;
- gauges count only live processes: summed for quantities (workers, queued tasks, ...),
  the maximum for values that summing would garble (the age of the oldest queued task,
  and the 0/1 state, info and build gauges).

A process is live while its file does not say it exited and its pid runs the process
that wrote it (same start time, not a zombie).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

__all__ = [
    "COUNTER_FIELDS",
    "FILE_GLOB",
    "FORMAT",
    "GAUGE_FIELDS",
    "POOL_FIELDS",
    "Family",
    "ProcessRecord",
    "format_record",
    "merge_families",
    "parse_record",
    "parse_text",
    "process_alive",
    "process_start_ticks",
    "render_families",
    "warn_once",
]

log = logging.getLogger("poolwatch")

FORMAT = 1  # the "format" field of a process file; files of another format are skipped
FILE_GLOB = "poolwatch_*.json"

# Fields of PoolStats a process file carries per pool, by how they add up server-wide.
COUNTER_FIELDS = (
    "submitted",
    "succeeded",
    "failed",
    "cancelled",
    "rejected",
    "queue_timeouts",
    "run_timeouts",
)
GAUGE_FIELDS = ("max_workers", "workers", "active", "idle", "queued", "overdue")

# Gauges whose server-wide value is the largest over live processes, not the sum.
_LIVE_MAX = frozenset(
    {
        "poolwatch_pool_oldest_queued_seconds",
        "poolwatch_pool_state",
        "poolwatch_pool_info",
        "poolwatch_build_info",
    }
)
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})

Family = tuple[str, str, str, list[tuple[str, float]]]  # name, type, HELP line, samples


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """One process file, checked: who wrote it and the numbers it published."""

    pid: int
    started: int | None  # the process's start time in clock ticks (Linux), if known
    exited: bool  # written at exit: the process's gauges no longer count
    published_at: float
    # poolwatch's families as /metrics renders them; samples are (the line up to its
    # value, the value): the same series render the same line in every process
    families: list[Family]
    pools: list[tuple[str, str, list[float]]]  # name, state, POOL_FIELDS values
    # The processes the file stands for: 1, or many for the file of gone processes'
    # sum, which also names the files it folded in (see gone.py).
    processes: int = 1
    folded: tuple[str, ...] = ()


POOL_FIELDS = (*COUNTER_FIELDS, *GAUGE_FIELDS, "oldest_queued_age")


# -- one file: a JSON header line, then the exposition text, then "# EOF" -----------------


def format_record(header: dict[str, Any], text: str) -> bytes:
    """A process file: ``header`` (one JSON line) and ``text`` (poolwatch's families)."""
    body = text.encode()
    head = json.dumps({**header, "format": FORMAT, "length": len(body)}, separators=(",", ":"))
    return head.encode() + b"\n" + body + _EOF


_EOF = b"# EOF\n"


def parse_record(raw: bytes) -> ProcessRecord:
    """A process file's content, checked; ``ValueError`` saying what is wrong."""
    head, newline, rest = raw.partition(b"\n")
    try:
        doc = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the first line is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError("the first line is not a JSON object")
    if doc.get("format") != FORMAT:
        raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
    pid, started, length = doc.get("pid"), doc.get("started"), doc.get("length")
    if not _is_int(pid) or not (started is None or _is_int(started)) or not _is_int(length):
        raise ValueError("pid, started and length must be integers")
    if not newline or len(rest) != length + len(_EOF) or not rest.endswith(_EOF):
        raise ValueError(f"the text is not {length} bytes and an EOF line: cut short?")
    published_at = doc.get("published_at")
    if not _is_number(published_at) or not isinstance(doc.get("exited"), bool):
        raise ValueError("published_at must be a number and exited a boolean")
    try:
        text = rest[:length].decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"the text is not UTF-8 ({exc})") from None
    pools = [_pool(p) for p in _list(doc.get("pools"), "pools")]
    processes, folded = doc.get("processes", 1), _list(doc.get("folded", []), "folded")
    if not _is_int(processes) or processes < 0 or not all(isinstance(f, str) for f in folded):
        raise ValueError("processes must be a count and folded a list of file names")
    return ProcessRecord(
        pid,
        started,
        doc["exited"],
        float(published_at),
        parse_text(text),
        pools,
        processes,
        tuple(folded),
    )


def parse_text(text: str) -> list[Family]:
    """Prometheus text (as ``render_pool_families`` writes it) as families of samples."""
    families: list[Family] = []
    help_line = ""
    samples: list[tuple[str, float]] | None = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            help_line = line
        elif line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in _TYPES:
                raise ValueError(f"a bad TYPE line: {line[:80]!r}")
            samples = []
            families.append((parts[2], parts[3], help_line, samples))
        elif line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            if samples is None or not key:
                raise ValueError(f"a sample outside a family: {line[:80]!r}")
            try:
                samples.append((key, float(value)))
            except ValueError:
                raise ValueError(f"a sample without a number: {line[:80]!r}") from None
    return families


def _pool(item: Any) -> tuple[str, str, list[float]]:
    if not (isinstance(item, list) and len(item) == 2 + len(POOL_FIELDS)):
        raise ValueError(f"a pool is not [name, state, {', '.join(POOL_FIELDS)}]")
    name, state, *values = item
    if not isinstance(name, str) or not isinstance(state, str):
        raise ValueError("a pool has no name or state")
    if not all(_is_number(v) for v in values):
        raise ValueError(f"pool {name!r} has a value that is not a number")
    return name, state, values


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- is the writer still running? ----------------------------------------------------------


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot); ``None`` where unknown.

    Read from ``/proc/<pid>/stat`` (Linux). Together with the pid it names one process
    for its whole life, so a pid reused by a later process is told apart.
    """
    stat = _proc_stat(pid)
    if stat is None:
        return None
    try:
        return int(stat[19])
    except (IndexError, ValueError):
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_alive(pid: int, started: int | None) -> bool:
    """True while ``pid`` runs the process that started at ``started`` (if known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: the pid is all there is to go by
    if stat[0] in {"Z", "X"}:
        return False  # exited, not yet reaped by its parent
    return started is None or process_start_ticks(pid) == started


_reported_lock = threading.Lock()
_reported: set[tuple[Any, ...]] = set()


def warn_once(key: tuple[Any, ...], message: str, *args: Any) -> None:
    """Log a warning the first time ``key`` is seen (a bounded memory of keys)."""
    with _reported_lock:
        if key in _reported:
            return
        if len(_reported) > 1000:
            _reported.clear()
        _reported.add(key)
    log.warning(message, *args)


def merge_families(records: list[tuple[ProcessRecord, bool]]) -> list[Family]:
    """The families of every process added up (see the module's docstring)."""
    merged: dict[str, tuple[str, str, dict[str, float]]] = {}
    for record, live in records:
        for name, typ, help_line, samples in record.families:
            entry = merged.get(name)
            if entry is None:
                entry = merged[name] = (typ, help_line, {})
            if entry[0] != typ or (typ == "gauge" and not live):
                continue  # a family whose type changed across versions keeps the first
            values = entry[2]
            if typ == "gauge" and name in _LIVE_MAX:
                for key, value in samples:
                    values[key] = max(values.get(key, value), value)
            else:
                for key, value in samples:
                    values[key] = values.get(key, 0.0) + value
    return [(name, typ, h, list(values.items())) for name, (typ, h, values) in merged.items()]


def render_families(families: list[Family], openmetrics: bool) -> str:
    """Merged families as Prometheus text 0.0.4, or OpenMetrics (without ``# EOF``)."""
    out: list[str] = []
    for name, typ, help_line, samples in families:
        shown, said = name, help_line
        if openmetrics and typ == "counter" and name.endswith("_total"):
            shown = name[: -len("_total")]  # OpenMetrics names a counter without it
            said = help_line.replace(f"# HELP {name} ", f"# HELP {shown} ", 1)
        if said:
            out.append(said)
        out.append(f"# TYPE {shown} {typ}")
        out.extend(f"{key} {_number(value)}" for key, value in samples)
    return "\n".join(out) + "\n" if out else ""


def _number(value: float) -> str:
    if value.is_integer():
        return f"{int(value)}.0"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _after_fork_in_child() -> None:
    global _reported_lock
    _reported_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
