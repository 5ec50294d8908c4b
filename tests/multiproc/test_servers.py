"""Real multi-process servers: /metrics and /api/stats from any worker report the whole
server, counters equal what every process did and never go down, also across workers
stopped (SIGTERM) or killed (SIGKILL) and replaced, whose files are then compacted."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from multiproc.servers import Server, completed
from poolwatch.gone import GONE_FILE
from poolwatch.procfiles import parse_record
from support import wait_until

KINDS = ["gunicorn", "gunicorn-preload", "uvicorn"]


def drive(server: Server, *, until_pids: set[int] | None = None, rounds: int = 3) -> None:
    """Load from 6 threads, with scrapes between rounds, until a worker not in
    ``until_pids`` (or two workers, when None) has answered."""

    def enough() -> bool:
        if until_pids is None:
            return len(server.pids) >= 2
        return bool(server.pids - until_pids)

    done = 0
    with ThreadPoolExecutor(6) as load:
        while done < rounds or not enough():
            list(load.map(lambda _: server.work(n=3, fail=1), range(12)))
            for _ in range(4):
                server.scrape()  # checks: never down, never more than was sent
            done += 1
            assert done < 100, f"only workers {server.pids} answered"


def settled(server: Server) -> None:
    """Wait until scrapes count exactly what was sent: every process has published."""

    def exact() -> bool:
        values = server.scrape()
        return (
            server.last_submitted == server.sent
            and completed(values, "succeeded") == server.sent_ok
            and completed(values, "failed") == server.sent_failed
        )

    wait_until(
        exact,
        timeout=10,
        interval=0.05,
        message=lambda: f"scraped {server.last_submitted}, sent {server.sent}",
    )


def check_stats(server: Server, processes: int) -> None:
    """/api/stats agrees with the scrapes, counts ``processes``, two of them live."""

    def agreed() -> bool:
        body = server.stats()
        info = body["server"]
        return (
            body["submitted"] == server.sent
            and body["succeeded"] == server.sent_ok
            and body["failed"] == server.sent_failed
            and info["multiprocess"] is True
            and info["processes"] == processes
            and info["live_processes"] == 2
            and info["unreadable_files"] == 0
        )

    wait_until(agreed, timeout=10, interval=0.05, message=lambda: str(server.stats()))


def replace_worker(server: Server, sig: signal.Signals) -> None:
    """Stop one worker that answered with ``sig``; load until its replacement answers."""
    victim = max(server.pids - server.gone)
    os.kill(victim, sig)
    server.gone.add(victim)
    before = set(server.pids)
    drive(server, until_pids=before, rounds=1)
    settled(server)
    # A scrape found its writer dead: its file is folded into the gone processes' file.
    wait_until(lambda: compacted(server, victim), timeout=10, message=server.output)


def compacted(server: Server, pid: int) -> bool:
    """Whether the file of worker ``pid`` is gone and the gone processes' file counts it."""
    server.scrape()  # a scrape compacts the files of dead processes
    if list(server.directory.glob(f"poolwatch_{pid}_*.json")):
        return False
    gone = parse_record((server.directory / GONE_FILE).read_bytes())
    return gone.processes >= len(server.gone)


@pytest.mark.parametrize("multiproc_server", KINDS, indirect=True)
def test_scrapes_count_every_process_and_never_go_down(multiproc_server: Server) -> None:
    server = multiproc_server
    drive(server)
    settled(server)
    check_stats(server, processes=2)
    replace_worker(server, signal.SIGTERM)  # exits cleanly: published its last numbers
    check_stats(server, processes=3)
    replace_worker(server, signal.SIGKILL)  # everything it did was published before
    check_stats(server, processes=4)
    for _ in range(20):
        server.scrape()
    assert server.last_submitted == server.sent
