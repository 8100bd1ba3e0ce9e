"""Operators' flows that went wrong in an exploratory run of the console, in a real browser (Debian's chromium
through playwright, as tests/test_console_browser.py does): what the page says when a move is refused or the
server stops answering for a while or the key is revoked, what a double click or a click during a read does,
and what a pasted key or a file's name can break.

Set DIALER_CONSOLE_SCREENSHOTS=DIR to keep a screenshot of each step.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from tests.test_console_browser import running_server, losing_first_answer, open_page, KEY, Client, console_settings, expect, page, snap  # noqa: F401

ADMIN = "console-flows-admin"


@pytest.fixture
async def base_url():
    """(Overrides test_console_browser's: with an admin token, to revoke the key.)"""
    async with running_server(console_settings().replace(admin_token=ADMIN)) as url:
        yield url


async def test_a_refused_retry_says_why_and_the_refresh_does_not_wipe_it(page, base_url):
    """Found: the refresh each move asks for cleared the page's error line on success, so Retry's 409 ("nothing
    to retry") was wiped within milliseconds and the operator saw nothing at all."""
    async with aiohttp.ClientSession() as session:
        api = Client(session, base_url)
        batch = (await api.call("POST", "/api/call/createBatch", {
            "name": "nothing failed", "callingNumbers": ["+15005550006"], "scheduledAt": "2099-01-01T00:00:00Z"}))
        await api.call("POST", f"/api/call/batches/{batch['batchId']}/start")  # no calls: completed at once
        await api.until(f"/api/call/batches/{batch['batchId']}", lambda b: b["status"] == "completed", "completed")
    await open_page(page, "Batches")
    await page.goto(f"/console#/batches/{batch['batchId']}")
    await expect(page.get_by_role("button", name="Retry…")).to_be_enabled()
    await page.get_by_role("button", name="Retry…").click()
    async with page.expect_response(re.compile(r"/retry$")) as answered:
        await page.get_by_role("dialog").get_by_role("button", name="Retry these calls").click()
    assert (await answered.value).status == 409
    refused = page.get_by_role("alert").filter(has_text="Retry refused: nothing to retry")
    await expect(refused).to_be_visible()
    # Still there after the page has refreshed the batch twice (the hint names each refresh's time).
    for _ in range(2):
        async with page.expect_response(re.compile(r"/api/call/batches/\w+$")):
            pass
    await expect(refused).to_be_visible()
    await snap(page, "flows-1-retry-refused")


async def test_could_not_refresh_goes_once_the_server_answers_again(page, base_url):
    """Found: after the server was restarted, the Webhooks page kept "Could not refresh: … Retrying…" for ever
    although its lists were read again."""
    await open_page(page, "Webhooks")
    await expect(page.get_by_text("No endpoints yet")).to_be_visible()
    refused = {"n": 0}

    async def down_once(route):
        if refused["n"] == 0:
            refused["n"] += 1
            await route.abort("connectionrefused")
        else:
            await route.continue_()

    await page.route("**/api/webhooks/endpoints", down_once)
    stale = page.get_by_role("alert").filter(has_text="Could not refresh")
    await expect(stale).to_have_count(1)
    async with page.expect_response(re.compile(r"/api/webhooks/endpoints$")) as again:
        pass
    assert (await again.value).status == 200
    await expect(stale).to_have_count(0)


async def test_a_key_pasted_with_an_invisible_character_is_named_as_such(page):
    """Found: a key copied with a zero-width space made fetch throw before sending, and the page said "The server
    could not be reached. Is the dialer running?"."""
    await page.goto("/console")
    await page.get_by_label("Workspace API key").fill(KEY + "\u200b")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile(
        rf"^This is not an API key: character {len(KEY) + 1} is U\+200B, and a key is made of printable ASCII"))
    await expect(page.get_by_label("Workspace API key")).to_have_attribute("aria-invalid", "true")
    await page.get_by_label("Workspace API key").fill(f"  {KEY} ")  # spaces around it are trimmed, as before
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()


