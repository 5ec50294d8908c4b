"""The Grafana dashboards: generated from code, consistent with the rules and provisioning."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ops import opsfiles

REGENERATE = ".venv/bin/python grafana/dashboards.py"


@pytest.fixture(scope="module")
def generator() -> Any:
    return opsfiles.import_dashboards()


def all_targets(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for panel in opsfiles.panels(board) for t in panel.get("targets", [])]


def variable(board: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in board["templating"]["list"] if v["name"] == name]
    assert found, f"{board['title']} has no ${name} variable"
    return found[0]


def test_committed_json_is_what_the_code_generates(generator: Any) -> None:
    committed = {path.name for path in opsfiles.DASHBOARD_DIR.glob("*.json")}
    assert committed == set(generator.DASHBOARDS), (
        f"grafana/dashboards/ holds {sorted(committed)} but the generator makes "
        f"{sorted(generator.DASHBOARDS)}; run `{REGENERATE}` and delete stray files"
    )
    for name in generator.DASHBOARDS:
        text = (opsfiles.DASHBOARD_DIR / name).read_text(encoding="utf-8")
        assert text == generator.render(name), (
            f"grafana/dashboards/{name} differs from what grafana/dashboards.py generates; "
            f"edit the code, not the JSON, and run `{REGENERATE}`"
        )


def test_check_mode_reports_drift(generator: Any, tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(generator, "OUTPUT_DIR", tmp_path)
    assert generator.main(["--check"]) == 1, "--check must fail when files are missing"
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(generator.DASHBOARDS)


def test_titles_uids_and_links() -> None:
    boards = {b["title"]: b for b in opsfiles.dashboards().values()}
    assert set(boards) == {"poolwatch / Overview", "poolwatch / Pool"}
    assert boards["poolwatch / Overview"]["uid"] == "poolwatch-overview"
    assert boards["poolwatch / Pool"]["uid"] == "poolwatch-pool"
    overview_links = [
        (panel["type"], link["url"])
        for panel in opsfiles.panels(boards["poolwatch / Overview"])
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    ]
    assert overview_links, "Overview series should link to the Pool dashboard"
    assert all(url.startswith("/d/poolwatch-pool/") for _, url in overview_links)
    # A series links through its labels, a table row through its cells.
    for kind, url in overview_links:
        source = "__data.fields" if kind == "table" else "__field.labels"
        assert f"var-pool=${{{source}.pool}}" in url, url
        assert f"var-instance=${{{source}.instance}}" in url, url


def test_dashboards_say_which_kind_each_pool_is() -> None:
    boards = {b["title"]: b for b in opsfiles.dashboards().values()}
    (kinds,) = [p for p in opsfiles.panels(boards["poolwatch / Overview"]) if p["type"] == "table"]
    (target,) = kinds["targets"]
    assert target["expr"].startswith("poolwatch_pool_info{")
    assert (target["instant"], target["format"]) == (True, "table")
    (organize,) = kinds["transformations"]
    columns = organize["options"]["indexByName"]
    assert sorted(columns, key=columns.get) == ["job", "instance", "pool", "kind"]
    (stat,) = [p for p in opsfiles.panels(boards["poolwatch / Pool"]) if p["title"] == "Kind"]
    assert "by (kind) (poolwatch_pool_info{" in stat["targets"][0]["expr"]
    assert stat["targets"][0]["legendFormat"] == "{{kind}}"


@pytest.mark.parametrize(
    ("title", "pool_multi"), [("poolwatch / Overview", True), ("poolwatch / Pool", False)]
)
def test_template_variables(title: str, pool_multi: bool) -> None:
    board = next(b for b in opsfiles.dashboards().values() if b["title"] == title)
    for name in ("job", "instance"):
        assert variable(board, name)["multi"] is True
        assert variable(board, name)["includeAll"] is True
    assert variable(board, "pool")["multi"] is pool_multi
    assert variable(board, "datasource")["query"] == "prometheus"
    for target in all_targets(board):
        expr = target["expr"]
        assert 'job=~"$job"' in expr, f"{title}: query ignores $job: {expr}"
        assert 'instance=~"$instance"' in expr, f"{title}: query ignores $instance: {expr}"


def test_every_panel_has_queries_and_a_place_on_the_grid() -> None:
    for board in opsfiles.dashboards().values():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{board['title']}: duplicate panel ids"
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{panel['title']} overflows the grid"
            area = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not area & cells, f"{board['title']}: {panel['title']} overlaps a panel"
            cells |= area
        for panel in opsfiles.panels(board):
            assert panel.get("targets"), f"{board['title']}: {panel['title']} has no query"
            assert panel.get("description"), (
                f"{board['title']}: {panel['title']} needs a description"
            )
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), f"{panel['title']}: duplicate refIds"


def test_overview_covers_the_essentials() -> None:
    board = opsfiles.dashboards()["poolwatch-overview.json"]
    exprs = " ".join(t["expr"] for t in all_targets(board))
    for needle in (
        "tasks_completed",
        "tasks_failed:ratio",
        "poolwatch_pool_saturation:ratio",
        "poolwatch_pool_queued_tasks",
        "poolwatch_pool_oldest_queued_seconds",
        "tasks_rejected",
        "tasks_timeouts",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "queue_wait_seconds_bucket",
        "run_seconds_bucket",
    ):
        assert needle in exprs, f"Overview has no panel reading {needle}"


def test_pool_dashboard_has_per_task_panels_and_one_exemplar_query() -> None:
    board = opsfiles.dashboards()["poolwatch-pool.json"]
    assert variable(board, "task")["multi"] is True
    per_task = [t for t in all_targets(board) if "by (task" in t["expr"]]
    assert len(per_task) >= 3, "the Pool dashboard should break results down by task"
    exemplar = [t for t in all_targets(board) if t.get("exemplar")]
    assert len(exemplar) == 1, "exactly one query should fetch exemplars (no duplicates)"
    # Exemplars live on raw series only: recording rules drop them.
    assert "rate(poolwatch_task_run_seconds_bucket{" in exemplar[0]["expr"]


def test_queries_read_only_contract_metrics_and_existing_recording_rules() -> None:
    recorded = {rule["record"] for rule in opsfiles.recording_rules()}
    for board in opsfiles.dashboards().values():
        exprs = [t["expr"] for t in all_targets(board)]
        exprs += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
        for expr in exprs:
            missing = opsfiles.recorded_names(expr) - recorded
            assert not missing, f"{board['title']} reads undefined recording rules {missing}"
            unknown = opsfiles.raw_metric_families(expr) - opsfiles.CONTRACT_METRICS
            assert not unknown, f"{board['title']} reads metrics outside the contract {unknown}"


def test_pool_level_rates_come_from_recording_rules() -> None:
    boards = opsfiles.dashboards()
    for target in all_targets(boards["poolwatch-overview.json"]):
        assert "rate(" not in target["expr"], f"Overview: use a recording rule for {target['expr']}"
    for target in all_targets(boards["poolwatch-pool.json"]):
        # Raw rates only where the task label matters: per-task panels and exemplars.
        if "rate(" in target["expr"]:
            assert 'task=~"$task"' in target["expr"], f"Pool: use a recording rule: {target}"


def test_datasource_provisioning_links_exemplars_to_traces() -> None:
    sources = {ds["uid"]: ds for ds in opsfiles.load_yaml(opsfiles.DATASOURCES)["datasources"]}
    prom = sources["prometheus"]
    assert prom["type"] == "prometheus"
    assert prom.get("isDefault") is True
    destinations = prom["jsonData"]["exemplarTraceIdDestinations"]
    assert destinations == [{"name": "trace_id", "datasourceUid": "jaeger"}]
    assert sources["jaeger"]["type"] == "jaeger"
    for board in opsfiles.dashboards().values():
        assert variable(board, "datasource")["current"]["value"] == prom["uid"]


def test_dashboard_provider_points_at_the_mounted_json() -> None:
    providers = opsfiles.load_yaml(opsfiles.DASHBOARD_PROVIDERS)["providers"]
    assert len(providers) == 1
    path = providers[0]["options"]["path"]
    compose = opsfiles.load_yaml(opsfiles.COMPOSE)
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{path}:ro" in mounts
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert home == f"{path}/poolwatch-overview.json"


def reject_constant(token: str) -> None:
    raise AssertionError(f"{token} is not JSON: Grafana cannot load it")


def test_json_is_strict_and_stable() -> None:
    for name, board in opsfiles.dashboards().items():
        text = (opsfiles.DASHBOARD_DIR / name).read_text(encoding="utf-8")
        assert text == json.dumps(board, indent=2, sort_keys=True) + "\n"
        json.loads(text, parse_constant=reject_constant)


def test_pool_changes_are_annotated_on_every_graph() -> None:
    for name, board in opsfiles.dashboards().items():
        annotations = {a["name"]: a for a in board["annotations"]["list"]}
        assert set(annotations) == {
            "Resized",
            "Queue capacity changed",
            "Paused or resumed",
            "Pools added or removed",
        }, name
        for annotation in annotations.values():
            assert annotation["enable"] is True
            assert annotation["datasource"]["uid"] == "${datasource}"
            assert 'job=~"$job"' in annotation["expr"], annotation
            assert "changes(" in annotation["expr"] or " offset 1m" in annotation["expr"]
            assert annotation["titleFormat"], annotation
            unknown = opsfiles.raw_metric_families(annotation["expr"]) - opsfiles.CONTRACT_METRICS
            assert not unknown, (name, annotation["name"], unknown)
