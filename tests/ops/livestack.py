"""A live stack for the ops tests: ``poolwatch demo``, a real Prometheus, an OTLP sink.

Everything listens on 127.0.0.1 on free ports and stops when its context ends,
whatever happened in between. Prometheus gets a configuration generated from
``deploy/prometheus.yml`` (1 s scrape and evaluation, this demo as the target) and
test copies of the shipped rules in which only ``for`` and the thresholds listed in
``THRESHOLD_OVERRIDES`` differ.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import support
from ops import opsfiles

T = TypeVar("T")

#: The scrape job of the demo: not "poolwatch", so nothing can rely on that name.
JOB = "orders-service"

#: Patience of every alert in the test copy of the rules (the shipped rules wait minutes).
TEST_FOR = "1s"

#: Thresholds a test cannot reach in seconds: (alert, its shipped expression, the text
#: replaced, its replacement). The queue-wait alert ships at 60 s; the test waits 1 s.
THRESHOLD_OVERRIDES = (
    ("PoolwatchQueueWaitTooLong", "poolwatch_pool_oldest_queued_seconds > 60", "> 60", "> 1"),
)


def write_test_rules(directory: Path) -> list[Path]:
    """Copies of the shipped rule files, with TEST_FOR and THRESHOLD_OVERRIDES applied."""
    written = []
    for source in (opsfiles.RECORDING_RULES, opsfiles.ALERT_RULES):
        spec = opsfiles.load_yaml(source)
        for group in spec["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                rule["for"] = TEST_FOR
                for alert, shipped_expr, old, new in THRESHOLD_OVERRIDES:
                    if rule["alert"] == alert:
                        if rule["expr"].strip() != shipped_expr:
                            raise AssertionError(
                                f"{alert} changed ({rule['expr']!r}); update THRESHOLD_OVERRIDES"
                            )
                        rule["expr"] = rule["expr"].replace(old, new)
        target = directory / source.name
        target.write_text(json.dumps(spec, indent=2), encoding="utf-8")  # JSON is YAML
        written.append(target)
    return written


def prometheus_config(directory: Path, live: Stack) -> Path:
    """deploy/prometheus.yml, made fast and pointed at the live stack and the test rules.

    The ``poolwatch`` job scrapes the demo and a port nothing listens on (a target
    that is down); alerts go to the stack's Alertmanager.
    """
    config = opsfiles.load_yaml(opsfiles.PROMETHEUS_CONFIG)
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    alertmanager = live.alertmanager_url.removeprefix("http://")
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "poolwatch")
    job["job_name"] = JOB  # the rules and dashboards must not lean on the name "poolwatch"
    job["static_configs"] = [{"targets": [live.demo_target, live.dead_target]}]
    config["scrape_configs"] = [job]
    config["rule_files"] = [str(path) for path in write_test_rules(directory)]
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


@dataclass
class Process:
    """A child process whose output goes to a file (no reader threads to leak)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


@contextlib.contextmanager
def process(name: str, argv: list[str], log: Path, env: dict[str, str]) -> Iterator[Process]:
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    proc = Process(name, popen, log)
    try:
        yield proc
    finally:
        proc.stop()


def http_json(url: str, payload: dict[str, Any] | None = None, method: str = "GET") -> Any:
    """GET or send JSON; returns the decoded body (errors too), or None if unreachable."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def otlp_sink() -> Iterator[tuple[str, list[str]]]:
    """An OTLP/HTTP endpoint that accepts and counts exports; yields (url, paths posted)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SinkHandler)
    server.daemon_threads = True
    paths: list[str] = []
    server.paths = paths  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="otlp-sink", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float,
    describe: Callable[[], str],
    interval: float = 0.25,
) -> T:
    """``support.wait_until`` with a failure message built when it fails."""
    return support.wait_until(predicate, timeout=timeout, interval=interval, message=describe)


def _up_or_raise(proc: Process, url: str) -> bool:
    if proc.popen.poll() is not None:
        raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.output()}")
    return is_up(url)


def poolwatch_command() -> list[str]:
    script = Path(sys.executable).with_name("poolwatch")
    if script.exists():
        return [str(script)]
    found = shutil.which("poolwatch")
    return [found] if found else [sys.executable, "-m", "poolwatch"]


