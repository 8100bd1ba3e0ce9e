"""The console's Do-not-call page in a real browser (Debian's chromium through playwright, as
tests/test_console_browser.py does): adding numbers (an impossible one named), searching, importing a file,
removing a number; and a batch's calls table showing the rule beside a call the list stopped.

Set DIALER_CONSOLE_SCREENSHOTS=DIR to keep a screenshot of each step.
"""

from __future__ import annotations

import re

import aiohttp

from tests.test_console_browser import open_page, ALL_DAY, KEY, Client, base_url, expect, page, snap  # noqa: F401 (fixtures)


async def test_an_operator_adds_searches_imports_and_removes_numbers(page, base_url):
    await open_page(page, "Do not call")
    await expect(page.get_by_text("No number is listed.")).to_be_visible()
    await page.get_by_label("Numbers", exact=True).fill("+1 212 555 0100\n(212) 555-0101, 12")
    await page.get_by_label("Reason (optional)").fill("asked by letter")
    await page.get_by_role("button", name="Add to the list").click()
    notice = page.locator("p.notice")
    await expect(notice).to_have_text(re.compile(r"^2 added, 0 already listed; 1 not a number: 12 \(impossible"))
    rows = page.locator("table.dnc tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("+12125550100")
    await expect(rows.first).to_contain_text("asked by letter")
    await snap(page, "dnc-1-added")

    await page.get_by_label("File", exact=True).set_input_files(
        {"name": "list.csv", "mimeType": "text/csv", "buffer": b"name,phone\nA,+13105550100\nB,+12125550100\n"})
    await page.get_by_role("button", name="Import").click()
    await expect(notice).to_have_text("list.csv: 1 added, 1 already listed.")
    await expect(rows).to_have_count(3)
    await expect(page.get_by_text("3 numbers listed in all.")).to_be_visible()

    await page.get_by_label("Numbers starting with").fill("+1310")
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("import")
    await snap(page, "dnc-2-search")

    await page.get_by_role("button", name="Remove +13105550100").click()
    await page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    await expect(notice).to_have_text("+13105550100 is removed from the do-not-call list.")
    await expect(page.get_by_text("No listed number starts with these digits.")).to_be_visible()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/api/dnc/%2B13105550100", headers={"x-api-key": KEY}) as resp:
            assert resp.status == 404


async def test_the_calls_table_shows_the_rule_that_stopped_a_call(page, base_url):
    async with aiohttp.ClientSession() as session:
        api = Client(session, base_url)
        batch = (await api.call("POST", "/api/call/createBatch", {
            "name": "listed later", "callingNumbers": ["+15005550006"], "callingWindow": ALL_DAY,
            "scheduledAt": "2099-01-01T00:00:00Z"}))["batchId"]
        await api.call("POST", "/api/call/addCallsToBatch", {"batchId": batch, "call_data": [
            {"phoneNumber": "+12125550200"}, {"phoneNumber": "+12125550201"}]})
        rule = (await api.call("POST", "/api/dnc", {"numbers": ["+12125550200"]}) and
                await api.call("GET", "/api/dnc/%2B12125550200"))["rule"]
        await api.call("POST", f"/api/call/batches/{batch}/start")
        await api.until(f"/api/call/batches/{batch}", lambda b: b["status"] == "completed", "the batch to complete")
    await page.goto("/console")
    await page.get_by_label("Workspace API key").fill(KEY)
    await page.get_by_role("button", name="Sign in").click()
    await page.goto(f"/console#/batches/{batch}")
    stopped = page.locator("table.calls tbody tr", has_text="+12125550200")
    await expect(stopped.locator(".badge")).to_have_text("skipped")
    await expect(stopped).to_contain_text("suppressed")
    await expect(stopped.locator(".rule")).to_have_text(rule)
    await expect(page.locator("table.calls tbody tr", has_text="+12125550201").locator(".rule")).to_have_count(0)
    await snap(page, "dnc-3-calls")


async def test_a_csv_with_quoted_commas_lists_every_number_and_a_file_without_a_phone_column_is_refused(page):
    """Found by an exploratory run: the page split lines at every comma, so "Doe, John" moved the phone onto
    another column and the number was reported "not a number", not listed; a header naming no phone column sent
    every line, the header too, as numbers. The file is now read as `dialer dnc import` reads it."""
    await open_page(page, "Do not call")
    notice, alert = page.locator("p.notice"), page.locator("p.error")
    crm = ('name,phone,note\r\n"Doe, John",+1 212 555 0100,"said ""never"", twice"\r\n'
           '"Roe, Jane",(212) 555-0101,"two\nlines"\r\n\r\n')
    await page.get_by_label("File", exact=True).set_input_files(
        {"name": "crm.csv", "mimeType": "text/csv", "buffer": crm.encode()})
    await page.get_by_role("button", name="Import").click()
    await expect(notice).to_have_text("crm.csv: 2 added, 0 already listed.")
    await expect(page.get_by_text("2 numbers listed in all.")).to_be_visible()

    await page.get_by_label("File", exact=True).set_input_files(
        {"name": "contacts.csv", "mimeType": "text/csv", "buffer": b"name,mobile\nA,+13105550100\n"})
    await page.get_by_role("button", name="Import").click()
    await expect(alert).to_have_text("contacts.csv cannot be imported: the header needs exactly one phone column "
                                     "(phone_number, phonenumber, phone); it has name, mobile. Nothing was listed.")
    await expect(page.get_by_text("2 numbers listed in all.")).to_be_visible()

    await page.get_by_label("File", exact=True).set_input_files(
        {"name": "open.csv", "mimeType": "text/csv", "buffer": b'phone;name\n+13105550101;"Open\n+13105550102;B\n'})
    await page.get_by_role("button", name="Import").click()
    await expect(alert).to_have_text("open.csv cannot be imported: line 2: a quote is left open. Nothing was listed.")


async def test_a_double_click_on_more_numbers_reads_the_next_page_once(page, base_url):
    """Found: both clicks read the page after the same cursor, and its 50 numbers were listed twice."""
    async with aiohttp.ClientSession() as session:
        await Client(session, base_url).call("POST", "/api/dnc", {"numbers": [f"+1212555{i:04d}" for i in range(120)]})
    await open_page(page, "Do not call")
    rows = page.locator("table.dnc tbody tr")
    await expect(rows).to_have_count(50)
    await page.get_by_role("button", name="More numbers").dblclick()
    await expect(rows).to_have_count(100)
    await page.get_by_role("button", name="More numbers").click()
    await expect(rows).to_have_count(120)
    numbers = await rows.evaluate_all("rows => rows.map((r) => r.dataset.number)")
    assert len(set(numbers)) == 120
