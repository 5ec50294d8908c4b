"""One table of pool settings, run through the library, the config file and the API.

Each value must be accepted by all three or refused by all three, with the same message
(the config file puts the key's place in front of it).
"""

from __future__ import annotations

from typing import Any

import pytest

from poolwatch import PoolManager
from poolwatch.config import ConfigError, parse_config
from poolwatch.kinds import KINDS

#: (setting, value, accepted)
TABLE: list[tuple[str, Any, bool]] = [
    ("max_workers", 1, True),
    ("max_workers", 10_000, True),
    ("max_workers", 0, False),
    ("max_workers", -3, False),
    ("max_workers", 10_001, False),
    ("max_workers", 2.5, False),
    ("max_workers", "2", False),
    ("max_workers", True, False),
    ("queue_capacity", 0, True),
    ("queue_capacity", 10_000_000, True),
    ("queue_capacity", -1, False),
    ("queue_capacity", 10_000_001, False),
    ("queue_capacity", 1.0, False),
    ("history_size", 0, True),
    ("history_size", 1_000_000, True),
    ("history_size", -1, False),
    ("history_size", 1_000_001, False),
    ("queue_timeout", 0.001, True),
    ("queue_timeout", 2_592_000, True),
    ("queue_timeout", 0, False),
    ("queue_timeout", -1.5, False),
    ("queue_timeout", 2_592_000.5, False),
    ("queue_timeout", 2**70, False),
    ("queue_timeout", "5", False),
    ("run_timeout", 3, True),
    ("run_timeout", 0.0, False),
    ("run_timeout", 2_592_001, False),
    ("rejection_policy", "caller_runs", True),
    ("rejection_policy", "drop", False),
    ("rejection_policy", 3, False),
    ("name", "ok.name-1", True),
    ("name", "bad name", False),
    ("name", "-x", False),
    ("name", "x" * 65, False),
]
#: Settings that ``configure`` and ``PATCH`` change on a live pool.
LIVE = {"max_workers", "queue_capacity", "rejection_policy", "queue_timeout", "run_timeout"}
IDS = [f"{setting}={value!r}"[:40] for setting, value, _ in TABLE]


def _settings(setting: str, value: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"name": "p", "max_workers": 1}
    settings[setting] = value
    return settings


def _library(manager: PoolManager, setting: str, value: Any) -> tuple[str | None, Any]:
    """The refusal's message (or None) and, when accepted, the setting's effective value."""
    kwargs = _settings(setting, value)
    name = kwargs.pop("name")
    try:
        pool = manager.create_pool(name, **kwargs)
    except (TypeError, ValueError) as exc:
        return str(exc), None
    effective = _effective(pool.stats(), setting)
    manager.remove_pool(name)
    return None, effective


def _config(setting: str, value: Any) -> str | None:
    try:
        parse_config({"pools": [_settings(setting, value)]}, source="pools.toml", env={})
    except ConfigError as exc:
        return str(exc)
    return None


def _effective(stats: Any, setting: str) -> Any:
    # history_size is not among the stats; the history itself shows it.
    return getattr(stats, setting, None)


@pytest.mark.parametrize(("setting", "value", "accepted"), TABLE, ids=IDS)
def test_library_config_and_api_agree(
    manager: PoolManager, client, setting: str, value: Any, accepted: bool
) -> None:
    message, effective = _library(manager, setting, value)
    assert (message is None) == accepted, message
    config_message = _config(setting, value)
    response = client.post("/api/pools", json=_settings(setting, value))
    if accepted:
        assert config_message is None, config_message
        assert response.status_code == 201, response.text
        if setting in LIVE:
            assert response.json()[setting] == effective == value
        return
    assert message is not None
    assert message.startswith(f"{setting} must "), message
    assert config_message == f"pools.toml: pools[0].{message}"
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {"code": "invalid_field", "message": message}


