"""The console on servers that restrict changes: an API token, and --read-only."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from browser.consoletools import TOKEN, Server

pytestmark = pytest.mark.browser


def test_token_flow(page: Page, token_server: Server) -> None:
    page.goto(token_server.url)
    expect(page.locator("#mode-note")).to_contain_text("Changes need the API token")
    reports = page.get_by_role("article", name="reports", exact=True)
    state = reports.locator('[data-field="state"]')
    expect(state).to_have_text("Running")

    # No token: the server's refusal is shown with what to do about it.
    reports.get_by_role("button", name="Pause").click()
    alert = reports.get_by_role("alert")
    expect(alert).to_contain_text("Enter a valid API token")
    assert token_server.ok("GET", "api/pools/reports")["state"] == "running"

    token = page.get_by_label("API token")
    token.fill("not-the-token")
    page.get_by_role("button", name="Save").click()
    reports.get_by_role("button", name="Pause").click()
    expect(alert).to_contain_text("was not accepted")

    token.fill(TOKEN)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#token-state")).to_have_text("Token set for this tab")
    expect(page.locator("#mode-note")).to_be_hidden()
    reports.get_by_role("button", name="Pause").click()
    expect(state).to_have_text("Paused")
    expect(alert).to_be_hidden()
    assert token_server.ok("GET", "api/pools/reports")["state"] == "paused"

    # The token lives in this tab's sessionStorage and survives a reload.
    assert page.evaluate("sessionStorage.getItem('poolwatch.token')") == TOKEN
    page.reload()
    expect(page.get_by_label("API token")).to_have_value(TOKEN)
    reports.get_by_role("button", name="Resume").click()
    expect(state).to_have_text("Running")
    assert token_server.ok("GET", "api/pools/reports")["state"] == "running"

    page.get_by_role("button", name="Clear").click()
    assert page.evaluate("sessionStorage.getItem('poolwatch.token')") is None
    expect(page.locator("#mode-note")).to_contain_text("Changes need the API token")


def test_read_only_server_offers_no_controls(page: Page, read_only_server: Server) -> None:
    page.goto(read_only_server.url)
    expect(page.locator("#mode-badge")).to_have_text("Read-only")
    expect(page.locator("#mode-note")).to_contain_text("read-only")
    reports = page.get_by_role("article", name="reports", exact=True)
    expect(reports.locator('[data-field="queue"]')).to_have_text("0 / 50")
    expect(reports.locator('[data-field="workers"]')).to_have_text(re.compile(r"^0 / \d+ / 3$"))
    for control in ("Resize", "Set", "Pause", "Shut down…"):
        expect(reports.get_by_role("button", name=control, exact=True)).to_be_hidden()
    expect(reports.get_by_label("Max workers")).to_be_hidden()
    # The server agrees: the same change is refused over the API.
    refused = read_only_server.call("PATCH", "api/pools/reports", json={"paused": True})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"]
