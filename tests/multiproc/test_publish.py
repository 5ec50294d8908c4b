"""Process files: what a process publishes, when, and how the server's numbers add up.

Other processes here are real child processes of the test (exited, SIGKILLed, zombie,
forked); the servers themselves are in test_servers.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from starlette.exceptions import StarletteDeprecationWarning

from poolwatch import PoolManager, create_app
from poolwatch.multiproc import ProcessPublisher, publisher_for
from poolwatch.procfiles import (
    POOL_FIELDS,
    format_record,
    parse_record,
    process_alive,
    process_start_ticks,
)
from support import require_tool

with warnings.catch_warnings():
    # Starlette prefers the httpx2 package for its TestClient; httpx works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

# A child process: N tasks, a publish, M tasks more, then exit or wait to be killed.
CHILD = """
import sys
from pathlib import Path
from prometheus_client import CollectorRegistry, Counter
from poolwatch import PoolManager
from poolwatch.multiproc import ProcessPublisher

directory, before, after, end = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
Counter("app_requests", "Requests the app served.").inc(3)  # prometheus_client's own files
manager = PoolManager(registry=CollectorRegistry())
pool = manager.create_pool("work", max_workers=2)
publisher = ProcessPublisher(manager, directory, interval=3600)

def run(n):
    for f in [pool.submit(abs, -i) for i in range(n)]:
        f.result()

run(before)
publisher.publish()  # once, no thread: then again at exit (not after SIGKILL)
run(after)  # after the last publish: lost if the process is killed
print("ready", flush=True)
if end == "wait":
    sys.stdin.readline()
"""


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "multiproc"
    path.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path


@pytest.fixture
def manager() -> Iterator[PoolManager]:
    with PoolManager(registry=CollectorRegistry()) as m:
        yield m


@pytest.fixture
def publisher(manager: PoolManager, directory: Path) -> Iterator[ProcessPublisher]:
    p = ProcessPublisher(manager, directory, interval=3600)
    yield p
    p.stop()


def child(directory: Path, before: int, after: int, end: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(before), str(after), end],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def run_tasks(manager: PoolManager, n: int) -> None:
    pool = manager.get_pool("work") if "work" in manager else manager.create_pool("work")
    for f in [pool.submit(abs, -i) for i in range(n)]:
        f.result()


WORK = (("pool", "work"),)


def test_an_exited_process_keeps_its_counters_and_drops_its_gauges(
    manager: PoolManager, directory: Path, publisher: ProcessPublisher
) -> None:
    manager.create_pool("work", max_workers=4)
    run_tasks(manager, 3)
    proc = child(directory, 5, 2, "exit")
    proc.communicate(timeout=30)
    assert proc.returncode == 0  # at exit it published all 7, marked as exited
    view = publisher.server()
    assert (view.processes, view.live_processes, view.unreadable) == (2, 1, 0)
    assert view.totals["submitted"] == 3 + 7
    assert view.totals["max_workers"] == 4  # the exited process's pool no longer counts
    body, content_type = publisher.render_metrics()
    values = samples(body.decode())
    assert content_type.startswith("text/plain")
    assert values[("poolwatch_tasks_submitted_total", WORK)] == 10
    assert values[("poolwatch_pool_max_workers", WORK)] == 4
    assert values[("poolwatch_pool_info", (("kind", "thread"), ("pool", "work")))] == 1
    assert values[("app_requests_total", ())] == 3  # prometheus_client's own files
    body, content_type = publisher.render_metrics("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(body.decode())}  # checks # EOF too
    assert families["poolwatch_tasks_submitted"].type == "counter"
    assert families["poolwatch_tasks_submitted"].samples[0].value == 10
    assert families["app_requests"].samples[0].value == 3


def test_a_killed_process_loses_only_what_it_did_since_its_last_publish(
    manager: PoolManager, directory: Path, publisher: ProcessPublisher
) -> None:
    manager.create_pool("work", max_workers=4)
    proc = child(directory, 5, 2, "wait")
    try:
        view = publisher.server()
        assert (view.processes, view.live_processes) == (2, 2)
        assert view.totals["submitted"] == 5  # the 2 run after its publish are not on disk
        assert view.totals["max_workers"] == 4 + 2
        proc.send_signal(signal.SIGKILL)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, but left unreaped
        # A zombie: no longer live.
        view = publisher.server()
        assert (view.processes, view.live_processes) == (2, 1)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    view = publisher.server()
    assert (view.processes, view.live_processes) == (2, 1)
    assert view.totals["submitted"] == 5
    assert view.totals["max_workers"] == 4


def test_a_reused_pid_is_not_the_process_that_wrote_the_file() -> None:
    started = process_start_ticks(os.getpid())
    if started is None:
        pytest.skip("no /proc here: processes are told apart by pid alone")
    assert process_alive(os.getpid(), started)
    assert not process_alive(os.getpid(), started + 1)


def test_a_forked_child_publishes_its_own_numbers_from_zero(tmp_path: Path) -> None:
    script = """