async def test_a_do_not_call_file_whose_name_is_not_ascii_imports(page, base_url):
    """Found: the import's Idempotency-Key carried the file's name, so "opt-outs Müller.csv" was refused (400,
    the key must be printable ASCII) and "отказы.csv" made fetch throw ("the server could not be reached")."""
    await open_page(page, "Do not call")
    notice = page.locator("p.notice")
    for i, name in enumerate(["opt-outs Müller.csv", "отказы.csv"]):
        await page.get_by_label("File", exact=True).set_input_files(
            {"name": name, "mimeType": "text/csv", "buffer": f"phone\n+1310555010{i}\n".encode()})
        await page.get_by_role("button", name="Import").click()
        await expect(notice).to_have_text(f"{name}: 1 added, 0 already listed.")
    await expect(page.get_by_text("2 numbers listed in all.")).to_be_visible()
    await page.get_by_label("File", exact=True).set_input_files(
        {"name": "отказы.csv", "mimeType": "text/csv", "buffer": b"phone\n+13105550101\n"})
    await page.get_by_role("button", name="Import").click()
    await expect(notice).to_have_text("отказы.csv: 0 added, 1 already listed.")


async def test_a_double_click_on_add_to_the_list_says_what_it_added(page):
    """Found: both clicks were sent, and the page answered the second: "0 added, 1 already listed"."""
    await open_page(page, "Do not call")
    await page.get_by_label("Numbers", exact=True).fill("+1 646 555 0142")
    async with page.expect_response(re.compile(r"/api/dnc$")):
        await page.get_by_role("button", name="Add to the list").dblclick()
    await expect(page.locator("table.dnc tbody tr")).to_have_count(1)
    await expect(page.locator("p.notice")).to_have_text("1 added, 0 already listed.")


async def test_a_batchs_settings_show_its_compliance_profile(page, base_url):
    """Found: the Settings listed the window, zone, numbers, retries and timeout but not the compliance profile
    (which narrows the window), so an operator could not see why calls waited."""
    async with aiohttp.ClientSession() as session:
        api = Client(session, base_url)
        ruled = (await api.call("POST", "/api/call/createBatch", {
            "name": "ruled", "callingNumbers": ["+15005550006"], "scheduledAt": "2099-01-01T00:00:00Z",
            "compliance": "us-states", "stateField": "st"}))["batchId"]
        plain = (await api.call("POST", "/api/call/createBatch", {
            "name": "plain", "callingNumbers": ["+15005550006"], "scheduledAt": "2099-01-01T00:00:00Z"}))["batchId"]
    await open_page(page, "Batches")
    for batch, shown in [(ruled, "us-states; the callee's state also from the variable “st”"),
                         (plain, "the workspace's profile")]:
        await page.goto(f"/console#/batches/{batch}")
        await page.get_by_text("Settings", exact=True).click()
        await expect(page.locator('dl.settings dd[data-counter="Compliance"]')).to_have_text(shown)


async def test_next_page_clicked_while_the_calls_are_read_shows_the_next_page(page, base_url):
    """Found: a click on Next page while the table was being read again was dropped, and the rows of page 1
    were then shown as "Page 2" (for good, with "Keep this page up to date" off)."""
    async with aiohttp.ClientSession() as session:
        api = Client(session, base_url)
        batch = (await api.call("POST", "/api/call/createBatch", {
            "name": "thirty", "callingNumbers": ["+15005550006"], "scheduledAt": "2099-01-01T00:00:00Z"}))["batchId"]
        await api.call("POST", "/api/call/addCallsToBatch", {
            "batchId": batch, "call_data": [{"phoneNumber": f"+1212555{i:04d}"} for i in range(30)]})
    await open_page(page, "Batches")
    await page.goto(f"/console#/batches/{batch}")
    rows = page.locator("table.calls tbody tr")
    await expect(rows).to_have_count(25)
    await page.get_by_label("Keep this page up to date").uncheck()

    async def slow_first_page(route):
        if "cursor=" not in route.request.url:
            await asyncio.sleep(1.5)
        await route.continue_()

    await page.route(re.compile(r"/calls\?"), slow_first_page)
    async with page.expect_response(re.compile(r"/calls\?(?!.*cursor=)")) as slow:
        await page.get_by_role("button", name="Refresh").click()
        await page.get_by_role("button", name="Next page").click()
    await slow.value
    await expect(page.get_by_text("Page 2, 5 calls")).to_be_visible()
    await expect(rows).to_have_count(5)
    await expect(rows.first).to_contain_text("+12125550025")


