"""The console inside another ASGI app, under a path prefix, and when its server goes away."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser.consoletools import Server, launch_server

pytestmark = pytest.mark.browser

# A host application that mounts poolwatch under a prefix, as a service embedding it would.
MOUNTING_APP = """
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from poolwatch import PoolManager, create_app

port, prefix = int(sys.argv[1]), sys.argv[2]
manager = PoolManager()
manager.create_pool("mounted", max_workers=2)
app = Starlette(routes=[Mount(prefix, app=create_app(manager, bind_host="127.0.0.1"))])
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


@pytest.fixture
def mounted_server(tmp_path: Path) -> Iterator[Server]:
    server = launch_server(tmp_path, ["/ops"], script=MOUNTING_APP)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_console_under_a_path_prefix(page: Page, mounted_server: Server) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(mounted_server.url.rstrip("/"))  # "/ops" redirects to "/ops/"
    assert page.url == mounted_server.url
    mounted = page.get_by_role("article", name="mounted", exact=True)
    expect(mounted.locator('[data-field="workers"]')).to_have_text(re.compile(r"^0 / \d+ / 2$"))
    mounted.get_by_role("button", name="Pause").click()
    expect(mounted.locator('[data-field="state"]')).to_have_text("Paused")
    assert mounted_server.ok("GET", "api/pools/mounted")["state"] == "paused"
    loaded = requests[1:]  # after the navigation to "/ops" itself
    assert any(url.endswith("/ops/console/app.js") for url in loaded)
    outside = [url for url in loaded if not url.startswith(mounted_server.url)]
    assert outside == [], "every asset and API call stays under the prefix"

    # When the server goes away the console says so, and keeps what it showed.
    mounted_server.stop()
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "down")
    expect(connection).to_contain_text("Cannot reach the poolwatch server")
    expect(mounted).to_be_visible()
