"""Who may mutate: tokens, loopback binding, read-only mode; and the audit log."""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Mount

from poolwatch import PoolManager
from poolwatch.http import AccessPolicy, create_app
from poolwatch.http.app import build_app
from poolwatch.http.auth import SERVER_SETTINGS

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

MUTATIONS = [
    ("post", "/api/pools", {"name": "new", "max_workers": 1}),
    ("patch", "/api/pools/p", {"paused": True}),
    ("delete", "/api/pools/p", None),
    ("post", "/api/pools/p/tasks", {"task": "pwtest.echo", "args": [1]}),
    ("post", "/api/tasks/some-id/cancel", None),
]


def _send(client, method: str, url: str, body, headers=None):
    kwargs = {"headers": headers or {}}
    if body is not None:
        kwargs["json"] = body
    return client.request(method.upper(), url, **kwargs)


@pytest.fixture(autouse=True)
def pool(manager: PoolManager):
    return manager.create_pool("p", max_workers=1)


@pytest.mark.parametrize(("method", "url", "body"), MUTATIONS)
def test_token_missing_is_401_with_challenge(make_client, assert_error, method, url, body) -> None:
    client = make_client(token="s3cret")
    response = _send(client, method, url, body)
    assert_error(response, 401, "missing_token", "Authorization: Bearer")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "url", "body"), MUTATIONS)
def test_wrong_token_is_401_invalid_token(make_client, assert_error, method, url, body) -> None:
    client = make_client(token="s3cret")
    response = _send(client, method, url, body, {"Authorization": "Bearer nope"})
    assert_error(response, 401, "invalid_token")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_malformed_authorization_is_401(make_client, assert_error) -> None:
    client = make_client(token="s3cret")
    for header in ("s3cret", "Basic s3cret", "Bearer", "Bearer "):
        response = client.post("/api/pools/p/tasks", json={}, headers={"Authorization": header})
        assert_error(response, 401, "missing_token")


def test_right_token_allows_mutations_even_off_loopback(make_client, manager) -> None:
    client = make_client(token="s3cret", bind_host="0.0.0.0")
    auth = {"Authorization": "Bearer s3cret"}
    assert (
        client.post("/api/pools", json={"name": "n", "max_workers": 1}, headers=auth).status_code
        == 201
    )
    assert client.patch("/api/pools/n", json={"paused": True}, headers=auth).status_code == 200
    assert client.delete("/api/pools/n", headers=auth).status_code == 200
    assert (
        client.post(
            "/api/pools/p/tasks", json={"task": "pwtest.echo", "args": [1]}, headers=auth
        ).status_code
        == 202
    )


def test_reads_never_need_a_token(make_client) -> None:
    client = make_client(token="s3cret", bind_host="0.0.0.0")
    for url in (
        "/api/pools",
        "/api/pools/p",
        "/api/tasks",
        "/api/stats",
        "/api/info",
        "/api/task-types",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/",
    ):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize(("method", "url", "body"), MUTATIONS)
def test_no_token_on_loopback_allows(make_client, method, url, body) -> None:
    client = make_client(bind_host="127.0.0.1")
    response = _send(client, method, url, body)
    assert response.status_code not in (401, 403), response.text


@pytest.mark.parametrize("bind_host", ["0.0.0.0", "192.168.1.5", "::"])
def test_no_token_off_loopback_is_403_naming_the_argument(
    make_client, assert_error, bind_host
) -> None:
    client = make_client(bind_host=bind_host)
    for method, url, body in MUTATIONS:
        message = assert_error(
            _send(client, method, url, body), 403, "mutations_disabled", bind_host, "token="
        )
        assert "POOLWATCH_API_TOKEN" not in message  # a setting of poolwatch serve, not here
    assert client.get("/api/info").json()["mutations_allowed"] is False


def test_mounted_app_without_bind_host_names_create_app_arguments(
    manager: PoolManager, assert_error
) -> None:
    host = Starlette(routes=[Mount("/ops", app=create_app(manager))])
    with TestClient(host, base_url="http://127.0.0.1") as client:
        for method, url, body in MUTATIONS:
            message = assert_error(
                _send(client, method, "/ops" + url, body),
                403,
                "mutations_disabled",
                "create_app(manager, token=...)",
                "bind_host='127.0.0.1'",
            )
            assert "POOLWATCH_API_TOKEN" not in message
        assert client.get("/ops/api/info").json()["mutations_allowed"] is False


