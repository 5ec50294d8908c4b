"""A page of another site, open in the same browser, cannot change a token-less server.

The demo server has no token and listens on loopback, so the browser is the only
thing between it and every web page the user opens.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page

from browser.consoletools import Server, remove_pool

pytestmark = pytest.mark.browser

#: What a hostile page can send without a CORS preflight: "simple" requests.
_SEND = """async ([url, body]) => {
  const init = { method: "POST", mode: "no-cors" };
  if (body !== null) {
    init.headers = { "Content-Type": "text/plain" };
    init.body = body;
  }
  await fetch(url, init);
}"""


@pytest.fixture
def attacker_page(page: Page, demo_server: Server) -> Page:
    """``page`` showing a document of another origin: the same server as ``localhost``.

    Chromium itself now blocks public sites from reaching loopback (Private Network
    Access), but not another local origin, and other browsers block neither.
    """
    other = demo_server.url.replace("//127.0.0.1:", "//localhost:")
    assert other != demo_server.url
    page.goto(f"{other}healthz")
    return page


def _status_of_simple_post(page: Page, url: str, body: str | None) -> int:
    # The page only gets an opaque response; the browser's network log has the status.
    with page.expect_response(lambda response: response.url == url) as info:
        page.evaluate(_SEND, [url, body])
    return info.value.status


def test_cross_site_simple_posts_change_nothing(attacker_page: Page, demo_server: Server) -> None:
    name = "cross-site-probe"
    body = json.dumps({"name": name, "max_workers": 1})
    status = _status_of_simple_post(attacker_page, f"{demo_server.url}api/pools", body)
    assert status in (400, 403)
    assert demo_server.call("GET", f"api/pools/{name}").status_code == 404

    held = "cross-site-held"
    demo_server.ok("POST", "api/pools", json={"name": held, "max_workers": 1})
    try:
        demo_server.ok("PATCH", f"api/pools/{held}", json={"paused": True})
        submitted = demo_server.ok(
            "POST", f"api/pools/{held}/tasks", json={"task": "demo.sleep", "kwargs": {"seconds": 0}}
        )
        cancel = f"{demo_server.url}api/tasks/{submitted['id']}/cancel"
        assert _status_of_simple_post(attacker_page, cancel, None) == 403
        assert demo_server.ok("GET", f"api/tasks/{submitted['id']}")["state"] == "queued"
    finally:
        remove_pool(demo_server, held)
