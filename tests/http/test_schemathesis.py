"""Schemathesis against a real server: every documented check passes, never a 5xx, and
every error is JSON in the ``{"error": {"code", "message"}}`` shape.

Runs when schemathesis is installed (it is in the dev extra); skipped otherwise.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from poolwatch import PoolManager
from poolwatch.http import create_app

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
positive_data_acceptance = schemathesis.checks.positive_data_acceptance


def _assert_json_error_shape(response: Any) -> None:
    """A 5xx, or an error that is not the JSON error shape, fails the run."""
    status = response.status_code
    assert status < 500, (status, response.text)
    if status < 400:
        return
    headers = {k.lower(): v for k, v in response.headers.items()}
    kind = headers.get("content-type", [""])
    kind = kind[0] if isinstance(kind, list) else kind
    assert kind.startswith("application/json"), (status, kind, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str), body
    assert isinstance(body["error"]["message"], str), body
    assert body["error"]["message"], body


def test_api_conforms_to_its_openapi_document(manager: PoolManager, live_server) -> None:
    manager.create_pool("st", max_workers=2, queue_capacity=4)
    server = live_server(create_app(manager, bind_host="127.0.0.1"))
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 16

    for operation in operations:

        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(operation.as_strategy())
        def run(case: Any) -> None:
            # Schema-valid bodies may still name an unregistered task or arguments that
            # do not fit its signature: a 422 there is right, so that check is left out.
            response = case.call_and_validate(
                base_url=server.url, excluded_checks=[positive_data_acceptance]
            )
            _assert_json_error_shape(response)

        run()
