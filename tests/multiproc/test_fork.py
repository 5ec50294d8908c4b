"""A forked child (gunicorn ``--preload``, multiprocessing's ``fork``) starts with a
sampler and a publisher of its own, and with none of the parent's locks held."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# The parent serves (sampler running, numbers published); the child serves again.
SAMPLER = """
import json, os, sys, threading, time
import httpx
from poolwatch import PoolManager, start_service
from poolwatch.samples import served_history
from prometheus_client import CollectorRegistry

manager = PoolManager(registry=CollectorRegistry())
pool = manager.create_pool("work", max_workers=1)
for f in [pool.submit(abs, -i) for i in range(5)]:
    f.result()
parent = start_service(manager, port=0)
history = served_history(manager)
pause = threading.Event()  # never set: a wait on it is a bounded pause between polls
deadline = time.monotonic() + 10
while not history.samples() and time.monotonic() < deadline:
    pause.wait(0.01)  # until the parent's first sample, or the deadline
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    seen = {"running_after_fork": served_history(manager).running,
            "samples_after_fork": len(history.samples())}
    child = start_service(manager, port=0)
    for f in [pool.submit(abs, -i) for i in range(2)]:
        f.result()
    deadline = time.monotonic() + 10
    body = {}
    while time.monotonic() < deadline:
        body = httpx.get(child.url + "api/samples", params={"seconds": 60}).json()
        done = [d for d in body["data"] if d["pool"] == "work" and sum(d["values"]["completed"])]
        if body["sampling"] and done:
            break
        pause.wait(0.02)
    seen["sampling"] = body.get("sampling")
    seen["completed"] = [sum(d["values"]["completed"]) for d in body.get("data", [])]
    seen["running"] = history.running
    child.stop()
    os.write(write, json.dumps(seen).encode())
    os._exit(0)
os.close(write)
out = os.read(read, 65536)
os.waitpid(pid, 0)
parent.stop()
print(out.decode())
"""


def run(script: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_forked_child_samples_its_own_pools() -> None:
    seen = run(SAMPLER)
    # Nothing of the parent's sampler is inherited: not its thread, not its samples...
    assert seen["running_after_fork"] is False
    assert seen["samples_after_fork"] == 0
    # ... and the child's service samples the child's pools, from zero.
    assert seen["sampling"] is True
    assert seen["running"] is True
    assert seen["completed"] == [2]


# Threads of the parent use every module-level lock while it forks, again and again; a
# child that inherited one of them held would hang (and be reported) instead of exiting.
LOCKS = """
import os, sys, threading, time
from pathlib import Path
from prometheus_client import CollectorRegistry
from poolwatch import PoolManager
from poolwatch.multiproc import ProcessPublisher, publisher_for
from poolwatch.procfiles import warn_once
from poolwatch.samples import served_history

directory = Path(sys.argv[1])
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
manager = PoolManager(registry=CollectorRegistry())
manager.create_pool("work", max_workers=1)
publisher = publisher_for(manager)
stop = threading.Event()

def busy():
    n = 0
    while not stop.is_set():
        served_history(manager)
        publisher.server()
        warn_once(("busy", n % 7), "busy %s", n)
        n += 1

threads = [threading.Thread(target=busy) for _ in range(3)]
for t in threads:
    t.start()
hung = 0
for _ in range(int(sys.argv[2])):
    pid = os.fork()
    if pid == 0:
        served_history(manager).acquire()
        publisher_for(manager).server()
        warn_once(("child",), "child")
        os._exit(0)
    # The child's end gates the next round; one that hangs (a lock inherited held) is
    # killed after 10 s and counted.
    reaper = threading.Thread(target=os.waitpid, args=(pid, 0))
    reaper.start()
    reaper.join(10)
    if reaper.is_alive():
        os.kill(pid, 9)
        reaper.join()
        hung += 1
stop.set()
for t in threads:
    t.join()
publisher.stop()
print('{"hung": %d}' % hung)
"""


def test_a_child_forked_while_threads_hold_the_locks_never_hangs(tmp_path: Path) -> None:
    assert run(LOCKS, str(tmp_path), "40") == {"hung": 0}
