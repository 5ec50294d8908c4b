"""Prometheus recording and alerting rules: valid, unit-tested, documented."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import support
from ops import opsfiles

pytestmark = pytest.mark.prometheus

RULE_NAME = re.compile(r"^[a-z]+(_[a-z]+)*:poolwatch_[a-z_]+:[a-z0-9_]+$")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = support.require_tool("promtool", hint="apt-get install prometheus")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, check=False, timeout=60, cwd=opsfiles.ROOT
    )


def test_promtool_check_rules_is_clean() -> None:
    done = promtool("check", "rules", str(opsfiles.RECORDING_RULES), str(opsfiles.ALERT_RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 15 rules found" in done.stdout
    assert "SUCCESS: 9 rules found" in done.stdout
    assert "WARNING" not in (done.stdout + done.stderr).upper()


def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(opsfiles.RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_unit_tests_show_every_alert_firing_and_silent() -> None:
    alerts = {rule["alert"] for rule in opsfiles.alert_rules()}
    firing: set[str] = set()
    silent: set[str] = set()
    for case in opsfiles.load_yaml(opsfiles.RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert firing == alerts, f"no firing test for {sorted(alerts - firing)}"
    assert silent == alerts, f"no silent test for {sorted(alerts - silent)}"


def test_unit_tests_load_the_shipped_rule_files() -> None:
    spec = opsfiles.load_yaml(opsfiles.RULE_TESTS)
    loaded = {(opsfiles.RULE_TESTS.parent / f).resolve() for f in spec["rule_files"]}
    assert loaded == {opsfiles.RECORDING_RULES, opsfiles.ALERT_RULES}


def test_recording_rules_are_named_level_metric_operations() -> None:
    names = [rule["record"] for rule in opsfiles.recording_rules()]
    assert len(names) == len(set(names)), "duplicate recording rule"
    for name in names:
        assert RULE_NAME.match(name), f"{name} is not level:metric:operations"
        level = name.split(":")[0]
        assert level.split("_")[0] == "pool", f"{name}: every series keeps the pool label"


def test_rules_read_only_contract_metrics_and_defined_rules() -> None:
    recorded = {rule["record"] for rule in opsfiles.recording_rules()}
    for rule in opsfiles.recording_rules() + opsfiles.alert_rules():
        expr = rule["expr"]
        name = rule.get("record") or rule["alert"]
        unknown = opsfiles.raw_metric_families(expr) - opsfiles.CONTRACT_METRICS
        assert not unknown, f"{name} reads metrics outside the contract: {unknown}"
        undefined = opsfiles.recorded_names(expr) - recorded
        assert not undefined, f"{name} reads undefined recording rules: {undefined}"


@pytest.mark.parametrize("rule", opsfiles.alert_rules(), ids=lambda r: r["alert"])
def test_alert_is_labelled_annotated_and_has_a_runbook_section(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert name.startswith("Poolwatch")
    assert rule["labels"]["severity"] in {"critical", "warning"}
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert "{{ $labels.instance }}" in annotations["summary"]
    page, _, anchor = annotations["runbook_url"].partition("#")
    assert page == opsfiles.runbook_base()
    parts = urlsplit(page)
    assert parts.scheme == "https", f"{name}: runbook_url must be absolute, got {page}"
    assert parts.netloc, f"{name}: runbook_url must be absolute, got {page}"
    assert anchor == name.lower()
    assert anchor in opsfiles.runbook_anchors(), f"docs/runbook.md has no '## {name}' section"
    assert re.fullmatch(r"\d+[smh]", rule["for"]), f"{name} needs a `for` to ride out blips"


def test_runbook_tuning_table_matches_the_rules() -> None:
    table = {}
    for line in opsfiles.RUNBOOK.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("Poolwatch"):
            table[cells[0]] = cells
    rules = {rule["alert"]: rule for rule in opsfiles.alert_rules()}
    assert set(table) == set(rules), "the runbook's tuning table must list every alert"
    for name, rule in rules.items():
        _, _, _, patience, severity = table[name]
        assert patience == f"{rule['for']}", f"{name}: runbook says for {patience}"
        assert severity == rule["labels"]["severity"], f"{name}: runbook says {severity}"


def test_the_runbook_base_is_one_command_away(tmp_path: Path) -> None:
    """runbook_base.py re-points every alert, and the rule unit tests still pass."""
    rules = tmp_path / "rules"
    shutil.copytree(opsfiles.RULES_DIR, rules, ignore=shutil.ignore_patterns("__pycache__"))
    base = "https://wiki.example.com/ops/poolwatch-runbook"
    alerts = rules / opsfiles.ALERT_RULES.name
    tests = rules / "tests" / opsfiles.RULE_TESTS.name
    done = subprocess.run(
        ["python3", str(rules / "runbook_base.py"), base, str(alerts), str(tests)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    urls = re.findall(r"runbook_url: (\S+)", alerts.read_text() + tests.read_text())
    assert len(urls) >= 18
    assert {url.partition("#")[0] for url in urls} == {base}
    assert f"# runbook base: {base}" in alerts.read_text()
    tested = promtool("test", "rules", str(tests))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    refused = subprocess.run(
        ["python3", str(rules / "runbook_base.py"), "docs/runbook.md", str(alerts)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "absolute http(s) URL" in refused.stderr
