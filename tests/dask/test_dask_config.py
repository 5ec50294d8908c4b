"""A Dask pool declared in the config file, on the session's real cluster; over HTTP a
request cannot make the service connect to a scheduler."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():  # Starlette prefers httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from poolwatch import PoolManager, create_app
from poolwatch.config import ConfigError, parse_config
from support import require_module

require_module("distributed", hint="pip install -e '.[dask]'")

import dasktasks  # noqa: E402  # the workers import it by name (see conftest)


def test_a_pool_from_the_file_runs_on_the_scheduler_it_names(
    manager: PoolManager, cluster: Any, dask_client: Any
) -> None:
    config = parse_config(
        {
            "pools": [
                {
                    "name": "crunch",
                    "kind": "dask",
                    "address": cluster.scheduler_address,
                    "max_workers": 4,
                    "on_run_timeout": "kill",
                }
            ]
        },
        source="poolwatch.toml",
        env={},
    )
    (pool_config,) = config.pools
    pool = manager.create_pool(pool_config.name, **pool_config.create_kwargs())
    try:
        assert pool.kind == "dask"
        futures = [pool.submit(dasktasks.square, n) for n in range(8)]
        assert [f.result(timeout=60) for f in futures] == [n * n for n in range(8)]
        assert pool.stats().succeeded == 8
    finally:
        manager.remove_pool("crunch")


@pytest.mark.parametrize(
    ("address", "words"),
    [("tcp://a b:1", "no spaces"), ("", "1 to 1024 characters"), (5, "got 5")],
)
def test_a_bad_address_in_the_file_is_refused_by_name(address: Any, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"pools": [{"name": "d", "kind": "dask", "address": address, "max_workers": 1}]},
            source="poolwatch.toml",
            env={},
        )
    assert "pools[0].address" in str(caught.value)
    assert words in str(caught.value)


def test_the_address_is_not_an_option_of_other_kinds() -> None:
    with pytest.raises(ConfigError, match=r"'address' for a pool of kind 'process'"):
        parse_config(
            {"pools": [{"name": "p", "kind": "process", "address": "tcp://h:1", "max_workers": 1}]},
            source="poolwatch.toml",
            env={},
        )


def test_http_cannot_make_the_service_connect_to_a_scheduler(manager: PoolManager) -> None:
    client = TestClient(create_app(manager, token="t"), headers={"Authorization": "Bearer t"})
    body = {"name": "d", "kind": "dask", "address": "tcp://127.0.0.1:1", "max_workers": 1}
    response = client.post("/api/pools", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "address" in response.json()["error"]["message"]
    response = client.post("/api/pools", json={"name": "d", "kind": "dask", "max_workers": 1})
    assert response.status_code in (400, 422), response.text
    assert "client" in response.json()["error"]["message"]
    assert "d" not in manager
