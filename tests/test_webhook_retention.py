"""The partner webhook log's retention, through the public HTTP API and the reaper: delivered and failed
messages are purged DIALER_WEBHOOK_RETENTION_DAYS after their last change, by the injected clock (moved
years ahead here, no sleeping); pending ones never are, and can still be sent."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from aiohttp import web

from tests.dispatch_harness import Harness
from tests.test_partner_webhooks import deliver, endpoint

DAY = 24 * 3600


@pytest.fixture
async def settings(settings):
    return settings.replace(webhooks_allow_insecure=True, webhook_retry_delays="0,5,300", webhook_timeout_seconds=1.0)


@pytest.fixture
async def partner(aiohttp_server):
    """A receiver that answers 200 on /ok and 500 on /fail; counts what it got on each."""
    got = {"ok": 0, "fail": 0}

    async def ok(request: web.Request) -> web.Response:
        got["ok"] += 1
        return web.Response(text="thanks")

    async def fail(request: web.Request) -> web.Response:
        got["fail"] += 1
        return web.Response(status=500, text="broken")

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/fail", fail)
    server = await aiohttp_server(app)
    return got, f"http://127.0.0.1:{server.port}"


async def _send_test(api, hook: dict) -> str:
    code, sent = await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    assert code == 200, sent
    return sent["data"]["messageId"]


async def _log(api) -> dict[str, dict]:
    code, log = await api.get("/api/webhooks/messages?limit=100")
    assert code == 200
    return {m["messageId"]: m for m in log["data"]["messages"]}


async def test_the_reaper_purges_final_messages_past_the_retention_by_the_injected_clock(
        api, clock, engine_settings, partner, caplog):
    got, base = partner
    good, bad = await endpoint(api, f"{base}/ok"), await endpoint(api, f"{base}/fail")
    delivered = await _send_test(api, good)
    failed = await _send_test(api, bad)
    for wait in (0, 5, 300):  # the whole schedule refused: failed
        clock.advance(wait)
        await deliver(api)
    pending = await _send_test(api, bad)
    await deliver(api)  # one refusal: pending, due again in 5 s (and left so: no sender runs from here)
    log = await _log(api)
    assert {m: log[m]["status"] for m in (delivered, failed, pending)} == {
        delivered: "delivered", failed: "failed", pending: "pending"}

    clock.advance(29 * DAY)  # within the 30 days (the default): nothing goes
    assert engine_settings.webhook_retention == dt.timedelta(days=30)
    reaper = Harness(api, clock, engine_settings).engines[0].reaper
    await reaper.run()  # its first run does the housekeeping
    assert set(await _log(api)) == {delivered, failed, pending}

    clock.advance(3 * 365 * DAY)  # years on, by the injected clock only
    caplog.set_level(logging.INFO, logger="workers.reaper")
    reaper = Harness(api, clock, engine_settings).engines[0].reaper
    await reaper.run()
    assert set(await _log(api)) == {pending}  # pending: kept whatever its age
    purge = [r for r in caplog.records if "past their retention" in r.getMessage()]
    assert [r.count for r in purge] == [2]
    await reaper.run()  # not a housekeeping run, and nothing left to purge anyway
    assert set(await _log(api)) == {pending}

    code, again = await api.post(f"/api/webhooks/messages/{pending}/retry")  # replay works on what is kept
    assert code == 200 and again["data"]["status"] == "pending"
    sent_before = got["fail"]
    await deliver(api)
    assert got["fail"] == sent_before + 1 and len((await _log(api))[pending]["attempts"]) == 2


async def test_a_shorter_retention_is_followed(api, clock, engine_settings, partner):
    _, base = partner
    hook = await endpoint(api, f"{base}/ok")
    sent = await _send_test(api, hook)
    await deliver(api)
    quick = engine_settings.replace(webhook_retention_days=0.5)
    clock.advance(DAY // 2 - 60)
    await Harness(api, clock, quick).engines[0].reaper.run()
    assert sent in await _log(api)
    clock.advance(120)
    await Harness(api, clock, quick).engines[0].reaper.run()
    assert await _log(api) == {}