@dataclass
class Stack:
    """Addresses of the live processes, and small clients for their APIs."""

    demo_url: str
    demo_target: str
    dead_target: str
    prometheus_url: str
    alertmanager_url: str
    trace_exports: list[str]
    processes: list[Process] = field(default_factory=list)

    # -- poolwatch API
    def create_pool(self, **spec: Any) -> None:
        body = http_json(f"{self.demo_url}/api/pools", spec, "POST")
        if not (isinstance(body, dict) and body.get("name") == spec["name"]):
            raise AssertionError(f"creating pool {spec['name']} failed: {body}")

    def pause(self, pool: str) -> None:
        body = http_json(f"{self.demo_url}/api/pools/{pool}", {"paused": True}, "PATCH")
        if not (isinstance(body, dict) and body.get("state") == "paused"):
            raise AssertionError(f"pausing {pool} failed: {body}")

    def submit(self, pool: str, task: str, **kwargs: Any) -> Any:
        payload = {"task": task, "kwargs": kwargs}
        return http_json(f"{self.demo_url}/api/pools/{pool}/tasks", payload, "POST")

    def cancel_running(self) -> None:
        """Ask every running task to stop, so the demo shuts down without a grace wait."""
        page = http_json(f"{self.demo_url}/api/tasks?state=running&per_page=100")
        for task in page.get("data", []) if isinstance(page, dict) else []:
            http_json(f"{self.demo_url}/api/tasks/{task['id']}/cancel", {}, "POST")

    # -- Prometheus API
    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = http_json(f"{self.prometheus_url}/api/v1/{path}?{query}")
        if not (isinstance(body, dict) and body.get("status") == "success"):
            raise AssertionError(f"Prometheus /api/v1/{path} {params} failed: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return list(data["result"])

    def firing(self) -> set[tuple[str, str]]:
        """(alertname, pool or instance) of every firing alert."""
        alerts = self.api("alerts")["alerts"]
        return {
            (a["labels"]["alertname"], a["labels"].get("pool", a["labels"].get("instance", "")))
            for a in alerts
            if a["state"] == "firing"
        }

    # -- Alertmanager API
    def notified(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Alerts Alertmanager holds, by (alertname, pool or instance)."""
        with urllib.request.urlopen(f"{self.alertmanager_url}/api/v2/alerts", timeout=2) as r:
            alerts = json.loads(r.read())
        return {
            (a["labels"]["alertname"], a["labels"].get("pool", a["labels"].get("instance", ""))): a
            for a in alerts
        }

    def diagnostics(self) -> str:
        return "\n".join(f"--- {p.name} output:\n{p.output()}" for p in self.processes)


@contextlib.contextmanager
def live_stack(directory: Path) -> Iterator[Stack]:
    """Start the OTLP sink, ``poolwatch demo``, Alertmanager and Prometheus; stop them all."""
    prometheus = support.require_tool("prometheus", hint="apt-get install prometheus")
    alertmanager = support.require_tool(
        "prometheus-alertmanager", hint="apt-get install prometheus-alertmanager"
    )
    ports = [support.free_port() for _ in range(4)]
    live = Stack(
        demo_url=f"http://127.0.0.1:{ports[0]}",
        demo_target=f"127.0.0.1:{ports[0]}",
        dead_target=f"127.0.0.1:{ports[1]}",
        prometheus_url=f"http://127.0.0.1:{ports[2]}",
        alertmanager_url=f"http://127.0.0.1:{ports[3]}",
        trace_exports=[],
    )
    tools_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    # The sink outlives the processes, so the demo can flush its spans while it stops.
    with otlp_sink() as (sink_url, exports), contextlib.ExitStack() as stack:
        live.trace_exports = exports
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLWATCH_", "OTEL_"))}
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink_url,
            OTEL_SERVICE_NAME="poolwatch-ops-test",
            OTEL_BSP_SCHEDULE_DELAY="200",
        )
        commands = {
            "poolwatch demo": (
                [*poolwatch_command(), "demo", "--port", str(ports[0])],
                env,
                f"{live.demo_url}/readyz",
            ),
            "alertmanager": (
                [
                    alertmanager,
                    f"--config.file={opsfiles.ALERTMANAGER_CONFIG}",
                    f"--storage.path={directory / 'alertmanager'}",
                    f"--web.listen-address=127.0.0.1:{ports[3]}",
                    "--cluster.listen-address=",
                    "--log.level=warn",
                ],
                tools_env,
                f"{live.alertmanager_url}/-/ready",
            ),
            "prometheus": (
                [
                    prometheus,
                    f"--config.file={prometheus_config(directory, live)}",
                    f"--storage.tsdb.path={directory / 'prometheus'}",
                    f"--web.listen-address=127.0.0.1:{ports[2]}",
                    "--enable-feature=exemplar-storage",
                    "--log.level=warn",
                ],
                tools_env,
                f"{live.prometheus_url}/-/ready",
            ),
        }
        for name, (argv, process_env, _) in commands.items():
            log = directory / f"{name.replace(' ', '-')}.log"
            live.processes.append(stack.enter_context(process(name, argv, log, process_env)))
        for proc, (_, _, ready) in zip(live.processes, commands.values(), strict=True):
            support.wait_until(
                functools.partial(_up_or_raise, proc, ready),
                timeout=20,
                message=f"{proc.name} to answer {ready} (its output: {proc.log})",
            )
        yield live
