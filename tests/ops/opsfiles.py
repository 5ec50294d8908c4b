"""Paths and readers for the operations kit (grafana/, deploy/, docs/) used by its tests."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES_DIR = DEPLOY / "rules"
RECORDING_RULES = RULES_DIR / "poolwatch-recording.yml"
ALERT_RULES = RULES_DIR / "poolwatch-alerts.yml"
RULE_TESTS = RULES_DIR / "tests" / "poolwatch-alerts.test.yml"
COMPOSE = DEPLOY / "docker-compose.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager.yml"
COLLECTOR_CONFIG = DEPLOY / "otel-collector.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
GRAFANA = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "poolwatch.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "poolwatch.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"

#: Every metric family of the public contract (histograms by their base name).
CONTRACT_METRICS = frozenset(
    {
        "poolwatch_tasks_submitted_total",
        "poolwatch_tasks_rejected_total",
        "poolwatch_tasks_completed_total",
        "poolwatch_tasks_timeouts_total",
        "poolwatch_task_queue_wait_seconds",
        "poolwatch_task_run_seconds",
        "poolwatch_pool_max_workers",
        "poolwatch_pool_workers",
        "poolwatch_pool_active_workers",
        "poolwatch_pool_queued_tasks",
        "poolwatch_pool_queue_capacity",
        "poolwatch_pool_oldest_queued_seconds",
        "poolwatch_pool_overdue_tasks",
        "poolwatch_pool_state",
        "poolwatch_pool_info",
        "poolwatch_build_info",
    }
)

_RAW_METRIC = re.compile(r"\b(poolwatch_[a-z_]+)\b")
_RECORDED = re.compile(r"\b([a-z_]+:poolwatch_[a-z_]+:[a-z0-9_]+)\b")
_HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def load_yaml(path: Path) -> Any:
    """Parse a YAML file into fresh plain objects (callers may change them).

    Uses PyYAML when the test environment has it; otherwise the PyYAML that Debian's
    docker-compose (a required tool of these tests) runs on, through the system Python.
    """
    text = path.read_text(encoding="utf-8")
    return json.loads(_yaml_as_json(str(path), text))


@functools.lru_cache(maxsize=64)
def _yaml_as_json(path: str, text: str) -> str:
    try:
        import yaml
    except ImportError:
        pass
    else:
        return json.dumps(yaml.safe_load(text))
    code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    python = "/usr/bin/python3"
    done = subprocess.run(
        [python, "-c", code], input=text, capture_output=True, text=True, check=False, timeout=30
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"cannot parse {path} as YAML with {python} (install python3-yaml, which "
            f"docker-compose brings, or PyYAML in the venv): {done.stderr.strip()}"
        )
    return done.stdout


def import_dashboards() -> ModuleType:
    """The dashboard generator ``grafana/dashboards.py`` (with ``panels.py`` beside it)."""
    if str(GRAFANA) not in sys.path:
        sys.path.insert(0, str(GRAFANA))
    spec = importlib.util.spec_from_file_location("dashboards", GRAFANA / "dashboards.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {GRAFANA / 'dashboards.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard that shows data (rows and their nested panels included)."""
    for panel in board["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def rules(path: Path) -> list[dict[str, Any]]:
    """Every rule of a Prometheus rule file, across its groups."""
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return rules(ALERT_RULES)


def recording_rules() -> list[dict[str, Any]]:
    return rules(RECORDING_RULES)


def recorded_names(expr: str) -> set[str]:
    """The recording-rule series (``level:metric:operations``) an expression reads."""
    return set(_RECORDED.findall(expr))


def raw_metric_families(expr: str) -> set[str]:
    """The contract metric families an expression reads directly (not through rules)."""
    without_recorded = _RECORDED.sub(" ", expr)
    return {_HISTOGRAM_SUFFIX.sub("", m) for m in _RAW_METRIC.findall(without_recorded)}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_base() -> str:
    """Where the alerts' runbook_url points (the rules file's ``# runbook base:`` line)."""
    found = re.search(r"^# runbook base: (\S+)$", ALERT_RULES.read_text(), re.MULTILINE)
    assert found, f"{ALERT_RULES} has no '# runbook base:' line"
    return found.group(1)


def runbook_anchors() -> set[str]:
    lines = RUNBOOK.read_text(encoding="utf-8").splitlines()
    return {github_anchor(line.lstrip("#")) for line in lines if line.startswith("#")}
