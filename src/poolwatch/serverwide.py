"""Server-wide numbers from the files the processes of a multi-process server publish.

Each process of a server (gunicorn or ``uvicorn --workers``) writes its own numbers to
one file in the directory named by ``PROMETHEUS_MULTIPROC_DIR`` (see ``multiproc.py``;
the format, and how files add up, in ``procfiles.py``). This module reads the directory
and merges it: the live processes' files as they are now, and the gone processes' as
one sum (``gone.py``), which keeps a server that has replaced many workers bounded in
memory, files and time. A file that cannot be read or parsed is skipped with a log
line; the scrape goes on without it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .gone import GONE_FILE, GoneFile, GoneSum, Writer, compact, directory_lock
from .procfiles import (
    COUNTER_FIELDS,
    FILE_GLOB,
    GAUGE_FIELDS,
    POOL_FIELDS,
    Family,
    ProcessRecord,
    merge_families,
    parse_record,
    process_alive,
    warn_once,
)

__all__ = ["ServerView", "merge_totals", "read_server"]

log = logging.getLogger("poolwatch")


@dataclass(frozen=True, slots=True)
class ServerView:
    """The whole server as one process sees it when answering a request."""

    pid: int  # the process that answered
    processes: int  # processes counted (the answering one, live ones, gone ones)
    live_processes: int
    unreadable: int  # files skipped because they could not be read or parsed
    families: list[Family]  # merged
    totals: dict[str, Any]  # /api/stats numbers: see merge_totals


@dataclass(slots=True)
class _Scan:
    live: list[ProcessRecord]
    gone: ProcessRecord | None
    compactable: bool  # files of dead processes are there
    unreadable: int


_gone = GoneSum()  # this process's sum of the gone processes' files


def read_server(directory: Path, own_name: str, own: ProcessRecord) -> ServerView:
    """Every process file in ``directory`` merged, with ``own`` (this process's numbers,
    taken just now) in place of the file named ``own_name``.

    A live process's file is read on each call; a gone process's file is read once and
    added to the sum of gone processes. Files of dead processes are then compacted into
    the directory's file of gone processes (see ``gone.py``).
    """
    with directory_lock(directory):
        scan = _scan(directory, own_name)
    if scan.compactable:
        compact(directory, _read_record)
    records = [(own, True), *((r, True) for r in scan.live)]
    gone = 0
    if scan.gone is not None:
        records.append((scan.gone, False))
        gone = scan.gone.processes
    return ServerView(
        pid=own.pid,
        processes=1 + len(scan.live) + gone,
        live_processes=1 + len(scan.live),
        unreadable=scan.unreadable,
        families=merge_families(records),
        totals=merge_totals(records),
    )


def _scan(directory: Path, own_name: str) -> _Scan:
    """The directory, read under its lock: live records, the gone processes' sum."""
    try:
        paths = sorted(p for p in directory.glob(FILE_GLOB) if p.name != own_name)
        paths.append(directory / GONE_FILE)
    except OSError as exc:
        log.warning("cannot list the multiprocess directory %s: %s", directory, exc)
        paths = []
    live: list[ProcessRecord] = []
    gone: list[GoneFile] = []
    unreadable = 0
    skip: set[str] = set()
    leftover = False  # files a compaction folded in but did not get to remove
    for path in reversed(paths):  # the gone file first: it names files to skip
        if path.name in skip:
            leftover = True
            continue
        found = _read(directory, path)
        if found is None:
            continue  # removed since the directory was listed
        version, writer, record = found
        if writer is None:
            unreadable += 1
        elif record is not None and not record.exited and process_alive(*writer[:2]):
            live.append(record)
        else:
            gone.append(GoneFile(path, version, writer, record))
            skip.update(writer[2])
    live.reverse()
    return _Scan(
        live=live,
        gone=_gone.total(directory, gone, _read_record),
        compactable=leftover or any(f.dead for f in gone),
        unreadable=unreadable,
    )


_Found = tuple[tuple[int, int], Writer | None, ProcessRecord | None]


def _read(directory: Path, path: Path) -> _Found | None:
    """(version, writer, record); the writer is None when the file cannot be read, the
    record None when the gone sum holds this version. None when the file is not there."""
    try:
        st = path.stat()
        version = (st.st_mtime_ns, st.st_size)
        writer = _gone.writer(directory, path.name, version)
        if writer is not None:
            return version, writer, None
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        _report(path, exc)
        return (0, 0), None, None
    try:
        record = parse_record(raw)
    except ValueError as exc:
        _report(path, exc)
        return version, None, None
    return version, (record.pid, record.started, record.folded), record


def _read_record(path: Path) -> ProcessRecord | None:
    """A file's record; None when it is not there or cannot be read (logged)."""
    try:
        return parse_record(path.read_bytes())
    except FileNotFoundError:
        return None
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
        for name, state, values in record.pools:
            fields = dict(zip(POOL_FIELDS, values, strict=True))
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
