"""``poolwatch demo --dask``: the demo's ``dask`` pool on a LocalCluster, as a real process."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import psutil

from poolwatch.cli import main
from support import require_module, wait_until


def test_demo_runs_a_dask_pool_on_a_local_cluster(tmp_path: Path, start_service) -> None:
    require_module("distributed", hint="--dask needs the [dask] extra")
    service = start_service("demo", "--dask")
    service.wait_ready(timeout=60)
    names = {p["name"] for p in httpx.get(f"{service.url}/api/pools").json()["data"]}
    assert names == {"io", "cpu", "flaky", "bounded", "slow", "dask"}

    def dask_completed() -> float:
        text = httpx.get(f"{service.url}/metrics").text
        assert 'poolwatch_pool_info{pool="dask",kind="dask"} 1.0' in text
        assert 'poolwatch_pool_info{pool="io",kind="thread"} 1.0' in text
        found = re.findall(r'poolwatch_tasks_completed_total\{pool="dask",task="demo.crunch",'
                           r'outcome="succeeded"\} ([0-9.e+]+)', text)  # fmt: skip
        return sum(float(v) for v in found)

    wait_until(lambda: dask_completed() > 0, timeout=60, message="the dask pool completes tasks")
    workers = psutil.Process(service.proc.pid).children(recursive=True)
    assert len([w for w in workers if "spawn_main" in " ".join(w.cmdline())]) == 2
    service.terminate()
    assert service.wait_exit(timeout=60) == 0
    _gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"the demo left Dask worker processes running: {alive}"


def test_demo_dask_without_the_extra_says_how_to_get_it(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert main(["demo", "--dask", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--dask needs the distributed package: pip install 'poolwatch[dask]'" in err
