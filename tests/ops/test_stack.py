"""The docker-compose stack and its configs, checked with the real tools (no Docker engine)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

import support
from ops import opsfiles

PINNED_IMAGE = re.compile(r"^[a-z0-9./-]+:v?\d+\.\d+\.\d+(-[a-z0-9.-]+)?$")
REPLICAS = ("poolwatch-1", "poolwatch-2")
DASK_WORKERS = ("dask-worker-1", "dask-worker-2")
SCHEDULER = "tcp://dask-scheduler:8786"


def run(tool: str, *args: str, hint: str) -> subprocess.CompletedProcess[str]:
    path = support.require_tool(tool, hint=hint)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLWATCH_")}
    return subprocess.run(
        [path, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=opsfiles.ROOT,
        env=env,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(opsfiles.load_yaml(opsfiles.COMPOSE))


def test_docker_compose_accepts_the_file() -> None:
    done = run(
        "docker-compose",
        "-f",
        str(opsfiles.COMPOSE),
        "config",
        hint="apt-get install docker-compose",
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    for service in (*REPLICAS, "prometheus", "alertmanager", "grafana", "otel-collector", "jaeger",
                    "dask-scheduler", *DASK_WORKERS):  # fmt: skip
        assert f"\n  {service}:\n" in done.stdout, f"service {service} missing"


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    named_volumes = set(compose.get("volumes", {}))
    mounts = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source in named_volumes:
                continue
            path = (opsfiles.DEPLOY / source).resolve()
            assert path.exists(), f"{name} mounts {source}, which does not exist ({path})"
            mounts += 1
        build = service.get("build")
        if build:
            context = (opsfiles.DEPLOY / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), f"{name}: Dockerfile missing"
    assert mounts >= 6


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert PINNED_IMAGE.match(image), f"{name}: pin {image} to an exact version"
    base = re.search(r"^FROM (\S+)$", opsfiles.DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base.group(1)), base.group(1)


def test_dockerfile_copies_what_exists_and_installs_the_package() -> None:
    text = opsfiles.DOCKERFILE.read_text(encoding="utf-8")
    ignore = (opsfiles.DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    kept = {line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")}
    assert "*" in ignore.splitlines(), "the build context should be an allowlist"
    sources = [s for line in re.findall(r"^COPY (.+)$", text, re.M) for s in line.split()[:-1]]
    assert sources
    for source in sources:
        assert (opsfiles.ROOT / source).exists(), f"deploy/Dockerfile copies missing {source}"
        assert source.rstrip("/") in kept, f"Dockerfile.dockerignore drops {source}"
    assert 'pip install ".[dask]"' in text  # the stack's Dask services run this image too
    assert re.search(r"^USER (?!root)\S+$", text, re.M), "the service must not run as root"


def test_replicas_run_the_demo_reachably_with_a_token_and_tracing(
    compose: dict[str, Any],
) -> None:
    collector_http = opsfiles.load_yaml(opsfiles.COLLECTOR_CONFIG)["receivers"]["otlp"]
    port = collector_http["protocols"]["http"]["endpoint"].rsplit(":", 1)[1]
    for name in REPLICAS:
        service = compose["services"][name]
        assert service["command"] == [
            "demo", "--host", "0.0.0.0", "--port", "8000", "--dask", SCHEDULER,
        ]  # fmt: skip
        assert "dask-scheduler" in service["depends_on"]
        env = service["environment"]
        # Listening beyond loopback requires a token for mutations.
        assert env["POOLWATCH_API_TOKEN"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{port}"
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert published
    assert all(p.startswith("127.0.0.1:") for p in published), "publish on loopback only"


def test_a_dask_scheduler_and_two_workers_run_the_replicas_dask_pools(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    scheduler = services["dask-scheduler"]
    assert scheduler["image"] == services[REPLICAS[0]]["image"] == "poolwatch:local"
    assert scheduler["entrypoint"] == ["dask", "scheduler"]
    port = scheduler["command"][scheduler["command"].index("--port") + 1]
    assert SCHEDULER.endswith(f":{port}")
    for name in DASK_WORKERS:
        worker = services[name]
        # The workers import the demo's tasks: they run the image poolwatch is installed in.
        assert worker["image"] == "poolwatch:local"
        assert worker["entrypoint"] == ["dask", "worker", SCHEDULER]
        assert worker["command"][worker["command"].index("--nthreads") + 1] == "1"
        assert "/tmp" in worker["command"]  # a scratch space the image's user can write
        assert worker["depends_on"] == ["dask-scheduler"]
    # The image's health check asks port 8000, which only the replicas serve.
    for name in ("dask-scheduler", *DASK_WORKERS):
        assert services[name]["healthcheck"] == {"disable": True}
        assert not services[name].get("ports"), f"{name} need not be published"


def test_prometheus_scrapes_both_replicas_and_keeps_exemplars(compose: dict[str, Any]) -> None:
    config = opsfiles.load_yaml(opsfiles.PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["poolwatch"]["static_configs"] for t in sc["targets"]]
    assert sorted(targets) == [f"{name}:8000" for name in REPLICAS]
    command = compose["services"]["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in command
    rule_files = {(opsfiles.DEPLOY / f).resolve() for f in config["rule_files"]}
    assert rule_files == {opsfiles.RECORDING_RULES, opsfiles.ALERT_RULES}
    assert "./rules:/etc/prometheus/rules:ro" in compose["services"]["prometheus"]["volumes"]


def test_promtool_check_config() -> None:
    done = run(
        "promtool",
        "check",
        "config",
        str(opsfiles.PROMETHEUS_CONFIG),
        hint="apt-get install prometheus",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid prometheus config file" in done.stdout


def test_amtool_check_config() -> None:
    done = run(
        "amtool",
        "check-config",
        str(opsfiles.ALERTMANAGER_CONFIG),
        hint="apt-get install prometheus-alertmanager",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_alertmanager_inhibitions_name_real_alerts() -> None:
    alerts = {rule["alert"] for rule in opsfiles.alert_rules()}
    config = opsfiles.load_yaml(opsfiles.ALERTMANAGER_CONFIG)
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            match = re.fullmatch(r'alertname(=~|=|!=)"(.+)"', matcher)
            assert match, matcher
            if match.group(1) == "=~":
                assert any(re.fullmatch(match.group(2), a) for a in alerts), matcher
            else:
                assert match.group(2) in alerts, matcher


def test_collector_pipeline_is_wired_to_jaeger(compose: dict[str, Any]) -> None:
    config = opsfiles.load_yaml(opsfiles.COLLECTOR_CONFIG)
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        for component in pipeline[kind]:
            assert component in config[kind], f"{component} is used but not defined"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]
    exporters = [config["exporters"][name] for name in pipeline["exporters"]]
    assert any(e.get("endpoint") == "jaeger:4317" for e in exporters)
    assert "jaeger" in compose["services"]


def test_grafana_datasources_point_at_compose_services(compose: dict[str, Any]) -> None:
    sources = opsfiles.load_yaml(opsfiles.DATASOURCES)["datasources"]
    for source in sources:
        host = re.fullmatch(r"http://([a-z-]+):\d+", source["url"])
        assert host, source["url"]
        assert host.group(1) in compose["services"], f"{source['name']}: no such service"
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_docs_explain_the_stack() -> None:
    text = (opsfiles.ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "docker compose -f deploy/docker-compose.yml up" in text
    for port in ("3000", "9090", "9093", "16686", "8001", "8002"):
        assert f"127.0.0.1:{port}" in text or f"localhost:{port}" in text, port
    assert Path(opsfiles.RUNBOOK).is_file()
