"""Server-wide numbers from the files the processes of a multi-process server publish.

Each process of a server (gunicorn or ``uvicorn --workers``) writes its own numbers to
one file in the directory named by ``PROMETHEUS_MULTIPROC_DIR`` (see ``multiproc.py``).
This module reads those files and merges them, the way prometheus_client's own
multiprocess mode merges its ``*.db`` files:

- counters and histograms are summed over every process that ever published, including
  processes that have exited (their last numbers stay in their files), so they never
  go down when a worker is replaced;
- gauges count only live processes: summed for quantities (workers, queued tasks, ...),
  the maximum for values that summing would garble (the age of the oldest queued task,
  and the 0/1 state, info and build gauges).

A process is live while its file does not say it exited and its pid runs the process
that wrote it (same start time, not a zombie). A file that cannot be read or parsed is
skipped with a log line; the scrape goes on without it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from prometheus_client.core import Metric

__all__ = [
    "COUNTER_FIELDS",
    "FILE_GLOB",
    "FORMAT",
    "GAUGE_FIELDS",
    "ProcessRecord",
    "ServerView",
    "parse_record",
    "process_alive",
    "process_start_ticks",
    "read_server",
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
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "info", "stateset", "unknown"})

Sample = tuple[str, dict[str, str], float]


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """One process file, checked: who wrote it and the numbers it published."""

    pid: int
    started: int | None  # the process's start time in clock ticks (Linux), if known
    exited: bool  # written at exit: the process's gauges no longer count
    published_at: float
    families: list[tuple[str, str, str, list[Sample]]]  # name, type, help, samples
    pools: list[tuple[str, str, dict[str, float]]]  # name, state, PoolStats fields


@dataclass(frozen=True, slots=True)
class ServerView:
    """The whole server as one process sees it when answering a request."""

    pid: int  # the process that answered
    processes: int  # processes counted (every readable file, the answering one included)
    live_processes: int
    unreadable: int  # files skipped because they could not be read or parsed
    families: list[Metric]
    totals: dict[str, Any]  # /api/stats numbers: see merge_totals


# -- reading one file ---------------------------------------------------------------------


def parse_record(raw: bytes) -> ProcessRecord:
    """A process file's content, checked; ``ValueError`` saying what is wrong."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("format") != FORMAT:
        raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
    pid, started = doc.get("pid"), doc.get("started")
    if not _is_int(pid) or not (started is None or _is_int(started)):
        raise ValueError("pid and started must be integers")
    published_at = doc.get("published_at")
    if not _is_number(published_at) or not isinstance(doc.get("exited"), bool):
        raise ValueError("published_at must be a number and exited a boolean")
    return ProcessRecord(
        pid,
        started,
        doc["exited"],
        float(published_at),
        [_family(f) for f in _list(doc.get("families"), "families")],
        [_pool(p) for p in _list(doc.get("pools"), "pools")],
    )


def _family(item: Any) -> tuple[str, str, str, list[Sample]]:
    if not isinstance(item, dict):
        raise ValueError("a family is not an object")
    name, typ, doc = item.get("name"), item.get("type"), item.get("help")
    if not isinstance(name, str) or typ not in _TYPES or not isinstance(doc, str):
        raise ValueError(f"family {name!r}: bad name, type or help")
    samples: list[Sample] = []
    for sample in _list(item.get("samples"), f"samples of {name}"):
        if not (isinstance(sample, list) and len(sample) == 3):
            raise ValueError(f"a sample of {name} is not [name, labels, value]")
        sname, labels, value = sample
        if not isinstance(sname, str) or not _is_labels(labels) or not _is_number(value):
            raise ValueError(f"a sample of {name} has a bad name, labels or value")
        samples.append((sname, labels, float(value)))
    return name, typ, doc, samples


