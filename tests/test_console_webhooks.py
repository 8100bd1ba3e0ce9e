"""The console's Webhooks page in a real browser (Debian's chromium through playwright, as
tests/test_console_browser.py does), against the real app on 127.0.0.1 with DIALER_WEBHOOKS_ALLOW_INSECURE
on and one attempt per message (DIALER_WEBHOOK_RETRY_DELAYS=0: a failure is final at once, so the page's
Retry has something to retry), and a partner's receiver on 127.0.0.1 that verifies nothing itself: the
test verifies what it got with `standardwebhooks` and the secret the page showed.

Set DIALER_CONSOLE_SCREENSHOTS=DIR to keep a screenshot of each step.
"""

from __future__ import annotations

import re

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from tests.test_console_browser import running_server, losing_first_answer, KEY, open_page, console_settings, expect, page, snap  # noqa: F401 (page: a fixture)


@pytest.fixture
async def base_url():
    """(Overrides test_console_browser's: the `page` fixture opens this server.)"""
    async with running_server(console_settings().replace(webhooks_allow_insecure=True, webhook_retry_delays="0")) as url:
        yield url


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, dict]] = []
        self.failing = False

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((await request.read(), dict(request.headers)))
        return web.Response(status=500, text="broken") if self.failing else web.Response(text="thanks")


@pytest.fixture
async def receiver():
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield r, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    await runner.cleanup()


async def add_endpoint(page, url: str) -> str:
    """Added through the form; the secret the page shows (once)."""
    await page.get_by_label("Endpoint URL").fill(url)
    await page.get_by_label("Description (optional)").fill("CRM sync")
    await page.get_by_role("button", name="Add endpoint").click()
    await expect(page.locator("p.notice")).to_have_text(f"Endpoint {url} added. Copy its secret now: it is shown once.")
    field = page.get_by_label("Signing secret", exact=True)
    await expect(field).to_have_value(re.compile(r"^whsec_[A-Za-z0-9+/=]{44}$"))
    await expect(field).to_be_focused()
    await expect(page.get_by_text("Shown this once")).to_be_visible()
    return await field.input_value()


