"""Every string a workspace's users or partners control, shown by the console, is shown as text: markup in a
batch's or an agent's name, a call's variables (names and values), a CSV file's cells, a webhook endpoint's URL
and description, a partner's answer in the delivery log, a do-not-call reason. Each payload, if it ran, would
add its name to window.__xss or open a dialog; the test opens every view (in a real browser, as
tests/test_console_browser.py does) and checks that none ran and that each payload is on the page as text.

An exploratory run found nothing to fix (the console builds its pages with text nodes only, and its policy
forbids inline script); this keeps it so.
"""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from tests.test_console_browser import running_server, Client, console_settings, expect, open_page, page, snap  # noqa: F401

ADMIN = "console-xss-admin"


def payload(name: str) -> str:
    return (f'<img src=x onerror="window.__xss=(window.__xss||[]).concat(\'{name}\')">'
            f"\"'><svg onload=\"alert('{name}')\"><script>alert('{name}')</script>")


@pytest.fixture
async def base_url():
    """(Overrides test_console_browser's: an admin token, and endpoints on 127.0.0.1 allowed.)"""
    async with running_server(console_settings().replace(admin_token=ADMIN, webhooks_allow_insecure=True,
                                                  webhook_retry_delays="0")) as url:
        yield url


@pytest.fixture
async def partner():
    """A partner whose answer is markup (the delivery log shows its first characters)."""
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=500, text=payload("answer"), content_type="text/html")

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_no_string_from_a_user_or_partner_runs_in_the_console(page, base_url, partner):
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    async with aiohttp.ClientSession() as session:
        api = Client(session, base_url)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        async with session.get(f"{base_url}/api/admin/workspaces", headers=admin) as resp:
            workspace = (await resp.json())["data"]["workspaces"][0]["workspaceId"]
        async with session.post(f"{base_url}/api/admin/workspaces/{workspace}/agents", headers=admin, json={
                "name": payload("agent"), "callingNumbers": ["+15005550007"], "timezones": ["America/New_York"]}) as resp:
            assert resp.status == 200, await resp.text()
        batch = (await api.call("POST", "/api/call/createBatch", {
            "name": payload("batch"), "callingNumbers": ["+15005550006"], "scheduledAt": "2099-01-01T00:00:00Z"}))
        await api.call("POST", "/api/call/addCallsToBatch", {"batchId": batch["batchId"], "call_data": [
            {"phoneNumber": "+12125550100", "<b onmouseover=alert(1)>x</b>": payload("variable")}]})
        await api.call("POST", "/api/webhooks/endpoints", {
            "url": f"{partner}/<img src=x onerror=alert('url')>", "description": payload("description")})
        await api.call("POST", "/api/dnc", {"numbers": ["+12125550199"], "reason": payload("reason")})
        endpoint = (await api.call("GET", "/api/webhooks/endpoints"))["endpoints"][0]["endpointId"]
        await api.call("POST", f"/api/webhooks/endpoints/{endpoint}/test")
        await api.until("/api/webhooks/messages", lambda d: any(m["attempts"] for m in d["messages"]), "an attempt")

    await open_page(page, "Batches")
    await expect(page.locator("table.batches tbody tr").first).to_contain_text(payload("batch"))
    await page.get_by_role("link", name=payload("batch")).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(payload("batch"))
    await expect(page.locator("table.calls tbody tr").first).to_contain_text("<b onmouseover=alert(1)>x</b>=<img")
    await page.get_by_label("CSV file", exact=True).set_input_files({
        "name": "<img src=x onerror=alert('file')>.csv", "mimeType": "text/csv",
        "buffer": ("phone,note\n\"" + payload("cell").replace('"', '""') + '",x\n').encode()})
    await expect(page.locator("table.rejected tbody tr")).to_contain_text("<img src=x onerror=")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="New batch").click()
    await expect(page.get_by_label("Agent")).to_contain_text(payload("agent"))
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
    await expect(page.locator("table.endpoints tbody tr")).to_contain_text(payload("description"))
    await expect(page.locator("table.deliveries li.attempt").first).to_contain_text("<img src=x onerror=")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Do not call").click()
    await expect(page.locator("table.dnc tbody tr").first).to_contain_text(payload("reason"))
    await snap(page, "xss-dnc")

    assert await page.evaluate("window.__xss === undefined"), await page.evaluate("window.__xss")
    assert not dialogs, dialogs