def _pool(item: Any) -> tuple[str, str, dict[str, float]]:
    if not isinstance(item, dict):
        raise ValueError("a pool is not an object")
    name, state = item.get("name"), item.get("state")
    if not isinstance(name, str) or not isinstance(state, str):
        raise ValueError("a pool has no name or state")
    fields: dict[str, float] = {}
    for key in (*COUNTER_FIELDS, *GAUGE_FIELDS, "oldest_queued_age"):
        value = item.get(key)
        if not _is_number(value):
            raise ValueError(f"pool {name!r}: {key} is not a number")
        fields[key] = value
    return name, state, fields


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_labels(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


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


# -- the whole directory ----------------------------------------------------------------------

_reported_lock = threading.Lock()
_reported: set[tuple[Any, ...]] = set()


def read_server(directory: Path, own_name: str, own: ProcessRecord) -> ServerView:
    """Every process file in ``directory`` merged, with ``own`` (this process's numbers,
    taken just now) in place of the file named ``own_name``."""
    records = [(own, True)]
    unreadable = 0
    try:
        paths = sorted(directory.glob(FILE_GLOB))
    except OSError as exc:
        log.warning("cannot list the multiprocess directory %s: %s", directory, exc)
        paths = []
    for path in paths:
        if path.name == own_name:
            continue
        record = _read(path)
        if record is None:
            unreadable += 1
            continue
        records.append((record, not record.exited and process_alive(record.pid, record.started)))
    return ServerView(
        pid=own.pid,
        processes=len(records),
        live_processes=sum(live for _, live in records),
        unreadable=unreadable,
        families=merge_families(records),
        totals=merge_totals(records),
    )


def _read(path: Path) -> ProcessRecord | None:
    try:
        raw = path.read_bytes()
        return parse_record(raw)
    except FileNotFoundError:
        return None  # removed since the directory was listed
    except (OSError, ValueError) as exc:
        _report(path, exc)
        return None


def _report(path: Path, exc: Exception) -> None:
    """Log an unreadable file once per version of it, not on every scrape."""
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = (str(path), 0, 0)
    warn_once(key, "skipping the multiprocess file %s: %s", path, exc)


def warn_once(key: tuple[Any, ...], message: str, *args: Any) -> None:
    """Log a warning the first time ``key`` is seen (a bounded memory of keys)."""
    with _reported_lock:
        if key in _reported:
            return
        if len(_reported) > 1000:
            _reported.clear()
        _reported.add(key)
    log.warning(message, *args)


def merge_families(records: list[tuple[ProcessRecord, bool]]) -> list[Metric]:
    """The metric families of every process added up (see the module's docstring)."""
    merged: dict[str, tuple[str, str, dict[tuple[Any, ...], list[Any]]]] = {}
    for record, live in records:
        for name, typ, doc, samples in record.families:
            entry = merged.get(name)
            if entry is None:
                entry = merged[name] = (typ, doc, {})
            if entry[0] != typ:
                continue  # a family renamed across versions: keep the first type seen
            if typ == "gauge" and not live:
                continue
            use_max = typ == "gauge" and name in _LIVE_MAX
            values = entry[2]
            for sname, labels, value in samples:
                key = (sname, *sorted(labels.items()))
                slot = values.get(key)
                if slot is None:
                    values[key] = [sname, labels, value]
                elif use_max:
                    slot[2] = max(slot[2], value)
                else:
                    slot[2] += value
    out = []
    for name, (typ, doc, values) in merged.items():
        metric = Metric(name, doc, typ)
        for sname, labels, value in values.values():
            metric.add_sample(sname, labels, value)
        out.append(metric)
    return out


def merge_totals(records: list[tuple[ProcessRecord, bool]]) -> dict[str, Any]:
    """Totals over every pool of every process, as ``/api/stats`` shows them.

    Counter fields are summed over all processes, gauge fields over live ones;
    ``oldest_queued_age`` is the largest over live processes. ``pools`` counts the pool
    names of live processes and ``pool_states`` how many of them are in each state (a
    pool whose processes disagree counts in each of their states).
    """
    totals: dict[str, Any] = dict.fromkeys((*COUNTER_FIELDS, *GAUGE_FIELDS), 0)
    oldest = 0.0
    states: dict[str, set[str]] = {}
    for record, live in records:
        for name, state, fields in record.pools:
            for key in COUNTER_FIELDS:
                totals[key] += fields[key]
            if not live:
                continue
            for key in GAUGE_FIELDS:
                totals[key] += fields[key]
            oldest = max(oldest, fields["oldest_queued_age"])
            states.setdefault(state, set()).add(name)
    names = set().union(*states.values()) if states else set()
    return {
        "pools": len(names),
        **{k: _plain(v) for k, v in totals.items()},
        "oldest_queued_age": oldest,
        "pool_states": {state: len(members) for state, members in states.items()},
    }


def _plain(value: float) -> float:
    """Integral totals as ints, so JSON shows ``3``, not ``3.0``."""
    return int(value) if float(value).is_integer() else value