import json, os, sys
from pathlib import Path
from prometheus_client import CollectorRegistry
from poolwatch import PoolManager
from poolwatch.multiproc import ProcessPublisher

manager = PoolManager(registry=CollectorRegistry())
pool = manager.create_pool("work", max_workers=2)
publisher = ProcessPublisher(manager, Path(sys.argv[1]), interval=3600)
for f in [pool.submit(abs, -i) for i in range(4)]:
    f.result()
publisher.server()
parent_file = publisher.file_name
pid = os.fork()
if pid == 0:
    running = publisher.running
    for f in [pool.submit(abs, -i) for i in range(3)]:
        f.result()
    view = publisher.server()
    print(json.dumps({"running": running, "same_file": publisher.file_name == parent_file,
                      "submitted": view.totals["submitted"], "processes": view.processes}))
    sys.stdout.flush()
    publisher.stop()
    os._exit(0)
os.waitpid(pid, 0)
"""
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    seen = json.loads(out)
    # No thread inherited, a file of its own, and its count starts from zero: the
    # parent's 4 come from the parent's file, the child's 3 from its own.
    assert seen == {"running": False, "same_file": False, "submitted": 7, "processes": 2}


def test_the_file_never_goes_back_while_scrapes_and_the_thread_publish(
    manager: PoolManager, directory: Path
) -> None:
    pool = manager.create_pool("work", max_workers=4)
    publisher = ProcessPublisher(manager, directory, interval=0.001)
    stop = threading.Event()
    problems: list[str] = []

    def load() -> None:
        while not stop.is_set():
            for f in [pool.submit(abs, -i) for i in range(20)]:
                f.result()

    def scrape() -> None:
        last = 0
        while not stop.is_set():
            now = publisher.server().totals["submitted"]
            if now < last:
                problems.append(f"a scrape went from {last} to {now}")
            last = now

    def read_file() -> None:
        last = 0
        while not stop.is_set():
            try:
                record = parse_record(publisher.path.read_bytes())
            except FileNotFoundError:
                continue
            now = sum(values[0] for _, _, values in record.pools)  # submitted
            if now < last:
                problems.append(f"the file went from {last} to {now}")
            last = now

    publisher.start()
    threads = [threading.Thread(target=f) for f in (load, load, scrape, scrape, read_file)]
    for t in threads:
        t.start()
    try:
        threading.Event().wait(1.5)  # the length of the run, not a synchronisation
        stop.set()
        for t in threads:
            t.join()
        assert not problems, problems[:5]
        assert publisher.server().totals["submitted"] == pool.stats().submitted > 100
    finally:
        stop.set()
        for t in threads:
            t.join()
        publisher.stop()


def test_unreadable_files_are_skipped_logged_once_and_never_fail_a_request(
    manager: PoolManager, directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_tasks(manager, 2)
    header = {"pid": 1, "started": None, "exited": True, "published_at": 0, "pools": []}
    whole = format_record(header, "# TYPE poolwatch_x gauge\npoolwatch_x 1.0\n")
    (directory / "poolwatch_1_aaaa.json").write_bytes(whole[:-9])  # cut short
    (directory / "poolwatch_1_bbbb.json").write_bytes(b"\xff\xfe not json\n")
    (directory / "poolwatch_1_cccc.json").write_bytes(whole.replace(b'"format":1', b'"format":9'))
    (directory / "poolwatch_1_dddd.json").write_bytes(
        format_record(header, "# TYPE poolwatch_x gauge\npoolwatch_x one\n")
    )
    (directory / "counter_1.db").write_bytes(b"\x00\x01 not an mmap file")
    with caplog.at_level(logging.WARNING, logger="poolwatch"), TestClient(create_app(manager)) as c:
        for _ in range(2):
            metrics = c.get("/metrics")
            assert metrics.status_code == 200
            assert samples(metrics.text)[("poolwatch_tasks_submitted_total", WORK)] == 2
            stats = c.get("/api/stats")
            assert stats.status_code == 200
            assert stats.json()["submitted"] == 2
            assert stats.json()["server"]["unreadable_files"] == 4
    said = [r.getMessage() for r in caplog.records]
    skipped = [m for m in said if m.startswith("skipping the multiprocess file ")]
    assert len(skipped) == 4, skipped  # once per file, not once per request
    db = [m for m in said if m.startswith("skipping prometheus_client's multiprocess files")]
    assert len(db) == 1, db


def test_stats_say_which_process_answered(manager: PoolManager, directory: Path) -> None:
    run_tasks(manager, 2)
    with TestClient(create_app(manager)) as c:
        body: dict[str, Any] = c.get("/api/stats").json()
    assert body["server"] == {
        "multiprocess": True,
        "pid": os.getpid(),
        "processes": 1,
        "live_processes": 1,
        "unreadable_files": 0,
    }
    assert body["submitted"] == body["succeeded"] == 2
    assert body["pools"] == 1
    assert body["pool_states"] == {"running": 1}


def test_a_single_process_server_says_so(
    manager: PoolManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    run_tasks(manager, 1)
    assert publisher_for(manager) is None
    with TestClient(create_app(manager)) as c:
        body = c.get("/api/stats").json()
    assert body["server"]["multiprocess"] is False
    assert body["server"]["pid"] == os.getpid()
    assert body["submitted"] == 1


def test_a_missing_directory_is_refused_with_the_fix(
    manager: PoolManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match=r"is not a directory: create it \(empty\)"):
        create_app(manager)


def test_promtool_accepts_a_server_wide_scrape(
    manager: PoolManager, directory: Path, publisher: ProcessPublisher
) -> None:
    promtool = require_tool("promtool", hint="Debian package prometheus")
    run_tasks(manager, 3)
    proc = child(directory, 2, 0, "exit")
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    body, _ = publisher.render_metrics()
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == b""


def test_the_last_app_to_stop_serving_marks_the_process_exited(
    manager: PoolManager, directory: Path
) -> None:
    publisher = ProcessPublisher(manager, directory, interval=3600)
    publisher.acquire()
    publisher.acquire()  # two apps serve the manager
    publisher.release()
    assert publisher.running
    assert not parse_record(publisher.path.read_bytes()).exited
    publisher.release()
    assert not publisher.running
    assert parse_record(publisher.path.read_bytes()).exited
    publisher.publish()  # a late publish does not make it live again
    assert parse_record(publisher.path.read_bytes()).exited


def test_a_file_s_families_and_pool_stats_are_one_instant(
    manager: PoolManager, directory: Path, publisher: ProcessPublisher
) -> None:
    pool = manager.create_pool("work", max_workers=4)
    for i in range(40):  # rendered between the work pool's families and its stats, before
        manager.create_pool(f"idle-{i}", max_workers=1).submit(abs, -1).result()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for f in [pool.submit(abs, -i) for i in range(20)]:
                f.result()

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    disagreed = []
    try:
        for _ in range(50):
            publisher.publish()
            record = parse_record(publisher.path.read_bytes())
            values = next(v for name, _, v in record.pools if name == "work")
            stats = dict(zip(POOL_FIELDS, values, strict=True))
            families = {n: dict(s) for n, _, _, s in record.families}
            submitted = families["poolwatch_tasks_submitted_total"][
                'poolwatch_tasks_submitted_total{pool="work"}'
            ]
            if submitted != stats["submitted"]:
                disagreed.append((submitted, stats["submitted"]))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert pool.stats().submitted > 100
    assert not disagreed, disagreed[:5]