def test_poolwatch_serve_wording_names_its_own_settings(manager: PoolManager, assert_error) -> None:
    # poolwatch serve refuses to start off loopback without a token, so its apps meet a
    # wrong token, a foreign Host or read-only mode; each names serve's settings.
    def client(**policy: Any) -> TestClient:
        app = build_app(manager, AccessPolicy(names=SERVER_SETTINGS, **policy))
        return TestClient(app, base_url="http://127.0.0.1")

    with client(token="s3cret", bind_host="127.0.0.1") as http:
        response = http.post("/api/pools", json={}, headers={"Authorization": "Bearer no"})
        assert_error(response, 401, "invalid_token", "POOLWATCH_API_TOKEN", "[server] token")
    with client(bind_host="127.0.0.1") as http:
        response = http.post("/api/pools", json={}, headers={"Host": "evil.example"})
        assert_error(response, 403, "untrusted_host", "POOLWATCH_API_TOKEN")
    with client(read_only=True) as http:
        assert_error(http.post("/api/pools", json={}), 403, "read_only", "--read-only")


def test_app_wording_names_create_app_arguments(make_client, assert_error) -> None:
    wrong = make_client(token="s3cret").post(
        "/api/pools", json={}, headers={"Authorization": "Bearer no"}
    )
    message = assert_error(wrong, 401, "invalid_token", "token= argument of create_app()")
    assert "POOLWATCH_API_TOKEN" not in message
    foreign = make_client().post("/api/pools", json={}, headers={"Host": "evil.example"})
    assert_error(foreign, 403, "untrusted_host", "token= argument")
    read_only = make_client(read_only=True).post("/api/pools", json={})
    message = assert_error(read_only, 403, "read_only", "read_only=True")
    assert "--read-only" not in message


@pytest.mark.parametrize("bind_host", ["localhost", "::1", "127.0.0.2"])
def test_other_loopback_forms_count(make_client, bind_host) -> None:
    client = make_client(bind_host=bind_host)
    assert client.patch("/api/pools/p", json={"paused": True}).status_code == 200


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_read_only_refuses_every_mutation(make_client, assert_error, token) -> None:
    client = make_client(read_only=True, token=token)
    headers = {"Authorization": "Bearer s3cret"} if token else {}
    for method, url, body in MUTATIONS:
        assert_error(_send(client, method, url, body, headers), 403, "read_only", "read-only")
    assert client.get("/api/pools/p").json()["state"] == "running"


def test_info_describes_the_policy(make_client) -> None:
    open_info = make_client().get("/api/info").json()
    assert open_info["read_only"] is False
    assert open_info["auth_required"] is False
    assert open_info["mutations_allowed"] is True
    assert isinstance(open_info["version"], str)
    assert make_client(token="t").get("/api/info").json() == {
        **open_info,
        "auth_required": True,
        "mutations_allowed": True,
    }
    assert make_client(read_only=True).get("/api/info").json()["mutations_allowed"] is False


def test_audit_log_has_one_json_line_per_action(make_client, caplog) -> None:
    client = make_client(token="s3cret")
    with caplog.at_level(logging.INFO, logger="poolwatch.audit"):
        client.patch(
            "/api/pools/p", json={"paused": True}, headers={"Authorization": "Bearer s3cret"}
        )
        client.post("/api/pools", json={"name": "x", "max_workers": 1})
        client.post(
            "/api/pools",
            json={"name": "p", "max_workers": 1},
            headers={"Authorization": "Bearer s3cret"},
        )
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "poolwatch.audit"]
    assert len(records) == 3
    ok, denied, conflict = records
    assert ok["action"] == "pool.update"
    assert ok["target"] == "p"
    assert ok["authenticated"] is True
    assert ok["status"] == 200
    assert ok["result"] == "ok"
    assert ok["client"]
    assert denied["action"] == "pool.create"
    assert denied["authenticated"] is False
    assert denied["status"] == 401
    assert denied["result"] == "missing_token"
    assert conflict["target"] == "p"
    assert conflict["status"] == 409
    assert conflict["result"] == "pool_exists"


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (" s3cret", "starts or ends with whitespace"),
        ("s3cret\n", "starts or ends with whitespace"),
        ("sécret", 'contains "é"'),
        ("two words", 'contains " "'),
        ("a=b", 'has "=" other than at its end'),
        ("", "is empty"),
    ],
)
def test_tokens_no_client_could_send_are_refused_at_start(
    manager: PoolManager, token: str, problem: str
) -> None:
    with pytest.raises(ValueError, match="RFC 6750") as info:
        create_app(manager, token=token)
    message = str(info.value)
    assert message.startswith(f"token {problem}")
    assert "RFC 6750" in message
    assert "secrets.token_urlsafe" in message


@pytest.mark.parametrize("token", ["s3cret", "A-b.c_d~e+f/g==", "x"])
def test_b64tokens_are_accepted_and_work(make_client, token: str) -> None:
    client = make_client(token=token)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.patch("/api/pools/p", json={"paused": True}, headers=headers).status_code == 200
