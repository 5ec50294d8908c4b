"""Token-less mutations come only from this server's own pages (CSRF, DNS rebinding).

Without a token, any web page the user opens can make the browser send requests to a
server on loopback; these tests play that page.
"""

from __future__ import annotations

import pytest

from poolwatch import PoolManager

MUTATIONS = [
    ("POST", "/api/pools", {"name": "new", "max_workers": 1}),
    ("PATCH", "/api/pools/p", {"paused": True}),
    ("DELETE", "/api/pools/p", None),
    ("POST", "/api/pools/p/tasks", {"task": "pwtest.echo", "args": [1]}),
    ("POST", "/api/tasks/some-id/cancel", None),
]


@pytest.fixture(autouse=True)
def pool(manager: PoolManager):
    return manager.create_pool("p", max_workers=1)


def _send(client, method: str, url: str, body, headers):
    if body is None:
        return client.request(method, url, headers=headers)
    return client.request(method, url, json=body, headers=headers)


@pytest.mark.parametrize(("method", "url", "body"), MUTATIONS)
@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "10.0.0.1:80"]
)
def test_host_that_is_not_loopback_is_refused(
    make_client, manager: PoolManager, assert_error, method, url, body, host
) -> None:
    # A DNS-rebinding page reaches 127.0.0.1 under its own name.
    client = make_client()
    response = _send(client, method, url, body, {"Host": host})
    assert_error(response, 403, "untrusted_host", host, "loopback", "API token")
    assert manager.get_pool("p").state.value == "running"


@pytest.mark.parametrize(("method", "url", "body"), MUTATIONS)
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://127.0.0.1:9999",  # another local service is another origin
        "http://localhost",  # same machine, but not the Host the request went to
        "null",  # sandboxed frames and cross-site redirects
        "http://127.0.0.1/path",
    ],
)
def test_origin_of_another_site_is_refused(
    make_client, assert_error, method, url, body, origin
) -> None:
    client = make_client()
    response = _send(client, method, url, body, {"Origin": origin})
    assert_error(response, 403, "cross_site_request", "Origin", "same origin", "API token")


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Cross-Site"])
def test_sec_fetch_site_of_another_site_is_refused(make_client, assert_error, site) -> None:
    client = make_client()
    response = client.post("/api/tasks/some-id/cancel", headers={"Sec-Fetch-Site": site})
    assert_error(response, 403, "cross_site_request", "Sec-Fetch-Site", "API token")


@pytest.mark.parametrize(
    ("host", "headers"),
    [
        ("127.0.0.1", {}),  # curl and scripts send neither Origin nor Sec-Fetch-Site
        ("127.0.0.1:8000", {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}),
        ("localhost:8000", {"Origin": "http://LOCALHOST:8000", "Sec-Fetch-Site": "same-origin"}),
        ("[::1]:8000", {"Origin": "http://[::1]:8000"}),
        ("127.0.0.1", {"Origin": "http://127.0.0.1:80"}),  # the default port, spelled out
        ("127.0.0.2:1234", {"Sec-Fetch-Site": "none"}),  # typed into the address bar
    ],
)
def test_same_origin_mutations_are_allowed(make_client, manager: PoolManager, host, headers):
    client = make_client()
    headers = {"Host": host, **headers}
    response = client.patch("/api/pools/p", json={"paused": True}, headers=headers)
    assert response.status_code == 200, response.text
    assert manager.get_pool("p").state.value == "paused"


def test_with_a_token_the_origin_does_not_matter(make_client) -> None:
    # Browsers never attach a bearer token by themselves, so a request that carries
    # the right one was not forged by another site's page.
    client = make_client(token="s3cret")
    headers = {
        "Authorization": "Bearer s3cret",
        "Host": "pools.example.com",
        "Origin": "https://dashboard.example.com",
        "Sec-Fetch-Site": "cross-site",
    }
    assert client.patch("/api/pools/p", json={"paused": True}, headers=headers).status_code == 200


def test_read_only_answers_read_only_first(make_client, assert_error) -> None:
    client = make_client(read_only=True)
    response = client.post(
        "/api/tasks/x/cancel", headers={"Host": "evil.example", "Origin": "https://evil.example"}
    )
    assert_error(response, 403, "read_only")


def test_reads_stay_open_to_any_origin(make_client) -> None:
    client = make_client()
    headers = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert client.get("/api/pools/p", headers=headers).status_code == 200


def test_a_text_plain_form_post_is_refused_before_it_acts(make_client, assert_error) -> None:
    # What a cross-site <form enctype="text/plain"> or no-cors fetch sends when the
    # browser leaves Origin out (older browsers): the body type gives it away.
    client = make_client()
    response = client.post(
        "/api/pools",
        content=b'{"name": "evil", "max_workers": 1}',
        headers={"Content-Type": "text/plain"},
    )
    assert_error(response, 400, "unsupported_media_type", "Content-Type: application/json")
    assert client.get("/api/pools/evil").status_code == 404