@pytest.mark.parametrize(
    ("setting", "value", "accepted"),
    [row for row in TABLE if row[0] in LIVE],
    ids=[i for i, row in zip(IDS, TABLE, strict=True) if row[0] in LIVE],
)
def test_configure_and_patch_agree(
    manager: PoolManager, client, setting: str, value: Any, accepted: bool
) -> None:
    library = manager.create_pool("lib", max_workers=2)
    manager.create_pool("api", max_workers=2)
    try:
        library.configure(**{setting: value})
        message = None
    except (TypeError, ValueError) as exc:
        message = str(exc)
    assert (message is None) == accepted, message
    response = client.patch("/api/pools/api", json={setting: value})
    if accepted:
        assert response.status_code == 200, response.text
        assert response.json()[setting] == _effective(library.stats(), setting) == value
    else:
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"] == message
        assert _effective(manager.get_pool("api").stats(), setting) == _effective(
            library.stats(), setting
        )


#: (the settings besides name and max_workers, accepted): ``kind`` and the options of a
#: kind, which the kind checks (one it does not take, or two that do not go together).
KIND_TABLE: list[tuple[dict[str, Any], bool]] = [
    ({"kind": "thread"}, True),
    ({"kind": "process"}, True),
    ({"kind": "process", "max_tasks_per_child": 5}, True),
    ({"kind": "process", "on_run_timeout": "kill", "run_timeout": 10}, True),
    ({"kind": "process", "mp_context": "spawn"}, True),
    ({"kind": "teleport"}, False),
    ({"kind": 3}, False),
    ({"kind": "process", "max_tasks_per_child": 0}, False),
    ({"kind": "process", "max_tasks_per_child": 2.5}, False),
    ({"kind": "process", "on_run_timeout": "later"}, False),
    ({"kind": "process", "mp_context": "teleport"}, False),
    ({"kind": "process", "mp_context": "fork", "max_tasks_per_child": 2}, False),
    ({"max_tasks_per_child": 5}, False),  # a thread pool takes no options of its own
    ({"kind": "thread", "on_run_timeout": "kill"}, False),
]


@pytest.mark.parametrize(
    ("extra", "accepted"), KIND_TABLE, ids=[str(extra)[:60] for extra, _ in KIND_TABLE]
)
def test_kinds_and_their_options_agree(
    manager: PoolManager, client, extra: dict[str, Any], accepted: bool
) -> None:
    settings = {"name": "p", "max_workers": 1, **extra}
    kwargs = {k: v for k, v in settings.items() if k != "name"}
    try:
        manager.create_pool("p", **kwargs)
        message = None
    except (TypeError, ValueError) as exc:
        message = str(exc)
    assert (message is None) == accepted, message
    if accepted:
        manager.remove_pool("p")
    try:
        config = parse_config({"pools": [settings]}, source="pools.toml", env={})
        config_message = None
    except ConfigError as exc:
        config_message = str(exc)
    response = client.post("/api/pools", json=settings)
    if accepted:
        assert config_message is None, config_message
        assert response.status_code == 201, response.text
        kind = extra.get("kind", "thread")
        assert response.json()["kind"] == kind
        assert client.get("/api/pools/p").json()["kind"] == kind
        (pool,) = config.pools
        made = manager.create_pool("from-file", **pool.create_kwargs())
        assert made.kind == kind
        return
    assert message is not None
    # The file names the key's place: "pools[0].key must ..." or "pools[0]: unexpected ...".
    separator = "." if message.split(" ")[0] in settings else ": "
    assert config_message == f"pools.toml: pools[0]{separator}{message}"
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {"code": "invalid_field", "message": message}
    assert "p" not in manager


def test_the_openapi_document_describes_kinds(client) -> None:
    doc = client.get("/openapi.json").json()
    create = doc["paths"]["/api/pools"]["post"]["requestBody"]["content"]["application/json"]
    props = create["schema"]["properties"]
    assert props["kind"]["enum"] == list(KINDS)
    assert "process" in KINDS
    assert props["on_run_timeout"]["enum"] == ["request", "kill"]
    assert "forkserver" in props["mp_context"]["enum"]
    assert props["max_tasks_per_child"]["minimum"] == 1
    for option in ("max_tasks_per_child", "mp_context"):
        assert props[option]["description"].startswith("Kind process:")
    assert props["on_run_timeout"]["description"].startswith("Kinds process and dask:")
    assert "address" not in props  # a request cannot make the service connect to Dask
    pool = doc["components"]["schemas"]["Pool"]
    assert "kind" in pool["required"]
    assert pool["properties"]["kind"]["enum"] == list(KINDS)