async def test_a_move_without_an_answer_is_not_called_refused(page, base_url):
    """Found: a Stop whose answer was lost (the server restarting) read "Stop refused: … Failed to fetch", though
    the stop may have been done."""
    async with aiohttp.ClientSession() as session:
        api = Client(session, base_url)
        batch = (await api.call("POST", "/api/call/createBatch", {
            "name": "lost answer", "callingNumbers": ["+15005550006"], "scheduledAt": "2099-01-01T00:00:00Z"}))["batchId"]
    await open_page(page, "Batches")
    await page.goto(f"/console#/batches/{batch}")
    await page.route(re.compile(r"/start$"), lambda route: route.abort("connectionreset"))
    await page.get_by_role("button", name="Start").click()
    await expect(page.get_by_role("alert").filter(has_text="Start: no answer from the server")).to_contain_text(
        "The status above shows whether it was done.")
    await expect(page.get_by_text("refused")).to_have_count(0)


async def test_a_filter_chosen_while_the_batches_are_read_never_shows_the_old_filters_rows(page, base_url):
    """Found: a status chosen while a refresh was in flight was applied only at the next poll (2 s later); the
    refresh in flight meanwhile filled the table with the old filter's rows."""
    async with aiohttp.ClientSession() as session:
        api = Client(session, base_url)
        waiting = (await api.call("POST", "/api/call/createBatch", {
            "name": "waiting", "callingNumbers": ["+15005550006"], "scheduledAt": "2099-01-01T00:00:00Z"}))["batchId"]
    await open_page(page, "Batches")
    await expect(page.locator(f'tr[data-batch-id="{waiting}"]')).to_be_visible()

    async def slow_unfiltered(route):
        if "status=" not in route.request.url:
            await asyncio.sleep(1.0)
        await route.continue_()

    await page.route(re.compile(r"/api/call/batches\?"), slow_unfiltered)
    async with page.expect_request(re.compile(r"/api/call/batches\?(?!.*status=)")):
        pass  # a refresh of "All statuses" is in flight
    async with page.expect_response(re.compile(r"/api/call/batches\?(?!.*status=)")) as stale:
        await page.get_by_label("Status", exact=True).select_option("cancelled")
    await stale.value
    await page.wait_for_timeout(150)  # the stale answer handled: its rows must not be shown (checked once, now)
    assert await page.locator(f'tr[data-batch-id="{waiting}"]').count() == 0
    await expect(page.get_by_text("No batches here.")).to_be_visible()


