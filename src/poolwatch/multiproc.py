"""Multi-process servers: each process publishes its numbers, any process reports them all.

Under gunicorn or ``uvicorn --workers`` every worker process has its own pools, so a
scrape answered by one worker saw only that worker. With ``PROMETHEUS_MULTIPROC_DIR``
set (prometheus_client's convention), a ``ProcessPublisher`` writes what this process's
manager exports (poolwatch's families, as ``/metrics`` renders them, and its pools'
stats) to a file of its own in that directory, ``poolwatch_<pid>_<token>.json``:

- every ``interval`` seconds from one daemon thread (less often when a publish costs
  more than a twentieth of that: thousands of pools), started lazily by ``start()``
  (the app's lifespan calls it) and never inherited by a forked child;
- before answering ``/metrics`` or ``/api/stats``, so that whatever a scrape reports is
  on disk before the reply leaves: a worker killed afterwards cannot take back numbers
  a scrape already showed, and counters never go down;
- when the app's lifespan ends (the server stopping the worker, after its last
  request) and again at interpreter exit (after the pools have drained), marked as
  exited, so its gauges stop counting while its counters stay. uvicorn ends a worker
  stopped by a signal by raising that signal again after the lifespan, so the
  interpreter's exit hooks do not run there: the lifespan's publish is the last.

Nothing of this is on the task path: a publish reads the same snapshots a scrape reads.
Writes go to a temporary file renamed over the old one, so a reader sees a whole file,
old or new. A process killed with SIGKILL (or ending in ``os._exit``) loses what it did
since its last publish, at most about ``interval`` seconds of work no scrape has seen; its
gauges drop out as soon as its pid is gone. ``serverwide.py`` reads and merges the
files.

The directory must be emptied when the server starts (as prometheus_client requires):
the files of an earlier run would otherwise be counted again.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .accounting import PoolSnapshot
from .gone import GONE_FILE, LOCK_FILE
from .metrics import encoder_for, render_snapshots
from .procfiles import (
    FILE_GLOB,
    POOL_FIELDS,
    ProcessRecord,
    format_record,
    parse_text,
    process_start_ticks,
    render_families,
    warn_once,
)
from .records import PoolStats
from .serverwide import ServerView, read_server
from .users import Users

__all__ = [
    "ENV_VAR",
    "ProcessPublisher",
    "clear_directory",
    "multiprocess_directory",
    "publisher_for",
    "single_process_info",
    "start_publishing",
]

log = logging.getLogger("poolwatch")

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
_DUTY = 20  # the pause after a periodic publish is at least this many times its cost


class _Pool(Protocol):
    def stats(self) -> PoolStats: ...

    def metrics_snapshot(self) -> PoolSnapshot: ...


class Published(Protocol):
    """What a publisher needs of a manager: its pools."""

    def pools(self) -> Sequence[_Pool]: ...


def multiprocess_directory() -> Path | None:
    """The directory named by ``PROMETHEUS_MULTIPROC_DIR``, or ``None`` when unset.

    ``ValueError`` when it is set but is not a directory.
    """
    value = os.environ.get(ENV_VAR, "")
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        raise ValueError(
            f"{ENV_VAR}={value} is not a directory: create it (empty) before the server "
            f"starts, or unset {ENV_VAR} to report each process on its own"
        )
    return path


def clear_directory(directory: str | os.PathLike[str] | None = None) -> int:
    """Empty the multiprocess directory of the files an earlier run left; call it once
    as the server starts, before any worker (gunicorn's ``on_starting`` hook).

    Removes poolwatch's files (each process's, the gone processes' sum, the lock file)
    and prometheus_client's ``*.db`` files from
    ``directory`` (default: ``PROMETHEUS_MULTIPROC_DIR``; nothing when unset) and
    returns how many it removed. Other files are left alone.
    """
    path = Path(directory) if directory is not None else multiprocess_directory()
    if path is None:
        return 0
    removed = 0
    patterns = (FILE_GLOB, f".{FILE_GLOB}.tmp", GONE_FILE, f".{GONE_FILE}.tmp", LOCK_FILE, "*.db")
    for pattern in patterns:
        for stale in path.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed += 1
    return removed


class ProcessPublisher:
    """Publishes one manager's numbers for this process; reads the whole server's.

    Thread-safe. ``interval`` is the time between periodic publishes (seconds).
    """

    def __init__(self, source: Published, directory: Path, *, interval: float = 1.0) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a number of seconds > 0, got {interval!r}")
        self._source = weakref.ref(source)
        self.directory = directory
        self.interval = interval
        self.after_fork_in_child()
        _all.add(self)

    def after_fork_in_child(self) -> None:
        """A fresh identity and no thread: also what a forked child starts with."""
        self._lock = threading.Lock()  # one publish at a time: a file never goes back
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._users = Users()  # apps serving this manager (see acquire)
        self._pid = os.getpid()
        self._started = process_start_ticks(self._pid)
        self.file_name = f"poolwatch_{self._pid}_{os.urandom(4).hex()}.json"
        self._last: ProcessRecord | None = None  # the numbers last written to the file

    @property
    def path(self) -> Path:
        """This process's file."""
        return self.directory / self.file_name

    @property
    def has_published(self) -> bool:
        """True once this process wrote its file (it is then published again at exit)."""
        with self._lock:
            return self._last is not None

    @property
    def running(self) -> bool:
        """True while the periodic publishing thread runs."""
        with self._lock:
            return self._thread is not None

    def start(self) -> None:
        """Publish now and then every ``interval`` seconds until ``stop()`` or exit."""
        with self._lock:
            if self._thread is not None:
                return
            self._closed = False  # serving again after a stop that said it exited
            self._stop = stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="poolwatch-publisher", daemon=True
            )
            self._thread.start()
        self.publish()

    def acquire(self) -> None:
        """One more app serving this manager (its lifespan starts): publish."""
        self._users.add()
        self.start()

    def release(self) -> None:
        """One app fewer (its lifespan ends); after the last one, publish as exited."""
        if self._users.remove():
            self.stop(exited=True)

    def stop(self, *, exited: bool = False) -> None:
        """Stop the thread and publish once more; with ``exited``, marked as exited:
        the process's gauges stop counting, its counters stay (until ``start()``)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self.publish(exited=exited)

    def _run(self, stop: threading.Event) -> None:
        cost = 0.0
        # A manager with very many pools publishes less often, so that publishing
        # never takes more than about 5 % of a core.
        while not stop.wait(max(self.interval, cost * _DUTY)):
            started = time.monotonic()
            try:
                self.publish()
            except Exception:  # never let one bad publish end the thread
                log.exception("publishing this process's numbers failed")
            cost = time.monotonic() - started

    def publish(self, *, exited: bool = False) -> ProcessRecord:
        """Write this process's numbers now; returns what the server may count of it.

        When the write fails (logged), that is the last numbers the file holds, so that
        nothing is reported that a later scrape could lose.
        """
        with self._lock:
            if self._closed and not exited:
                # Said it exited: a late publish must not make it live again.
                return self._last or self._record(exited=True)[0]
            record, text = self._record(exited)
            try:
                self._write(record, text)
            except OSError as exc:
                log.warning("cannot write the multiprocess file %s: %s", self.path, exc)
                return self._last or _empty(record)
            self._last = record
            self._closed = exited
            return record

    def _record(self, exited: bool) -> tuple[ProcessRecord, str]:
        source = self._source()
        # One snapshot per pool, for the families and the stats: the file agrees with itself.
        snaps = [] if source is None else [p.metrics_snapshot() for p in source.pools()]
        text = render_snapshots(snaps)
        pools = [snap.stats for snap in snaps]
        record = ProcessRecord(
            pid=self._pid,
            started=self._started,
            exited=exited,
            published_at=time.time(),
            families=parse_text(text),
            pools=[(s.name, s.state.value, [getattr(s, f) for f in POOL_FIELDS]) for s in pools],
        )
        return record, text

    def _write(self, record: ProcessRecord, text: str) -> None:
        header = {
            "pid": record.pid,
            "started": record.started,
            "exited": record.exited,
            "published_at": record.published_at,
            "pools": [[name, state, *values] for name, state, values in record.pools],
        }
        tmp = self.directory / f".{self.file_name}.tmp"
        try:
            tmp.write_bytes(format_record(header, text))
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    # -- the whole server ---------------------------------------------------------------

    def server(self) -> ServerView:
        """Publish, then merge every process's file: the whole server, now.

        Starts the periodic publishing if it was not running yet.
        """
        self.start()
        own = self.publish()
        if own.exited:  # answering while exiting: still count as live for this answer
            own = _as_live(own)
        return read_server(self.directory, self.file_name, own)

    def render_metrics(self, accept: str | None = None) -> tuple[bytes, str]:
        """The whole server's exposition for an HTTP ``Accept`` header.

        poolwatch's families merged over the processes, and every metric the processes
        keep with prometheus_client's own multiprocess mode (``*.db`` files) in the same
        directory. Exemplars are per process and not carried over.
        """
        view = self.server()
        encoder, content_type = encoder_for(accept)
        openmetrics = content_type.startswith("application/openmetrics-text")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Guarded(self.directory))
        others = encoder(registry).decode()
        ours = render_families(view.families, openmetrics)
        if openmetrics:
            eof = "# EOF\n"
            others = others[: -len(eof)] if others.endswith(eof) else others
            return (others + ours + eof).encode(), content_type
        return (others + ours).encode(), content_type

    def server_info(self, view: ServerView) -> dict[str, Any]:
        """Which process answered and how many were counted, for JSON answers."""
        return {
            "multiprocess": True,
            "pid": view.pid,
            "processes": view.processes,
            "live_processes": view.live_processes,
            "unreadable_files": view.unreadable,
        }


def single_process_info() -> dict[str, Any]:
    """``ProcessPublisher.server_info`` for a server of one process."""
    return {
        "multiprocess": False,
        "pid": os.getpid(),
        "processes": 1,
        "live_processes": 1,
        "unreadable_files": 0,
    }


def _empty(record: ProcessRecord) -> ProcessRecord:
    """``record`` with nothing in it: what a process counts for before its first write."""
    return ProcessRecord(record.pid, record.started, record.exited, record.published_at, [], [])


def _as_live(record: ProcessRecord) -> ProcessRecord:
    return ProcessRecord(
        record.pid, record.started, False, record.published_at, record.families, record.pools
    )


class _Guarded(Collector):
    """prometheus_client's multiprocess collector; a file it cannot read skips it all,
    logged, rather than failing the scrape."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterable[Metric]:
        if not any(self._directory.glob("*.db")):
            return []
        try:
            collector = MultiProcessCollector(None, str(self._directory))  # type: ignore[no-untyped-call]
            return list(collector.collect())  # type: ignore[no-untyped-call]
        except Exception as exc:
            warn_once(("db", str(exc)), "skipping prometheus_client's multiprocess files: %s", exc)
            return []


