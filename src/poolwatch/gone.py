"""The processes of a multi-process server that are gone, folded into one sum.

A process that exited or was killed leaves its file, and its counters stay counted. A
server that replaces workers all the time (gunicorn's ``max_requests``) would otherwise
grow its directory, and every reader's memory, by one file per worker it ever ran. Two
things keep both bounded:

- each reader keeps one running sum of the gone processes' files (``GoneSum``) and of
  each file only its name, version and writer: a file that goes is parsed once, folded
  into the sum and forgotten;
- a reader that finds files whose writer is dead compacts them (``compact``): it adds
  them to the directory's one file of gone processes, ``poolwatch-gone.json`` (written
  to a temporary file, renamed over the old one), then unlinks them.

Readers list and read the directory holding ``poolwatch.lock`` shared; a compaction holds
it exclusively, so a scrape sees the files either all before a compaction or all after
it: nothing is counted twice or missed, and counters never go down. The gone file also
names the files it folded in: should a compaction die between its rename and its
unlinks, readers skip those files and the next compaction removes them.

A file of a process that said it exited but still runs (an app that stopped serving) is
not compacted: that process may publish again, with its counts so far.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .procfiles import (
    COUNTER_FIELDS,
    FILE_GLOB,
    POOL_FIELDS,
    ProcessRecord,
    format_record,
    merge_families,
    parse_record,
    process_alive,
    render_families,
    warn_once,
)

__all__ = [
    "GONE_FILE",
    "LOCK_FILE",
    "GoneFile",
    "GoneSum",
    "Writer",
    "compact",
    "directory_lock",
    "fold",
]

GONE_FILE = "poolwatch-gone.json"
LOCK_FILE = "poolwatch.lock"
_LOCK_WAIT = 5.0  # seconds a reader waits for a compaction before reading without the lock

Version = tuple[int, int]  # a file's mtime (ns) and size: a gone file's never changes
Writer = tuple[int, int | None, tuple[str, ...]]  # a file's pid, start and folded names


@dataclass(frozen=True, slots=True)
class GoneFile:
    """One file of a gone process, as a reader found it."""

    path: Path
    version: Version
    writer: Writer
    record: ProcessRecord | None  # None when the sum already holds it

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.path.name, *self.version)

    @property
    def dead(self) -> bool:
        """Its writer no longer runs (not merely said it exited): it can be compacted."""
        pid, started, _ = self.writer
        return pid != 0 and not process_alive(pid, started)


def fold(records: list[ProcessRecord]) -> ProcessRecord:
    """One record adding up ``records`` of gone processes: their counters and
    histograms; their gauges no longer count. Its size is bounded by the series and pool
    names they have, not by how many there are."""
    pools: dict[str, tuple[str, list[float]]] = {}
    counters = len(COUNTER_FIELDS)
    for record in records:
        for name, state, values in record.pools:
            entry = pools.get(name)
            if entry is None:
                entry = pools[name] = (state, [0.0] * len(POOL_FIELDS))
            total = entry[1]
            for i in range(counters):
                total[i] += values[i]
            pools[name] = (state, total)
    families = [f for f in merge_families([(r, False) for r in records]) if f[3]]
    return ProcessRecord(
        pid=0,
        started=None,
        exited=True,
        published_at=max((r.published_at for r in records), default=0.0),
        families=families,
        pools=[(name, state, values) for name, (state, values) in pools.items()],
        processes=sum(r.processes for r in records),
    )


class GoneSum:
    """A reader's running sum of the gone processes' files of one directory.

    Used under the reader's directory lock (``directory_lock``), which serialises it.
    """

    def __init__(self) -> None:
        self._directory: Path | None = None
        self._writers: dict[tuple[str, int, int], Writer] = {}
        self._sum: ProcessRecord | None = None

    def writer(self, directory: Path, name: str, version: Version) -> Writer | None:
        """The writer of a file the sum holds at ``version``, else None."""
        if directory != self._directory:
            return None
        return self._writers.get((name, *version))

    def total(
        self,
        directory: Path,
        files: list[GoneFile],
        read: Callable[[Path], ProcessRecord | None],
    ) -> ProcessRecord | None:
        """The sum of ``files``, the gone files present now; ``read`` parses a file the
        sum must read again (after a compaction replaced some of those it held)."""
        present = {f.key: f for f in files}
        if directory != self._directory or not self._writers.keys() <= present.keys():
            self._directory, self._writers, self._sum = directory, {}, None
        added = []
        for key, f in sorted(present.items()):
            if key in self._writers:
                continue
            record = f.record if f.record is not None else read(f.path)
            if record is not None:
                added.append(record)
                self._writers[key] = f.writer
        if added:
            self._sum = fold([self._sum, *added] if self._sum is not None else added)
        return self._sum if self._writers else None

    def clear(self) -> None:
        self._directory, self._writers, self._sum = None, {}, None


# -- the directory lock -------------------------------------------------------------------

# One reader or compaction at a time per process: flock() locks belong to an open file,
# and no fork may copy a lock a thread holds (see _before_fork).
_local = threading.Lock()


@contextlib.contextmanager
def directory_lock(directory: Path, *, exclusive: bool = False) -> Iterator[bool]:
    """Hold ``directory``'s lock file, shared or exclusive; yields whether it is held.

    Shared waits up to a few seconds for a compaction, then reads without it (logged).
    Exclusive does not wait: False when any reader holds the lock.
    """
    with _local:
        try:
            fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            warn_once(("lock", str(directory)), "cannot open %s: %s", directory / LOCK_FILE, exc)
            yield not exclusive
            return
        try:
            held = _flock(fd, exclusive)
            if not held and not exclusive:
                warn_once(("lock-wait", str(directory)), "reading %s unlocked", directory)
            yield held or not exclusive
        finally:
            os.close(fd)  # releases the lock


def _flock(fd: int, exclusive: bool) -> bool:
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + (0.0 if exclusive else _LOCK_WAIT)
    while True:
        try:
            fcntl.flock(fd, mode)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)  # a compaction takes milliseconds


# -- compaction ---------------------------------------------------------------------------


def compact(directory: Path, read: Callable[[Path], ProcessRecord | None]) -> int:
    """Fold the files of dead processes into the gone file and remove them; returns how
    many. Does nothing (0) while another process reads or compacts: a later scrape will."""
    with directory_lock(directory, exclusive=True) as held:
        if not held:
            return 0
        gone_path = directory / GONE_FILE
        try:
            before = parse_record(gone_path.read_bytes())
        except FileNotFoundError:
            before = None
        except (OSError, ValueError) as exc:
            # Never fold into a file that cannot be read: its numbers would be lost.
            warn_once(("gone", str(exc)), "not compacting %s: %s", gone_path, exc)
            return 0
        if before is not None:
            _unlink(directory, before.folded)  # left by a compaction that died midway
        dead: list[tuple[str, ProcessRecord]] = []
        for path in sorted(directory.glob(FILE_GLOB)):
            record = read(path)
            if record is not None and not process_alive(record.pid, record.started):
                dead.append((path.name, record))
        if not dead:
            return 0
        total = fold([*([before] if before is not None else []), *(r for _, r in dead)])
        names = tuple(name for name, _ in dead)
        try:
            _write(gone_path, total, names)
        except OSError as exc:
            warn_once(("gone-write", str(exc)), "cannot write %s: %s", gone_path, exc)
            return 0
        _unlink(directory, names)
        return len(names)


def _write(path: Path, total: ProcessRecord, folded: tuple[str, ...]) -> None:
    header = {
        "pid": 0,
        "started": None,
        "exited": True,
        "published_at": total.published_at,
        "processes": total.processes,
        "folded": list(folded),
        "pools": [[name, state, *values] for name, state, values in total.pools],
    }
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(format_record(header, render_families(total.families, False)))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _unlink(directory: Path, names: tuple[str, ...]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


def _before_fork() -> None:
    _local.acquire()


def _after_fork_in_parent() -> None:
    _local.release()


def _after_fork_in_child() -> None:
    global _local
    _local = threading.Lock()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
