"""Headless HTTP load test: the control API against a trivial Starlette endpoint.

    python loadtest/load.py                 # demo server, 3 x 6 s per endpoint and phase
    python loadtest/load.py --idle          # the demo pools without the load generator
    python loadtest/load.py --duration 20 --repeats 5 --connections 64 --paced-rps 200
    python loadtest/load.py --only trivial,healthz,list_tasks

Starts ``poolwatch demo`` (its load generator running, as in real use) and a trivial
Starlette JSON endpoint served by uvicorn with the same settings, each in its own
process on a free loopback port; then loads one endpoint at a time, in two phases:

- capacity: requests/s with ``--connections`` requests always in flight (wrk, when
  installed; Debian package ``wrk``), or ``--users`` locust users back to back. Locust
  spends more CPU per request than the server does, so on a small machine it, not the
  server, would set the figure; wrk does not. Latency here is mostly queueing (Little's
  law), and is reported as p99 at capacity;
- latency: locust offering ``--paced-rps`` requests/s (well under capacity) as Poisson
  arrivals; p50 and p99 here are the service time a client sees.

The servers run on the first CPU and the clients on the others (``--no-pin`` to let
them share), so that neither takes the other's CPU time.

There are two baselines. ``GET /trivial`` runs in a process of its own, with nothing
else in it. ``GET /healthz`` is poolwatch's own trivial JSON endpoint: it shares the
process, and so the CPU and the GIL, with the demo's pools (a CPU-bound pool among
them). The first shows the API's cost plus the cost of running the pools beside it;
the second the API's cost alone. Both ratios are reported.

Locust's CSV and HTML reports, wrk's output (``wrk.log``) and ``summary.csv``/
``summary.md`` go to ``loadtest/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SRC = HERE.parent / "src"

#: (locust tag, request name in the stats, server) in the order reported.
SCENARIOS = [
    ("trivial", "GET /trivial (baseline)", "trivial"),
    ("healthz", "GET /healthz (same process)", "poolwatch"),
    ("list_pools", "GET /api/pools", "poolwatch"),
    ("list_tasks", "GET /api/tasks", "poolwatch"),
    ("submit", "POST /api/pools/{name}/tasks", "poolwatch"),
    ("metrics", "GET /metrics", "poolwatch"),
]
READS = {"GET /api/pools", "GET /api/tasks"}

#: What wrk sends per scenario (the same requests as the locustfile's tasks).
WRK_REQUESTS = {
    "trivial": ("GET", "/trivial", None),
    "healthz": ("GET", "/healthz", None),
    "list_pools": ("GET", "/api/pools", None),
    "list_tasks": ("GET", "/api/tasks?per_page=20", None),
    "submit": ("POST", "/api/pools/bench/tasks", '{"task": "demo.sleep", "args": [0]}'),
    "metrics": ("GET", "/metrics", None),
}
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def serve_trivial(port: int) -> None:
    """The baseline: one JSON endpoint, served by uvicorn exactly as poolwatch serves."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def trivial(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/trivial", trivial)])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
    )
    uvicorn.Server(config).run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "POOLWATCH_"))}
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server for {url} did not come up within {timeout}s")


@dataclass
class Row:
    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p99: float


@dataclass
class Result:
    capacity: Row
    paced: Row


def _read_stats(prefix: Path, name: str) -> Row:
    with open(f"{prefix}_stats.csv", newline="") as f:
        for record in csv.DictReader(f):
            if record["Name"] == name:
                return Row(
                    name=name,
                    requests=int(record["Request Count"]),
                    failures=int(record["Failure Count"]),
                    rps=float(record["Requests/s"]),
                    p50=float(record["50%"]),
                    p99=float(record["99%"]),
                )
    raise SystemExit(f"no stats for {name!r} in {prefix}_stats.csv")