async def test_the_check_of_an_earlier_file_never_shows_over_the_file_chosen_last(page, base_url):
    """Found: choosing a second CSV file while the first was being checked showed the first file's counts (and
    "Import 10 rows") once its slower check answered, while Import would send the second file."""
    async with aiohttp.ClientSession() as session:
        batch = (await Client(session, base_url).call("POST", "/api/call/createBatch", {
            "name": "two files", "callingNumbers": ["+15005550006"], "scheduledAt": "2099-01-01T00:00:00Z"}))["batchId"]
    await open_page(page, "Batches")
    await page.goto(f"/console#/batches/{batch}")
    first = {"slow": True}

    async def first_check_slow(route):
        if first["slow"]:
            first["slow"] = False
            await asyncio.sleep(1.5)
        await route.continue_()

    await page.route(re.compile(r"/csv\?dryRun=true"), first_check_slow)
    big = "phone\n" + "".join(f"+1212555{i:04d}\n" for i in range(10))
    small = "phone\n+13105550100\n+13105550101\n+13105550102\n"
    checked = asyncio.Event()
    answers: list[str] = []
    page.on("response", lambda r: "dryRun=true" in r.url and (answers.append(r.url), len(answers) == 2 and checked.set()))
    await page.get_by_label("CSV file", exact=True).set_input_files(
        {"name": "big.csv", "mimeType": "text/csv", "buffer": big.encode()})
    await page.get_by_label("CSV file", exact=True).set_input_files(
        {"name": "small.csv", "mimeType": "text/csv", "buffer": small.encode()})
    await asyncio.wait_for(checked.wait(), 20)  # both checks answered, the first one last
    await page.wait_for_timeout(150)  # the slow answer handled; what shows now must be the second file's
    assert await page.locator(".preview .summary").text_content() == "3 rows: 3 can be imported, none rejected."
    await expect(page.get_by_role("button", name="Import 3 rows")).to_be_enabled()


async def test_a_window_that_crosses_midnight_is_confirmed_before_the_batch_is_created(page):
    """Found: 21:00 to 08:00 (typed for 08:00 to 21:00) created a batch calling through the night, silently."""
    await open_page(page, "New batch")
    await page.get_by_label("Name", exact=True).fill("night shift")
    await page.get_by_label("From", exact=True).fill("21:00")
    await page.get_by_label("To", exact=True).fill("08:00")
    await expect(page.get_by_role("button", name="Create batch")).to_be_enabled()
    await page.get_by_role("button", name="Create batch").click()
    dialog = page.get_by_role("dialog", name="Call through the night?")
    await expect(dialog).to_contain_text("calls may be placed from 21:00 until 08:00 the next morning")
    await dialog.get_by_role("button", name="Change the window").click()
    await expect(page.get_by_label("From", exact=True)).to_be_focused()
    await expect(page.get_by_text("created")).to_have_count(0)
    async with page.expect_response(re.compile(r"/api/call/createBatch$")) as created:
        await page.get_by_role("button", name="Create batch").click()
        await page.get_by_role("dialog").get_by_role("button", name="Create it so").click()
    assert (await (await created.value).json())["data"]["callingWindow"]["start"] == "21:00"
    await expect(page.get_by_text("Batch “night shift” created (pending)")).to_be_visible()


