"""docs/integrations/flask.md's several-workers set-up, run as written: a Flask app under
a real gunicorn with two sync workers (no ASGI lifespan anywhere), each publishing from
``post_fork``, and the master serving the whole server's numbers on the side port."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from integrations.guide import write_files
from multiproc.servers import gunicorn_path, running_server
from poolwatch.procfiles import FILE_GLOB, parse_record
from support import free_port, wait_until

POOL = "thumbnails"


def workers_that_ran_tasks(directory: Path) -> int:
    """How many process files show tasks submitted to the pool."""
    count = 0
    for path in directory.glob(FILE_GLOB):
        pools = parse_record(path.read_bytes()).pools
        count += any(name == POOL and values[0] > 0 for name, _, values in pools)
    return count


def test_the_master_counts_the_tasks_of_every_sync_worker(tmp_path: Path) -> None:
    write_files("flask.md", tmp_path)
    app_port = free_port()
    command = [
        "env", "POOLWATCH_PORT={port}", gunicorn_path(), "-c", "gunicorn.workers.conf.py",
        "app:app", "-w", "2", "--bind", f"127.0.0.1:{app_port}",
    ]  # fmt: skip
    with running_server("gunicorn", tmp_path, command=command, cwd=tmp_path) as server:
        sizes = itertools.count()

        def one() -> None:
            size = next(sizes)
            r = httpx.get(f"http://127.0.0.1:{app_port}/thumbnails/{size * 2}", timeout=10)
            assert r.json() == {"size": size}, r.text

        def both_workers_worked() -> bool:
            with ThreadPoolExecutor(8) as load:
                list(load.map(lambda _: one(), range(16)))
            server.sent_ok += 16
            server.scrape()  # checks: no series goes down, never more than was sent
            return workers_that_ran_tasks(server.directory) == 2

        wait_until(both_workers_worked, timeout=30, interval=0.05, message=server.output)

        def counted_all() -> bool:
            values = server.scrape()
            stats = server.stats()
            return (
                values.get(("poolwatch_tasks_submitted_total", (("pool", POOL),))) == server.sent
                and stats["submitted"] == stats["succeeded"] == server.sent
                and stats["server"]["processes"] == 3  # the master and two workers
                and stats["server"]["live_processes"] == 3
                and stats["max_workers"] == 2 * 4  # the pool of each worker
            )

        wait_until(counted_all, timeout=10, interval=0.05, message=lambda: str(server.stats()))
        assert server.stats()["server"]["pid"] == server.proc.pid  # the master answered
