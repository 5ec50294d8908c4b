"""Gone processes: a server that has replaced hundreds of workers stays bounded in memory
and in files, and its counters stay exact and never go down across compactions."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from poolwatch import PoolManager
from poolwatch.gone import GONE_FILE
from poolwatch.multiproc import ProcessPublisher, clear_directory
from poolwatch.procfiles import FILE_GLOB, parse_record, process_start_ticks

POOLS = 10
TASKS = 3  # per pool


@pytest.fixture
def publisher(tmp_path: Path) -> Iterator[ProcessPublisher]:
    with PoolManager(registry=CollectorRegistry()) as manager:
        for i in range(POOLS):
            pool = manager.create_pool(f"pool-{i}", max_workers=2)
            for f in [pool.submit(abs, -n) for n in range(TASKS)]:
                f.result()
        p = ProcessPublisher(manager, tmp_path, interval=3600)
        yield p
        p.stop()


def worker_file(publisher: ProcessPublisher) -> tuple[dict[str, object], bytes]:
    """The header and the rest of a file like a worker's with ``POOLS`` pools."""
    publisher.publish()
    head, _, rest = publisher.path.read_bytes().partition(b"\n")
    return json.loads(head), rest


def leave_gone(directory: Path, header: dict[str, object], rest: bytes, ids: range, *, dead: bool):
    """Files of processes that are gone: ``dead`` ones (a pid now running another
    process: this one, with another start time), or ones that said they exited and
    still run (this process), which are never compacted."""
    started = process_start_ticks(os.getpid())
    if started is None:
        pytest.skip("no /proc here: a dead process cannot be told from this one")
    for i in ids:
        doc = {**header, "pid": os.getpid(), "exited": True}
        doc["started"] = started + 1 + i if dead else started
        tmp = directory / f".poolwatch_{i}.tmp"
        tmp.write_bytes(json.dumps(doc).encode() + b"\n" + rest)
        os.replace(tmp, directory / f"poolwatch_{os.getpid()}_{i:08x}.json")


def kept_after_scrape(publisher: ProcessPublisher) -> tuple[int, int]:
    """(bytes this process keeps after a server-wide scrape, submitted)."""
    gc.collect()
    tracemalloc.start()
    try:
        submitted = publisher.server().totals["submitted"]
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return kept, submitted


@pytest.mark.parametrize("dead", [True, False], ids=["dead", "exited-and-running"])
def test_memory_stays_bounded_however_many_processes_are_gone(
    publisher: ProcessPublisher, tmp_path: Path, dead: bool
) -> None:
    header, rest = worker_file(publisher)
    own = POOLS * TASKS
    kept_small = None
    for total in (30, 300):
        leave_gone(tmp_path, header, rest, range(total), dead=dead)
        kept, submitted = kept_after_scrape(publisher)
        assert submitted == own * (1 + total)  # exact: each gone process counted once
        if kept_small is None:
            kept_small = kept
    assert kept_small is not None
    # Before, each gone file stayed parsed: about 140 KB a file, 40 MB for 300.
    assert kept < 2_000_000, f"{kept} bytes kept for 300 gone processes"
    assert kept < kept_small + 500_000, (kept_small, kept)
    files = sorted(p.name for p in tmp_path.glob(FILE_GLOB))
    if dead:  # compacted: one file for all of them, and this process's own
        assert files == [publisher.file_name]
        gone = parse_record((tmp_path / GONE_FILE).read_bytes())
        assert gone.processes == 300
    else:
        assert len(files) == 301
    view = publisher.server()
    assert (view.processes, view.live_processes) == (301, 1)
    assert view.totals["submitted"] == own * 301
    assert view.totals["max_workers"] == 2 * POOLS  # gone processes' gauges do not count
    assert clear_directory(tmp_path) >= 2


READER = """
import sys, time
from pathlib import Path
from poolwatch.procfiles import ProcessRecord
from poolwatch.serverwide import read_server

directory, stop = Path(sys.argv[1]), Path(sys.argv[2])
own = ProcessRecord(0, None, True, 0.0, [], [])
last, scrapes, problems, before = 0, 0, [], {}
while not stop.exists():
    view = read_server(directory, "none", own)
    now = view.totals["submitted"]
    if now < last:
        problems.append(f"submitted went from {last} to {now}")
    for name, kind, _, samples in view.families:
        for key, value in samples if kind in ("counter", "histogram") else ():
            if value < before.get(key, 0.0) - 1e-9 * abs(value):
                problems.append(f"{key} went from {before[key]} to {value}")
            before[key] = value
    last, scrapes = now, scrapes + 1
print(last, scrapes, "; ".join(problems[:3]), flush=True)
"""


def test_scrapes_in_other_processes_never_go_down_or_double_count_across_compactions(
    publisher: ProcessPublisher, tmp_path: Path
) -> None:
    header, rest = worker_file(publisher)
    per_file = POOLS * TASKS
    stop = tmp_path.parent / "stop"
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(tmp_path), str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        written = 0
        seen = 0
        for batch in range(40):
            leave_gone(tmp_path, header, rest, range(batch * 5, batch * 5 + 5), dead=True)
            written += 5
            now = publisher.server().totals["submitted"]  # compacts, racing the readers
            assert seen <= now <= per_file * (1 + written)
            seen = now
        assert seen == per_file * (1 + written)
    finally:
        stop.touch()
        outputs = [r.communicate(timeout=60)[0].split(" ", 2) for r in readers]
    for last, scrapes, problems in outputs:
        assert problems.strip() == ""
        assert int(scrapes) > 10
        assert int(float(last)) <= per_file * (1 + written)
    assert list(tmp_path.glob(FILE_GLOB)) == [publisher.path]  # all compacted


def test_a_compaction_that_died_before_unlinking_counts_nothing_twice(
    publisher: ProcessPublisher, tmp_path: Path
) -> None:
    header, rest = worker_file(publisher)
    leave_gone(tmp_path, header, rest, range(3), dead=True)
    kept = {p.name: p.read_bytes() for p in tmp_path.glob(FILE_GLOB) if p != publisher.path}
    assert publisher.server().totals["submitted"] == 4 * POOLS * TASKS  # compacts the 3
    for name, raw in kept.items():  # as if the compaction died after its rename
        (tmp_path / name).write_bytes(raw)
    for _ in range(2):  # skipped while there, then removed
        assert publisher.server().totals["submitted"] == 4 * POOLS * TASKS
    assert list(tmp_path.glob(FILE_GLOB)) == [publisher.path]


def test_a_damaged_gone_file_is_never_folded_into(
    publisher: ProcessPublisher, tmp_path: Path
) -> None:
    header, rest = worker_file(publisher)
    (tmp_path / GONE_FILE).write_bytes(b"not a process file\n")
    leave_gone(tmp_path, header, rest, range(2), dead=True)
    view = publisher.server()
    assert view.totals["submitted"] == 3 * POOLS * TASKS
    assert view.unreadable == 1
    assert len(list(tmp_path.glob(FILE_GLOB))) == 3  # kept: folding would lose the file
    assert (tmp_path / GONE_FILE).read_bytes() == b"not a process file\n"


def test_concurrent_scrapes_in_one_process_agree(
    publisher: ProcessPublisher, tmp_path: Path
) -> None:
    header, rest = worker_file(publisher)
    leave_gone(tmp_path, header, rest, range(50), dead=True)
    results: list[int] = []
    lock = threading.Lock()

    def scrape() -> None:
        n = publisher.server().totals["submitted"]
        with lock:
            results.append(n)

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [51 * POOLS * TASKS] * 8
