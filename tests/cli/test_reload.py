"""``serve`` reloads its config file on SIGHUP and with ``--watch-config``: real processes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from poolwatch.cli import main
from support import wait_until

BASE = """
[shutdown]
grace_period = 1.0

[[pools]]
name = "work"
max_workers = 1
queue_capacity = 10

[[pools]]
name = "old"
max_workers = 2
"""

CHANGED = """
[shutdown]
grace_period = 1.0

[[pools]]
name = "work"
max_workers = 3
queue_capacity = 10

[[pools]]
name = "new"
max_workers = 2
queue_capacity = 0
rejection_policy = "discard"
"""

BAD = """
[[pools]]
name = "work"
max_workers = 0
"""


def _pools(url: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in httpx.get(f"{url}/api/pools").json()["data"]}


def _reloads(service: Any) -> list[str]:
    return [line for line in service.stderr.splitlines() if "config reload" in line]


def _audit(service: Any) -> list[dict[str, Any]]:
    lines = [line for line in service.stderr.splitlines() if line.startswith("{")]
    return [record for record in map(json.loads, lines) if record["event"] == "config"]


def _write(path: Path, text: str) -> None:
    # Written aside and renamed, as editors do, so a reader never sees half a file.
    aside = path.with_suffix(".tmp")
    aside.write_text(text)
    os.replace(aside, path)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "poolwatch.toml"
    path.write_text(BASE)
    return path


def test_sighup_creates_changes_and_removes_pools(config: Path, start_service: Any) -> None:
    service = start_service("serve", "--config", str(config))
    service.wait_ready()
    url = service.url
    # Changed over the API since start-up, and not changed in the file: it stays.
    patched = httpx.patch(f"{url}/api/pools/work", json={"queue_capacity": 5})
    assert patched.status_code == 200
    _write(config, CHANGED.replace("queue_capacity = 10", "queue_capacity = 10  # same"))
    service.terminate(signal.SIGHUP)
    wait_until(lambda: _reloads(service), message="a reload line")
    pools = _pools(url)
    assert sorted(pools) == ["new", "work"]
    assert pools["work"]["max_workers"] == 3
    assert pools["work"]["queue_capacity"] == 5
    assert (pools["new"]["queue_capacity"], pools["new"]["rejection_policy"]) == (0, "discard")
    assert service.proc.poll() is None  # SIGHUP no longer ends the process
    [line] = _reloads(service)
    assert "created pool new" in line
    assert "changed pool work (max_workers=3)" in line
    assert "removing pool old (draining)" in line
    actions = {(r["action"], r["target"], r["result"]) for r in _audit(service)}
    assert actions == {
        ("pool.create", "new", "ok"),
        ("pool.update", "work", "ok"),
        ("pool.delete", "old", "draining"),
    }
    update = next(r for r in _audit(service) if r["action"] == "pool.update")
    assert update["changes"] == {"max_workers": 3}
    assert update["source"] == str(config)
    # The file now changes the setting the API changed: the file wins.
    _write(config, CHANGED.replace("queue_capacity = 10", "queue_capacity = 20"))
    service.terminate(signal.SIGHUP)
    wait_until(lambda: len(_reloads(service)) == 2, message="a second reload line")
    assert _pools(url)["work"]["queue_capacity"] == 20
    service.terminate()
    assert service.wait_exit() == 0


def test_a_bad_file_changes_nothing_and_reads_as_at_start_up(
    config: Path, start_service: Any, capsys: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    assert main(["serve", "--config", str(bad)]) == 2
    at_start = capsys.readouterr().err.strip().removeprefix("poolwatch: error: ")
    assert "max_workers must be greater than 0" in at_start

    service = start_service("serve", "--config", str(config))
    service.wait_ready()
    before = _pools(service.url)
    _write(config, BAD)
    service.terminate(signal.SIGHUP)
    wait_until(lambda: _reloads(service), message="a reload line")
    [line] = _reloads(service)
    same = at_start.replace(str(bad), str(config))
    assert line.endswith(f"config reload (SIGHUP) refused, nothing changed: {same}")
    assert "ERROR" in line
    assert _pools(service.url) == before
    assert [r["result"] for r in _audit(service)] == ["refused"]
    assert service.get("/readyz") is not None
    service.terminate()
    assert service.wait_exit() == 0


def test_watch_config_reloads_when_the_file_changes(config: Path, start_service: Any) -> None:
    service = start_service("serve", "--config", str(config), "--watch-config")
    service.wait_ready()
    _write(config, BASE.replace("max_workers = 2", "max_workers = 4"))
    wait_until(lambda: _reloads(service), message="a reload after the file changed")
    assert "(file changed)" in _reloads(service)[0]
    assert _pools(service.url)["old"]["max_workers"] == 4
    service.terminate()
    assert service.wait_exit() == 0


def test_sighup_without_a_config_file_is_harmless(start_service: Any) -> None:
    service = start_service("serve")
    service.wait_ready()
    service.terminate(signal.SIGHUP)
    wait_until(lambda: "no config file to reload" in service.stderr)
    assert service.proc.poll() is None
    service.terminate()
    assert service.wait_exit() == 0


def test_watch_config_needs_a_file(capsys: Any) -> None:
    assert main(["serve", "--watch-config"]) == 2
    assert "--watch-config needs a config file" in capsys.readouterr().err


def test_a_process_pool_from_the_file_and_what_a_reload_cannot_change(
    config: Path, start_service: Any
) -> None:
    process_pool = '\n[[pools]]\nname = "procs"\nkind = "process"\nmax_workers = 1\n'
    _write(config, BASE + process_pool + "max_tasks_per_child = 10\n")
    service = start_service("serve", "--config", str(config))
    service.wait_ready()
    assert _pools(service.url)["procs"]["kind"] == "process"
    _write(config, BASE + process_pool.replace('"process"', '"thread"'))
    service.terminate(signal.SIGHUP)
    wait_until(lambda: _reloads(service), message="a reload line")
    [line] = _reloads(service)
    assert "pool procs: kind applies when the pool is re-created" in line
    assert "pool procs: the options of its kind apply when the pool is re-created" in line
    assert _pools(service.url)["procs"]["kind"] == "process"
    service.terminate()
    assert service.wait_exit() == 0