# -- one publisher per manager and process ----------------------------------------------------

_lock = threading.Lock()
_publishers: weakref.WeakKeyDictionary[Any, ProcessPublisher] = weakref.WeakKeyDictionary()
_all: weakref.WeakSet[ProcessPublisher] = weakref.WeakSet()


def publisher_for(source: Published) -> ProcessPublisher | None:
    """The publisher of ``source`` (a manager) when ``PROMETHEUS_MULTIPROC_DIR`` is set,
    shared by every app that serves it; ``None`` when it is unset.

    ``ValueError`` when the variable names something that is not a directory.
    """
    directory = multiprocess_directory()
    if directory is None:
        return None
    with _lock:
        publisher = _publishers.get(source)
        if publisher is None or publisher.directory != directory:
            publisher = _publishers[source] = ProcessPublisher(source, directory)
        return publisher


def start_publishing(manager: Published) -> ProcessPublisher | None:
    """Publish ``manager``'s numbers for the whole server from now until this process
    exits, whether or not it serves an app; returns the publisher, or ``None`` when
    ``PROMETHEUS_MULTIPROC_DIR`` is unset.

    For workers that run no ASGI lifespan (WSGI apps under gunicorn): call it in each
    worker, in gunicorn's ``post_fork`` hook, and serve the merged numbers from one
    place (``start_service`` in the master's ``when_ready`` hook). Idempotent.
    Fork-aware: a child forked after the call publishes nothing until it calls this
    itself (its own file, its own numbers). The last publish, marked as exited, is at
    interpreter exit. ``start_service`` calls it too.
    """
    publisher = publisher_for(manager)
    if publisher is not None:
        publisher.start()
    return publisher


def _at_exit() -> None:
    # Runs after threading's exit hooks, so the managers' pools have drained by now.
    for publisher in list(_all):
        if publisher.has_published:
            try:
                publisher.stop(exited=True)
            except Exception:
                log.exception("publishing this process's numbers at exit failed")


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for publisher in list(_all):
        publisher.after_fork_in_child()


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