async def test_a_key_revoked_while_a_page_is_open_signs_the_operator_out(page, base_url):
    """Checked by an exploratory run (it worked; kept so): the next refresh meets 403 "invalid API key", the key
    leaves the tab's storage and the sign-in page says why."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/api/admin/workspaces", headers=admin) as resp:
            workspace = (await resp.json())["data"]["workspaces"][0]["workspaceId"]
        async with session.post(f"{base_url}/api/admin/workspaces/{workspace}/keys", headers=admin) as resp:
            key = (await resp.json())["data"]["apiKey"]
        await page.goto("/console")
        await page.get_by_label("Workspace API key").fill(key)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Batches")).to_be_visible()
        async with session.post(f"{base_url}/api/admin/workspaces/{workspace}/keys/revoke", headers=admin,
                                json={"apiKey": key}) as resp:
            assert resp.status == 200
    await expect(page.get_by_text("Your API key is no longer accepted (invalid API key). Sign in again.")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('dialer.apiKey')") is None


async def test_no_other_csv_file_can_be_chosen_while_one_is_imported(page, base_url):
    """Found: a file chosen while another was being imported took the import's answer ("small.csv imported")
    and its Import button said "Imported" though nothing of it was written."""
    async with aiohttp.ClientSession() as session:
        batch = (await Client(session, base_url).call("POST", "/api/call/createBatch", {
            "name": "one at a time", "callingNumbers": ["+15005550006"], "scheduledAt": "2099-01-01T00:00:00Z"}))["batchId"]
    await open_page(page, "Batches")
    await page.goto(f"/console#/batches/{batch}")
    held = asyncio.Event()

    async def hold_import(route):
        await held.wait()
        await route.continue_()

    await page.route(re.compile(r"/csv\?dryRun=false"), hold_import)
    chooser = page.get_by_label("CSV file", exact=True)
    await chooser.set_input_files({"name": "first.csv", "mimeType": "text/csv", "buffer": b"phone\n+13105550100\n"})
    await page.get_by_role("button", name="Import 1 rows").click()
    await expect(page.get_by_text("Importing first.csv…")).to_be_visible()
    await expect(chooser).to_be_disabled()
    held.set()
    await expect(page.get_by_text("first.csv imported.")).to_be_visible()
    await expect(chooser).to_be_enabled()


async def test_create_batch_clicked_again_after_a_lost_answer_creates_one_batch(page, base_url):
    """Found: the server created the batch but its answer was lost (a restart, the network); "Create batch"
    clicked again created a second one. The form now sends an Idempotency-Key, the same while its body is."""
    await open_page(page, "New batch")
    # The server does the work, and the answer never reaches the page.
    await page.route(re.compile(r"/api/call/createBatch$"), losing_first_answer())
    await page.get_by_label("Name", exact=True).fill("asked twice")
    await expect(page.get_by_role("button", name="Create batch")).to_be_enabled()
    await page.get_by_role("button", name="Create batch").click()
    await expect(page.get_by_role("alert")).to_contain_text("The server did not answer (Failed to fetch). Create it again")
    async with page.expect_response(re.compile(r"/api/call/createBatch$")) as again:
        await page.get_by_role("button", name="Create batch").click()
    assert (await again.value).headers.get("idempotent-replay") == "true"
    await expect(page.get_by_text("Batch “asked twice” created (pending)")).to_be_visible()
    async with aiohttp.ClientSession() as session:
        batches = (await Client(session, base_url).call("GET", "/api/call/batches?limit=100"))["batches"]
    assert [b["name"] for b in batches].count("asked twice") == 1


async def test_retry_clicked_again_after_a_lost_answer_retries_once(page, base_url):
    """Found: Retry's answer lost (a restart, the network) and Retry clicked again made a second retry (retryCount 2,
    or a 409 "nothing to retry" for a retry that had been done). Retry now goes under an Idempotency-Key."""
    async with aiohttp.ClientSession() as session:
        api = Client(session, base_url)
        batch = (await api.call("POST", "/api/call/createBatch", {
            "name": "retried once", "callingNumbers": ["+15005550006"], "concurrencyLimit": 20,
            "callingWindow": {"start": "00:00", "end": "24:00"}}))["batchId"]
        await api.call("POST", "/api/call/addCallsToBatch", {
            "batchId": batch, "call_data": [{"phoneNumber": f"+1212555{i:04d}"} for i in range(30)]})
        await api.until(f"/api/call/batches/{batch}", lambda b: b["status"] == "completed", "the batch to complete")
    lose_first_answer = losing_first_answer()

    await open_page(page, "Batches")
    await page.goto(f"/console#/batches/{batch}")
    await page.route(re.compile(r"/retry$"), lose_first_answer)
    retry = page.get_by_role("button", name="Retry…")
    await expect(retry).to_be_enabled()
    await retry.click()
    await page.get_by_role("dialog").get_by_role("button", name="Retry these calls").click()
    await expect(page.get_by_role("alert").filter(has_text="Retry: no answer from the server")).to_be_visible()
    await expect(retry).to_be_enabled()
    await retry.click()
    async with page.expect_response(re.compile(r"/retry$")) as again:
        await page.get_by_role("dialog").get_by_role("button", name="Retry these calls").click()
    assert (await again.value).status == 200 and (await again.value).headers.get("idempotent-replay") == "true"
    async with aiohttp.ClientSession() as session:
        assert (await Client(session, base_url).call("GET", f"/api/call/batches/{batch}"))["retryCount"] == 1
