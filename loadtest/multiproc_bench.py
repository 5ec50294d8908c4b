"""What the multi-process mode costs: one publish, and one server-wide scrape.

    python loadtest/multiproc_bench.py
    python loadtest/multiproc_bench.py --pools 10,100,1000 --processes 2,16,128

A publish (once a second per process, and before each /metrics or /api/stats answer)
snapshots every pool of the manager and writes the process's file. A server-wide
scrape publishes, reads every process's file and merges them. Each figure is the median
of ``--repeats`` timings; the file size is that of one process's file. Other processes
are simulated by copies of this process's file under other names: "live" copies carry
this process's pid (so they pass the liveness check and are read on every scrape),
"gone" copies are marked as exited (parsed once, then added up from a cache).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from poolwatch import PoolManager
from poolwatch.multiproc import ProcessPublisher


def timed(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def setup(manager: PoolManager, pools: int) -> None:
    for i in range(pools):
        pool = manager.create_pool(f"pool-{i}", max_workers=2)
        for f in [pool.submit(abs, -n) for n in range(3)]:
            f.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", default="10,100,1000")
    parser.add_argument("--processes", default="2,16,128")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(
        f"{'pools':>6} {'processes':>9} {'file KB':>8} {'publish ms':>11} "
        f"{'scrape ms (live)':>17} {'scrape ms (gone)':>17}"
    )
    for pools in map(int, args.pools.split(",")):
        with tempfile.TemporaryDirectory() as tmp, PoolManager(registry=CollectorRegistry()) as m:
            directory = Path(tmp)
            setup(m, pools)
            publisher = ProcessPublisher(m, directory, interval=3600)
            publish = timed(publisher.publish, args.repeats)
            live = publisher.path.read_bytes()  # this process's pid: counted as live
            gone = live.replace(b'"exited":false', b'"exited":true', 1)
            size = len(live) / 1024
            for processes in map(int, args.processes.split(",")):
                scrapes = []
                for raw in (live, gone):
                    for n in range(1, processes):
                        (directory / f"poolwatch_{n}_sim.json").write_bytes(raw)
                    scrapes.append(timed(publisher.render_metrics, max(3, args.repeats // 3)))
                    for n in range(1, processes):
                        (directory / f"poolwatch_{n}_sim.json").unlink()
                print(
                    f"{pools:>6} {processes:>9} {size:>8.1f} {publish * 1000:>11.2f} "
                    f"{scrapes[0] * 1000:>17.1f} {scrapes[1] * 1000:>17.1f}"
                )
            publisher.stop()


if __name__ == "__main__":
    main()