async def test_an_operator_adds_an_endpoint_pings_it_and_retries_a_failed_delivery(page, receiver):
    r, url = receiver
    await open_page(page, "Webhooks")
    await expect(page.get_by_text("No endpoints yet")).to_be_visible()
    secret = await add_endpoint(page, url)
    endpoint = page.locator("table.endpoints tbody tr")
    await expect(endpoint).to_have_count(1)
    await expect(endpoint).to_contain_text(url)
    await expect(endpoint).to_contain_text("every event")
    await expect(endpoint.locator(".endpoint-state")).to_have_text("Active")
    await snap(page, "webhooks-1-secret")

    # Shown once: gone when dismissed, and nowhere after a reload.
    await page.get_by_role("button", name="I have copied it").click()
    await expect(page.get_by_label("Signing secret", exact=True)).to_have_count(0)
    await page.reload()
    await expect(endpoint).to_have_count(1)
    assert secret not in await page.content()

    # A test ping: delivered, with its attempt.
    await page.get_by_role("button", name=f"Send a test ping to {url}").click()
    await expect(page.locator("p.notice")).to_have_text(f"Test ping queued for {url}.")
    rows = page.locator("table.deliveries tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator(".badge")).to_have_text("delivered")
    await expect(rows.first.locator("li.attempt")).to_have_count(1)
    await expect(rows.first.locator("li.attempt")).to_have_text(re.compile(r"· HTTP 200 · \d+ ms · thanks$"))
    body, headers = r.got[0]
    assert Webhook(secret).verify(body, headers)["type"] == "webhook.test"  # the secret shown is the one that signs

    # The receiver fails: the page shows the failed attempt, and the endpoint failing.
    r.failing = True
    await page.get_by_role("button", name=f"Send a test ping to {url}").click()
    failed = rows.filter(has_text="HTTP 500")
    await expect(failed.locator(".badge")).to_have_text("failed")
    await expect(failed.locator("li.attempt")).to_have_text(re.compile(r"· HTTP 500 · \d+ ms · broken$"))
    await expect(endpoint.locator(".endpoint-state")).to_have_text(re.compile("^Failing since "))
    await snap(page, "webhooks-2-failed")

    # It recovers; Retry on the page sends the same message again.
    r.failing = False
    await failed.get_by_role("button", name=re.compile("^Retry the webhook.test message")).click()
    await expect(page.locator("p.notice")).to_have_text(f"The webhook.test message to {url} is sent again.")
    await expect(failed.locator(".badge")).to_have_text("delivered")
    await expect(failed.locator("li.attempt")).to_have_count(2)
    await expect(failed.locator("li.attempt").nth(1)).to_contain_text("HTTP 200")
    await expect(failed.get_by_role("button")).to_have_count(0)
    await expect(endpoint.locator(".endpoint-state")).to_have_text("Active")
    assert len(r.got) == 3 and r.got[1][1]["webhook-id"] == r.got[2][1]["webhook-id"]
    Webhook(secret).verify(*r.got[2])
    await snap(page, "webhooks-3-retried")


async def test_an_operator_disables_rotates_recovers_and_deletes_an_endpoint(page, receiver):
    r, url = receiver
    await open_page(page, "Webhooks")
    first = await add_endpoint(page, url)
    state = page.locator("table.endpoints .endpoint-state")

    await page.get_by_role("button", name=f"Disable {url}").click()
    await expect(state).to_have_text("Disabled: by an operator")
    await page.get_by_role("button", name=f"Enable {url}").click()
    await expect(state).to_have_text("Active")
    await expect(page.get_by_role("button", name=f"Enable {url}")).to_have_count(0)

    await page.get_by_role("button", name=f"Rotate the secret of {url}").click()
    await page.get_by_role("dialog", name="Rotate the signing secret?").get_by_role("button", name="Rotate").click()
    await expect(page.locator("p.notice")).to_have_text(f"The secret of {url} is rotated.")
    await expect(page.get_by_label("Signing secret", exact=True)).not_to_have_value(first)
    second = await page.get_by_label("Signing secret", exact=True).input_value()
    assert second.startswith("whsec_")

    # A delivery failed while the partner was down; "Recover…" sends it again once it is back.
    r.failing = True
    await page.get_by_role("button", name=f"Send a test ping to {url}").click()
    await expect(page.locator("table.deliveries tbody tr .badge")).to_have_text("failed")
    r.failing = False
    await page.get_by_role("button", name=f"Recover the failed messages of {url}").click()
    dialog = page.get_by_role("dialog", name="Send failed messages again")
    await expect(dialog.get_by_label("Failed messages created since")).to_have_value(re.compile(r"^\d{4}-\d\d-\d\dT"))
    await snap(page, "webhooks-4-recover")
    await dialog.get_by_role("button", name="Send them again").click()
    await expect(page.locator("p.notice")).to_have_text(f"1 failed message(s) to {url} will be sent again.")
    await expect(page.locator("table.deliveries tbody tr .badge")).to_have_text("delivered")
    Webhook(second).verify(*r.got[-1])  # signed with the new secret (and the old one, for 24 h)
    Webhook(first).verify(*r.got[-1])

    await page.get_by_role("button", name=f"Delete {url}").click()
    await page.get_by_role("dialog", name="Delete this endpoint?").get_by_role("button", name="Delete").click()
    await expect(page.locator("p.notice")).to_have_text(f"{url} is deleted.")
    await expect(page.get_by_text("No endpoints yet")).to_be_visible()
    await expect(page.get_by_text("No deliveries yet.")).to_be_visible()


async def test_a_double_click_on_add_endpoint_adds_one(page, base_url, receiver):
    """Found by an exploratory run: the form was not held while its request ran, so a double click created two
    endpoints; the page showed one secret, and every event went twice, once signed with a secret never shown."""
    _, url = receiver
    await open_page(page, "Webhooks")
    await page.get_by_label("Endpoint URL").fill(url)
    await page.get_by_role("button", name="Add endpoint").dblclick()
    await expect(page.locator("p.notice")).to_have_text(f"Endpoint {url} added. Copy its secret now: it is shown once.")
    await expect(page.locator("table.endpoints tbody tr")).to_have_count(1)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/api/webhooks/endpoints", headers={"x-api-key": KEY}) as resp:
            assert len((await resp.json())["data"]["endpoints"]) == 1


async def test_an_endpoints_url_stays_selected_across_refreshes(page, receiver):
    """Found by an exploratory run: the endpoints table was rebuilt at every refresh (2 s), so an operator
    selecting an endpoint's URL to copy it lost the selection before pressing Ctrl+C."""
    _, url = receiver
    await open_page(page, "Webhooks")
    await add_endpoint(page, url)
    await page.get_by_role("button", name="I have copied it").click()
    await page.locator("table.endpoints tbody tr code").first.select_text()
    for _ in range(2):  # two refreshes of the list
        async with page.expect_response(re.compile(r"/api/webhooks/endpoints$")):
            pass
    assert await page.evaluate("window.getSelection().toString()") == url


async def test_add_endpoint_clicked_again_after_a_lost_answer_adds_one_and_shows_its_secret(page, base_url, receiver):
    """Found by an exploratory run: an endpoint whose creation answer was lost existed with a secret nobody saw,
    and "Add endpoint" clicked again created a second. The form sends an Idempotency-Key: the retry is answered
    with the first endpoint and its secret."""
    _, url = receiver
    lose_first_answer = losing_first_answer()

    await open_page(page, "Webhooks")
    await page.route(re.compile(r"/api/webhooks/endpoints$"), lambda route: (
        lose_first_answer(route) if route.request.method == "POST" else route.continue_()))
    await page.get_by_label("Endpoint URL").fill(url)
    await page.get_by_label("Description (optional)").fill("CRM sync")
    await page.get_by_role("button", name="Add endpoint").click()
    await expect(page.locator("p.error").first).to_contain_text("The server could not be reached")
    secret = await add_endpoint(page, url)  # the same request again (add_endpoint types the same)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/api/webhooks/endpoints", headers={"x-api-key": KEY}) as resp:
            endpoints = (await resp.json())["data"]["endpoints"]
    assert len(endpoints) == 1
    assert secret.startswith("whsec_")