def _cpu_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """CPUs for the servers and for locust: apart, so the client cannot take the servers'
    CPU time (nor they its) and latency measures the server, not the scheduler."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def _pinned(cpus: set[int] | None, command: list[str]) -> list[str]:
    """``command`` run on ``cpus`` only (with util-linux's ``taskset``)."""
    if cpus is None:
        return command
    return ["taskset", "--cpu-list", ",".join(map(str, sorted(cpus))), *command]


def _run_locust(
    tag: str,
    host: str,
    users: int,
    duration: int,
    *,
    user_rps: float = 0,
    label: str = "",
    cpus: set[int] | None = None,
) -> Path:
    prefix = RESULTS / f"{tag}{label}"
    command = [
        sys.executable, "-m", "locust",
        "-f", str(HERE / "locustfile.py"),
        "--headless", "--only-summary",
        "-u", str(users), "-r", str(users),
        "-t", f"{duration}s",
        "-H", host,
        "-T", tag,
        "--csv", str(prefix),
        "--html", f"{prefix}.html",
        "--reset-stats",  # leave out each user's first request, which connects
        "--loglevel", "WARNING",
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    env = _env()
    if user_rps:
        env["LOADTEST_USER_RPS"] = str(user_rps)
    with (RESULTS / "locust.log").open("ab") as log:
        subprocess.run(_pinned(cpus, command), check=True, env=env, stdout=log, stderr=log)
    return prefix


def _wrk_ms(text: str, label: str) -> float:
    m = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if m is None:
        raise SystemExit(f"no {label} latency in wrk's output:\n{text}")
    return float(m.group(1)) * _WRK_UNITS[m.group(2)]


def _run_wrk(
    tag: str, name: str, host: str, connections: int, duration: int, cpus: set[int] | None
) -> Row:
    """Capacity with wrk: one C thread keeps ``connections`` requests in flight, so the
    server, not the client, is the bottleneck (locust tops out at a few thousand req/s
    on one CPU)."""
    method, path, body = WRK_REQUESTS[tag]
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if body is not None:
        script = RESULTS / f"wrk-{tag}.lua"
        script.write_text(
            f'wrk.method = "{method}"\nwrk.body = {json.dumps(body)}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        command += ["-s", str(script)]
    done = subprocess.run(
        _pinned(cpus, [*command, host + path]), check=True, capture_output=True, text=True
    )
    text = done.stdout
    with (RESULTS / "wrk.log").open("a") as log:
        log.write(f"$ {' '.join(command)} {host + path}\n{text}\n")
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    if rps is None:
        raise SystemExit(f"no Requests/sec in wrk's output:\n{text}")
    total = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
    failures = sum(
        int(n)
        for n in re.findall(r"(?:Non-2xx or 3xx responses:|connect|read|write|timeout) (\d+)", text)
    )
    return Row(
        name=name,
        requests=int(total.group(1)) if total else 0,
        failures=failures,
        rps=float(rps.group(1)),
        p50=_wrk_ms(text, "50%"),
        p99=_wrk_ms(text, "99%"),
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


IDLE_CONFIG = """tasks = ["poolwatch.demo"]
[[pools]]
name = "io"
max_workers = 16
[[pools]]
name = "cpu"
max_workers = 2
[[pools]]
name = "flaky"
max_workers = 4
[[pools]]
name = "bounded"
max_workers = 2
queue_capacity = 8
[[pools]]
name = "slow"
max_workers = 2
run_timeout = 1.0
"""


def _median_row(rows: list[Row]) -> Row:
    return Row(
        name=rows[0].name,
        requests=sum(r.requests for r in rows),
        failures=sum(r.failures for r in rows),
        rps=statistics.median(r.rps for r in rows),
        p50=statistics.median(r.p50 for r in rows),
        p99=statistics.median(r.p99 for r in rows),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per endpoint and phase")
    parser.add_argument("--users", type=int, default=20, help="users in the capacity phase")
    parser.add_argument(
        "--paced-rps", type=float, default=100, help="offered load in the latency phase"
    )
    parser.add_argument(
        "--idle",
        action="store_true",
        help="serve the demo pools without the demo's load generator",
    )
    parser.add_argument(
        "--capacity-client",
        choices=["auto", "wrk", "locust"],
        default="auto",
        help="client of the capacity phase (default: wrk when installed, else locust)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="connections wrk keeps busy in the capacity phase (default 32)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the servers and locust share every CPU (default: servers on the first "
        "CPU, locust on the others)",
    )
    parser.add_argument(
        "--only",
        metavar="TAGS",
        help="comma-separated scenarios to run, of: " + ", ".join(t for t, _, _ in SCENARIOS),
    )
    parser.add_argument("--serve-trivial", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_trivial:
        serve_trivial(args.serve_trivial)
        return 0

    scenarios = SCENARIOS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {t for t, _, _ in SCENARIOS}
        if unknown:
            parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))} in --only")
        if not {"trivial", "healthz"} <= wanted:
            parser.error("--only must keep the baselines: trivial,healthz")
        scenarios = [s for s in SCENARIOS if s[0] in wanted]
    server_cpus, client_cpus = _cpu_split(not args.no_pin)
    if args.capacity_client == "auto":
        args.capacity_client = "wrk" if shutil.which("wrk") else "locust"
    elif args.capacity_client == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    pw_port, trivial_port = _free_port(), _free_port()
    pw_url, trivial_url = f"http://127.0.0.1:{pw_port}", f"http://127.0.0.1:{trivial_port}"
    if args.idle:
        config = RESULTS / "idle.toml"
        config.write_text(IDLE_CONFIG)
        command = ["serve", "--config", str(config)]
    else:
        command = ["demo"]
    logs = (RESULTS / "servers.log").open("wb")
    service = subprocess.Popen(
        _pinned(server_cpus, [sys.executable, "-m", "poolwatch", *command, "--port", str(pw_port)]),
        env=_env(), stdout=logs, stderr=logs,
    )  # fmt: skip
    trivial = subprocess.Popen(
        _pinned(server_cpus, [sys.executable, str(Path(__file__).resolve()), "--serve-trivial",
                              str(trivial_port)]),
        env=_env(), stdout=logs, stderr=logs,
    )  # fmt: skip
    paced_users = 10
    capacity: dict[str, list[Row]] = {name: [] for _, name, _ in scenarios}
    paced: dict[str, list[Row]] = {name: [] for _, name, _ in scenarios}
    try:
        _wait_up(f"{pw_url}/readyz", service)
        _wait_up(f"{trivial_url}/trivial", trivial)
        created = httpx.post(f"{pw_url}/api/pools", json={"name": "bench", "max_workers": 4})
        created.raise_for_status()
        # Repeats interleave the endpoints, so drift in the machine's load hits all alike.
        for repeat in range(1, args.repeats + 1):
            for tag, name, server in scenarios:
                host = trivial_url if server == "trivial" else pw_url
                print(f"[{repeat}/{args.repeats}] {name} ...", flush=True)
                if args.capacity_client == "wrk":
                    row = _run_wrk(tag, name, host, args.connections, args.duration, client_cpus)
                else:
                    prefix = _run_locust(
                        tag, host, args.users, args.duration, label=f"-{repeat}", cpus=client_cpus
                    )
                    row = _read_stats(prefix, name)
                capacity[name].append(row)
                prefix = _run_locust(
                    tag,
                    host,
                    paced_users,
                    args.duration,
                    user_rps=args.paced_rps / paced_users,
                    label=f"-paced-{repeat}",
                    cpus=client_cpus,
                )
                paced[name].append(_read_stats(prefix, name))
    finally:
        _stop(service)
        _stop(trivial)
        logs.close()
    results = [
        Result(_median_row(capacity[name]), _median_row(paced[name])) for _, name, _ in scenarios
    ]
    _report(results, args, pinned=server_cpus is not None)
    return 0


def _report(results: list[Result], args: argparse.Namespace, pinned: bool) -> None:
    baseline = results[0].capacity.rps
    same_process = results[1].capacity.rps
    if args.capacity_client == "wrk":
        capacity_how = f"wrk, {args.connections} connections"
    else:
        capacity_how = f"locust, {args.users} users back to back"
    pinning = (
        "Servers on the first CPU, clients on the others."
        if pinned
        else "Servers and clients share the CPUs."
    )
    lines = [
        f"HTTP load test against `poolwatch {'serve' if args.idle else 'demo'}`"
        f"{' (idle pools)' if args.idle else ' (load generator running)'}: "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, medians of "
        f"{args.repeats} interleaved {args.duration}s runs. Capacity: {capacity_how}. "
        f"Latency: locust, {args.paced_rps:g} req/s offered (Poisson arrivals). "
        f"{pinning}",
        "",
        "| endpoint | capacity req/s | x trivial | x healthz | p99 ms at capacity "
        "| p50 ms (paced) | p99 ms (paced) | failures |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    with (RESULTS / f"summary{'-idle' if args.idle else ''}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["endpoint", "capacity_rps", "ratio_trivial", "ratio_healthz", "capacity_p99_ms",
             "paced_rps", "p50_ms", "p99_ms", "failures"]
        )  # fmt: skip
        for r in results:
            ratio = r.capacity.rps / baseline if baseline else 0.0
            ratio_same = r.capacity.rps / same_process if same_process else 0.0
            failures = r.capacity.failures + r.paced.failures
            writer.writerow(
                [r.capacity.name, f"{r.capacity.rps:.1f}", f"{ratio:.2f}", f"{ratio_same:.2f}",
                 r.capacity.p99, f"{r.paced.rps:.1f}", r.paced.p50, r.paced.p99, failures]
            )  # fmt: skip
            lines.append(
                f"| {r.capacity.name} | {r.capacity.rps:.0f} | {ratio:.2f} | {ratio_same:.2f} "
                f"| {r.capacity.p99:.3g} | {r.paced.p50:g} | {r.paced.p99:g} | {failures} |"
            )
    checks = []
    for r in results[2:]:
        name = r.capacity.name
        if name == "GET /metrics":
            continue
        for label, base in (("trivial", baseline), ("healthz", same_process)):
            checks.append((f"{name} capacity >= 0.5x {label}", r.capacity.rps >= 0.5 * base))
        if name in READS:
            checks.append((f"{name} p99 <= 10 ms", r.paced.p99 <= 10))
    lines.append("")
    lines.extend(f"- {'PASS' if ok else 'MISS'}: {text}" for text, ok in checks)
    text = "\n".join(lines)
    (RESULTS / f"summary{'-idle' if args.idle else ''}.md").write_text(text + "\n")
    print(text)
    print(f"\nreports: {RESULTS}/*.html, {RESULTS}/*_stats.csv, {RESULTS}/summary*.md")


if __name__ == "__main__":
    sys.exit(main())
