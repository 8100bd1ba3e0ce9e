"""Partner webhooks through the public HTTP API, received by a real aiohttp server on 127.0.0.1 that checks
every delivery with the `standardwebhooks` package, as a partner would. Retries, rotation and the 5-day
disable follow the injected clock (no sleeping); the sender is driven pass by pass (tick, drain)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from dialer.api.appkeys import SENDER, WEBHOOKS
from dialer.delivery.sender import LANE_MESSAGES
from tests.dispatch_harness import Harness, nums


@pytest.fixture
async def settings(settings):
    return settings.replace(webhooks_allow_insecure=True, webhook_retry_delays="0,5,300",
                            webhook_timeout_seconds=1.0)


class Receiver:
    """A partner's endpoint: records every request; answers as `mode` says."""

    def __init__(self) -> None:
        self.got: list[dict] = []
        self.mode = "ok"
        self.fail_first = 0
        self.redirected = 0
        self.answers: list[web.Response] = []  # answered first, one per request

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.got.append({"headers": dict(request.headers), "body": body, "at": time.monotonic()})
        if self.answers:
            return self.answers.pop(0)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500, text="not now")
        if self.mode == "hang":
            await asyncio.sleep(30)
        if self.mode == "redirect":
            raise web.HTTPFound("/elsewhere")
        if self.mode == "close":
            request.transport.close()
            await asyncio.sleep(1)
        if self.mode == "huge":
            response = web.StreamResponse(status=200)
            await response.prepare(request)
            chunk = b"x" * 65536
            for _ in range(16384):  # 1 GiB, if anyone read it
                await response.write(chunk)
            return response
        if self.mode == "fail":
            return web.Response(status=500, text="broken")
        return web.Response(text="thanks")

    async def elsewhere(self, request: web.Request) -> web.Response:
        self.redirected += 1
        return web.Response(text="followed")

    def events(self, secrets: list[str] | str) -> list[dict]:
        """Every delivery, verified with one of these secrets (all must verify)."""
        out = []
        for got in self.got:
            out.append(verify(got, secrets))
        return out


def verify(got: dict, secrets: list[str] | str) -> dict:
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        payload = Webhook(secret).verify(got["body"], got["headers"])
        return {**payload, "webhookId": got["headers"]["webhook-id"]}


@pytest.fixture
async def receiver(aiohttp_server):
    async def start(mode: str = "ok") -> tuple[Receiver, str]:
        r = Receiver()
        r.mode = mode
        app = web.Application()
        app.router.add_post("/hook", r.handle)
        app.router.add_route("*", "/elsewhere", r.elsewhere)
        server = await aiohttp_server(app)
        return r, f"http://127.0.0.1:{server.port}/hook"

    return start


async def endpoint(api, url: str, **body) -> dict:
    code, doc = await api.post("/api/webhooks/endpoints", {"url": url, **body})
    assert code == 200, doc
    return doc["data"]


async def deliver(api) -> None:
    sender = api.app[SENDER]
    while await sender.tick():  # each pass leases a few messages per endpoint
        await sender.drain()
    await sender.drain()


async def test_calls_and_batches_reach_the_partner_signed_once_each(api, clock, engine_settings, receiver):
    r, url = await receiver()
    hook = await endpoint(api, url)
    assert hook["secret"].startswith("whsec_")
    h = Harness(api, clock, engine_settings, outcomes={"answered": 0.5, "busy": 0.5})
    batch = await api.create_batch(concurrencyLimit=5)
    await api.add_calls(batch, [{**n, "vars": 1} for n in nums(6)])
    await h.run_until(lambda: _done(h, batch))
    await deliver(api)
    events = r.events(hook["secret"])
    types = [e["type"] for e in events]
    assert len({e["webhookId"] for e in events}) == len(events)  # one message per change
    # Delivered concurrently (a partner orders by timestamp and dedupes by webhook-id): each change once.
    assert types.count("batch.started") == 1 and types.count("batch.completed") == 1
    finals = [e for e in events if e["type"] in ("call.completed", "call.busy")]
    assert len(finals) == 6  # (the simulator reports no ringing: answered, then completed or busy)
    assert types.count("call.answered") == types.count("call.completed")
    done = next(e for e in finals if e["type"] == "call.completed")["data"]
    calls = {c["callId"]: c for c in await api.all_calls(batch)}
    assert done["callId"] in calls and done["phoneNumber"] == calls[done["callId"]]["phoneNumber"]
    assert done["outcome"] == "completed" and done["attempts"] == 1 and done["providerCallId"]
    assert done["duration"] is not None and done["batchId"] == batch
    completed = next(e for e in events if e["type"] == "batch.completed")["data"]
    assert completed["batchId"] == batch and completed["counters"]["finished"] == 6
    code, log = await api.get("/api/webhooks/messages?limit=200")
    assert code == 200 and len(log["data"]["messages"]) == len(events)
    assert all(m["status"] == "delivered" and m["attempts"][0]["httpStatus"] == 200
               and m["attempts"][0]["response"] == "thanks" for m in log["data"]["messages"])


async def _done(h, batch) -> bool:
    return await h.batch_status(batch) == "completed"


async def test_a_failing_receiver_gets_the_same_message_again_by_the_schedule(api, clock, receiver):
    r, url = await receiver()
    r.fail_first = 2
    hook = await endpoint(api, url)
    code, sent = await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    assert code == 200 and sent["data"]["type"] == "webhook.test"
    await deliver(api)
    await deliver(api)  # not due again yet
    assert len(r.got) == 1
    clock.advance(5)
    await deliver(api)
    assert len(r.got) == 2
    clock.advance(299)
    await deliver(api)
    assert len(r.got) == 2
    clock.advance(1)
    await deliver(api)
    events = r.events(hook["secret"])
    assert len(events) == 3 and len({e["webhookId"] for e in events}) == 1
    assert events[0]["data"] == {"endpointId": hook["endpointId"]}
    code, log = await api.get(f"/api/webhooks/messages?endpointId={hook['endpointId']}")
    [message] = log["data"]["messages"]
    assert message["status"] == "delivered" and [a["httpStatus"] for a in message["attempts"]] == [500, 500, 200]
    assert message["messageId"] == events[0]["webhookId"]


async def test_retrying_a_message_that_still_has_attempts_keeps_the_rest_of_its_schedule(api, clock, receiver):
    """"Send again now" on a pending message is one of its attempts, brought forward: it does not cut the
    schedule down to a last attempt (which failed the message after one more refusal)."""
    r, url = await receiver("fail")
    hook = await endpoint(api, url)
    sent = await _test_message(api, hook)
    await deliver(api)  # attempt 1 of 3 (0, 5, 300): pending, due in 5 s
    code, again = await api.post(f"/api/webhooks/messages/{sent['messageId']}/retry")
    assert code == 200 and again["data"]["status"] == "pending"
    await deliver(api)  # attempt 2, now instead of in 5 s: still one left
    message = await _message(api, sent["messageId"])
    assert message["status"] == "pending" and len(message["attempts"]) == 2
    r.mode = "ok"
    clock.advance(300)
    await deliver(api)
    message = await _message(api, sent["messageId"])
    assert message["status"] == "delivered" and [a["httpStatus"] for a in message["attempts"]] == [500, 500, 200]


async def test_spent_schedule_fails_then_retry_and_recover_send_again(api, clock, receiver):
    r, url = await receiver("fail")
    hook = await endpoint(api, url)
    await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    for wait in (0, 5, 300):
        clock.advance(wait)
        await deliver(api)
    _, log = await api.get("/api/webhooks/messages?status=failed")
    [message] = log["data"]["messages"]
    assert len(message["attempts"]) == 3 and message["attempts"][0]["response"] == "broken"
    r.mode = "ok"
    code, again = await api.post(f"/api/webhooks/messages/{message['messageId']}/retry")
    assert code == 200 and again["data"]["status"] == "pending"
    await deliver(api)
    assert (await api.get("/api/webhooks/messages?status=delivered"))[1]["data"]["messages"][0]["messageId"] == \
        message["messageId"]
    r.mode = "fail"
    await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    await deliver(api)  # one attempt left after a recovery: failed again
    code, recovered = await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/recover",
                                     {"since": "2026-11-23T00:00:00Z"})
    assert code == 200 and recovered["data"]["recovered"] == 0  # the new message still has attempts left
    for wait in (5, 300):
        clock.advance(wait)
        await deliver(api)
    r.mode = "ok"
    code, recovered = await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/recover",
                                     {"since": "2026-11-23T00:00:00Z"})
    assert recovered["data"]["recovered"] == 1
    await deliver(api)
    assert (await api.get("/api/webhooks/messages?status=failed"))[1]["data"]["messages"] == []


async def test_a_rotated_secret_signs_beside_the_new_one_for_24_hours(api, clock, receiver):
    r, url = await receiver()
    hook = await endpoint(api, url)
    code, rotated = await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/rotate-secret")
    assert code == 200 and rotated["data"]["secret"] != hook["secret"]
    await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    await deliver(api)
    verify(r.got[0], hook["secret"])
    verify(r.got[0], rotated["data"]["secret"])
    clock.advance(24 * 3600 + 1)
    await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    await deliver(api)
    verify(r.got[1], rotated["data"]["secret"])
    with pytest.raises(Exception, match="No matching signature"):
        verify(r.got[1], hook["secret"])
    _, listed = await api.get("/api/webhooks/endpoints")
    assert "secret" not in listed["data"]["endpoints"][0]
    _, log = await api.get("/api/webhooks/messages")
    assert hook["secret"] not in json.dumps(log) and rotated["data"]["secret"] not in json.dumps(listed)


async def test_an_endpoint_gets_only_the_events_it_asked_for(api, clock, engine_settings, receiver):
    picky, picky_url = await receiver()
    everything, all_url = await receiver()
    await endpoint(api, picky_url, events=["batch.completed"])
    await endpoint(api, all_url)
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch()
    await api.add_calls(batch, nums(2))
    await h.run_until(lambda: _done(h, batch))
    await deliver(api)
    assert [json.loads(g["body"])["type"] for g in picky.got] == ["batch.completed"]
    assert len(everything.got) > 1


async def test_an_endpoint_failing_for_five_days_is_disabled(api, clock, receiver, settings):
    r, url = await receiver("fail")
    hook = await endpoint(api, url)
    for day in range(6):
        await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
        await deliver(api)
        _, got = await api.get(f"/api/webhooks/endpoints/{hook['endpointId']}")
        assert got["data"]["disabled"] is (day == 5), day
        clock.advance(24 * 3600)
    assert got["data"]["disabledReason"] == "every delivery failed for 5 days"
    before = len(r.got)
    await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    await deliver(api)
    assert len(r.got) == before  # nothing more is sent to it
    code, enabled = await api.client.patch(f"/api/webhooks/endpoints/{hook['endpointId']}", json={"disabled": False},
                                           headers=api.headers()), None
    assert code.status == 200


async def test_bad_receivers_fail_their_attempts_and_never_slow_another(api, receiver):
    bad = {mode: await receiver(mode) for mode in ("hang", "huge", "redirect", "close")}
    good, good_url = await receiver()
    hooks = {mode: await endpoint(api, url) for mode, (_, url) in bad.items()}
    good_hook = await endpoint(api, good_url)
    for hook in [*hooks.values(), good_hook]:
        await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    started = time.monotonic()
    await api.app[SENDER].tick()
    while not good.got:
        await asyncio.sleep(0.01)
    assert good.got[0]["at"] - started < 0.5  # while the hanging one still hangs
    await api.app[SENDER].drain()
    assert time.monotonic() - started < 5  # the 1 GiB answer was not read
    assert bad["redirect"][0].redirected == 0
    _, log = await api.get("/api/webhooks/messages")
    by_endpoint = {m["endpointId"]: m for m in log["data"]["messages"]}
    assert by_endpoint[good_hook["endpointId"]]["status"] == "delivered"
    for mode, hook in hooks.items():
        [attempt] = by_endpoint[hook["endpointId"]]["attempts"]
        assert by_endpoint[hook["endpointId"]]["status"] == "pending", mode  # failed, retried later
        if mode == "huge":  # a 200 whose body never ends: read 64 KiB, then the connection is dropped
            assert attempt["httpStatus"] == 200 and len(attempt["response"]) == 1024
            assert attempt["error"] == "the answer exceeds 64 KiB"
        elif mode == "redirect":
            assert attempt["httpStatus"] == 302
        else:
            assert "error" in attempt, mode


@pytest.mark.parametrize("url, reason", [
    ("ftp://127.0.0.1/hook", "https://"),
    ("https://user:pw@127.0.0.1/hook", "without credentials"),
    ("not a url", "https://"),
    ("http://93.184.215.14/hook", "loopback addresses only"),
])
async def test_bad_urls_are_refused_with_a_reason(api, url, reason):
    code, doc = await api.post("/api/webhooks/endpoints", {"url": url})
    assert code == 400 and reason in doc["errorMessage"] and doc["status"] is False


@pytest.mark.parametrize("url", ["http://127.0.0.1/hook", "https://127.0.0.1/hook", "https://10.1.2.3/hook",
                                 "https://169.254.169.254/latest/meta-data", "https://[::1]/hook",
                                 "https://192.168.0.10/hook", "https://localhost/hook",
                                 # IPv6 that reaches a private IPv4 through NAT64, 6to4 or IPv4-translation
                                 "https://[64:ff9b::a00:1]/hook", "https://[64:ff9b::a9fe:a9fe]/hook",
                                 "https://[2002:7f00:1::]/hook", "https://[::ffff:0:a00:1]/hook",
                                 "https://[64:ff9b:1::a00:1]/hook"])
async def test_private_loopback_and_metadata_addresses_are_refused_unless_allowed(api, url):
    api.app[WEBHOOKS].allow_insecure = False
    code, doc = await api.post("/api/webhooks/endpoints", {"url": url})
    assert code == 400, doc
    assert "https://" in doc["errorMessage"] or "private, loopback" in doc["errorMessage"]


async def test_an_address_that_became_private_is_refused_at_delivery(api, receiver):
    r, url = await receiver()
    hook = await endpoint(api, url)  # allowed while trying it out...
    api.app[SENDER].allow_insecure = False  # ... not any more when it is delivered
    await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    await deliver(api)
    assert r.got == []
    _, log = await api.get("/api/webhooks/messages")
    assert log["data"]["messages"][0]["attempts"][0]["error"].startswith("refused:")


async def test_bad_input_unknown_and_foreign_ids_get_the_envelope(api, client, app, receiver):
    from tests.conftest import make_api

    _, url = await receiver()
    code, doc = await api.post("/api/webhooks/endpoints", {"url": url, "events": ["call.exploded"]})
    assert code == 400 and "events" in doc["errorMessage"]
    code, doc = await api.post("/api/webhooks/endpoints", raw=b"{not json")
    assert code == 400
    code, doc = await api.post("/api/webhooks/endpoints", {"url": url, "extra": 1})
    assert code == 400
    hook = await endpoint(api, url)
    other = await make_api(client, app)
    for path in (f"/api/webhooks/endpoints/{hook['endpointId']}", "/api/webhooks/endpoints/nonsense",
                 "/api/webhooks/endpoints/" + "0" * 24):
        code, doc = await other.get(path) if "nonsense" not in path else await api.get(path)
        assert code == 404 and doc["status"] is False, path
    code, doc = await other.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    assert code == 404
    code, sent = await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    code, doc = await other.post(f"/api/webhooks/messages/{sent['data']['messageId']}/retry")
    assert code == 404
    code, doc = await api.post("/api/webhooks/messages/msg_nope/retry")
    assert code == 404
    code, doc = await api.get("/api/webhooks/messages?status=lost")
    assert code == 400
    code, doc = await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/recover", {"since": "yesterday"})
    assert code == 400
    resp = await api.client.patch(f"/api/webhooks/endpoints/{hook['endpointId']}", json={}, headers=api.headers())
    assert resp.status == 400 and "url, events, description or disabled" in (await resp.json())["errorMessage"]
    resp = await api.client.delete(f"/api/webhooks/endpoints/{hook['endpointId']}", headers=other.headers())
    assert resp.status == 404
    resp = await api.client.delete(f"/api/webhooks/endpoints/{hook['endpointId']}", headers=api.headers())
    assert resp.status == 200
    assert (await api.get(f"/api/webhooks/endpoints/{hook['endpointId']}"))[0] == 404


async def test_an_enrollment_is_announced_once_its_batch_and_calls_are_written(api, receiver):
    r, url = await receiver()
    hook = await endpoint(api, url, events=["enrollment.accepted"])
    resp = await api.client.post(f"/api/v1/agents/{api.agent['_id']}/schedule/sequences", headers=api.headers(),
                                 json={"contacts": [{"phoneNumber": "+12125550101"}, {"phoneNumber": "bad"}]})
    assert resp.status == 202
    answer = await resp.json()
    for _ in range(200):
        await deliver(api)
        if r.got:
            break
        await asyncio.sleep(0.01)
    [event] = r.events(hook["secret"])
    assert event["type"] == "enrollment.accepted" and event["data"] == answer
    assert [c["phoneNumber"] for c in await api.all_calls(answer["batchId"])] == ["+12125550101"]


async def test_metrics_count_deliveries_and_the_oldest_undelivered_age(api, clock, receiver):
    good, good_url = await receiver()
    bad, bad_url = await receiver("fail")
    for url in (good_url, bad_url):
        hook = await endpoint(api, url)
        await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    await deliver(api)
    clock.advance(3)  # the failed one waits for its next attempt (5 s)
    text = await (await api.client.get("/metrics")).text()
    assert 'dialer_webhook_deliveries_total{outcome="delivered"} 1.0' in text
    assert 'dialer_webhook_deliveries_total{outcome="retry"} 1.0' in text
    assert "dialer_webhook_oldest_undelivered_seconds 3.0" in text


async def test_an_endpoints_senders_go_on_to_its_next_due_messages_without_waiting_for_a_pass(api, receiver):
    """Found while sizing bench/webhooks: each pass leased at most `per_endpoint` messages per endpoint, so one partner
    got at most 8 a second (4 senders, 0.5 s passes) however fast it answered. Now each lane leases LANE_MESSAGES
    at once, then the next ones."""
    r, url = await receiver()
    hook = await endpoint(api, url)
    sender = api.app[SENDER]
    first_pass = sender.per_endpoint * LANE_MESSAGES
    for _ in range(first_pass + 9):
        await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    assert await sender.tick() == first_pass  # one pass...
    await sender.drain()
    assert len(r.got) == first_pass + 9  # ... and every due message is delivered
    assert len({got["headers"]["webhook-id"] for got in r.got}) == first_pass + 9


async def _test_message(api, hook: dict) -> dict:
    code, sent = await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    assert code == 200, sent
    return sent["data"]


async def _message(api, message_id: str) -> dict:
    code, log = await api.get("/api/webhooks/messages")
    assert code == 200
    return next(m for m in log["data"]["messages"] if m["messageId"] == message_id)


@pytest.mark.parametrize("retry_after", ["120", "HTTP-DATE"])
async def test_a_receiver_asking_to_slow_down_is_not_called_again_before_its_retry_after(api, clock, receiver,
                                                                                        retry_after):
    r, url = await receiver()
    if retry_after == "HTTP-DATE":  # the receiver's wall clock, two minutes ahead
        import email.utils
        retry_after = email.utils.formatdate(time.time() + 120, usegmt=True)
    r.answers = [web.Response(status=429, text="slow down", headers={"Retry-After": retry_after})]
    hook = await endpoint(api, url)
    sent = await _test_message(api, hook)
    await deliver(api)
    clock.advance(5)  # the schedule's next delay has passed, the receiver's has not
    await deliver(api)
    assert len(r.got) == 1
    clock.advance(110)
    await deliver(api)
    assert len(r.got) == 1
    clock.advance(10)
    await deliver(api)
    assert len(r.got) == 2
    message = await _message(api, sent["messageId"])
    assert message["status"] == "delivered"
    assert [a["httpStatus"] for a in message["attempts"]] == [429, 200]
    assert 118 <= message["attempts"][0]["retryAfterSeconds"] <= 120


async def test_abort_message_stops_the_retries_of_that_message_only(api, clock, receiver):
    r, url = await receiver()
    r.answers = [web.Response(status=400, text="never this one", headers={"webhook-delivery": "abort-message"})]
    hook = await endpoint(api, url)
    sent = await _test_message(api, hook)
    await deliver(api)
    clock.advance(3600)
    await deliver(api)
    assert len(r.got) == 1
    message = await _message(api, sent["messageId"])
    assert message["status"] == "failed" and message["attempts"][0]["aborted"] is True
    again = await _test_message(api, hook)  # the endpoint itself stays enabled
    await deliver(api)
    assert (await _message(api, again["messageId"]))["status"] == "delivered"


async def test_410_gone_disables_the_endpoint_at_once(api, clock, receiver):
    r, url = await receiver()
    r.answers = [web.Response(status=410, text="gone")]
    hook = await endpoint(api, url)
    sent = await _test_message(api, hook)
    await deliver(api)
    _, got = await api.get(f"/api/webhooks/endpoints/{hook['endpointId']}")
    assert got["data"]["disabled"] is True and got["data"]["disabledReason"] == "the endpoint answered 410 Gone"
    assert (await _message(api, sent["messageId"]))["status"] == "failed"
    code, refused = await api.post(f"/api/webhooks/endpoints/{hook['endpointId']}/test")
    assert code == 409 and "disabled" in refused["errorMessage"]
    clock.advance(3600)
    await deliver(api)
    assert len(r.got) == 1  # nothing more is sent to it


async def test_a_disabled_endpoint_takes_no_retry_recovery_or_test_until_it_is_enabled(api, clock, receiver):
    """Each would answer 200 ("recovered": n, "pending") and then fail at once, never tried: refused instead."""
    r, url = await receiver()
    r.answers = [web.Response(status=410, text="gone")]
    hook = await endpoint(api, url)
    path = f"/api/webhooks/endpoints/{hook['endpointId']}"
    sent = await _test_message(api, hook)
    await deliver(api)
    since = {"since": "2026-11-23T00:00:00Z"}
    for route, body in ((f"{path}/recover", since), (f"/api/webhooks/messages/{sent['messageId']}/retry", None),
                        (f"{path}/test", None)):
        code, refused = await api.post(route, body)
        assert code == 409 and "PATCH" in refused["errorMessage"], (route, refused)
    await deliver(api)
    assert len(r.got) == 1 and (await _message(api, sent["messageId"]))["status"] == "failed"
    assert (await api.client.patch(path, json={"disabled": False}, headers=api.headers())).status == 200
    code, recovered = await api.post(f"{path}/recover", since)
    assert code == 200 and recovered["data"]["recovered"] == 1
    await deliver(api)
    assert len(r.got) == 2 and (await _message(api, sent["messageId"]))["status"] == "delivered"


async def test_one_success_ends_a_failing_streak_so_the_five_days_start_again(api, clock, receiver):
    r, url = await receiver("fail")
    hook = await endpoint(api, url)
    path = f"/api/webhooks/endpoints/{hook['endpointId']}"
    for day in range(4):
        await _test_message(api, hook)
        await deliver(api)
        clock.advance(24 * 3600)
    _, got = await api.get(path)
    assert got["data"]["failingSince"] is not None
    r.mode = "ok"
    await _test_message(api, hook)
    await deliver(api)
    _, got = await api.get(path)
    assert got["data"]["failingSince"] is None
    r.mode = "fail"
    for day in range(3):  # days 5-7 of the endpoint's life, the first three of a new streak
        clock.advance(24 * 3600)
        await _test_message(api, hook)
        await deliver(api)
    _, got = await api.get(path)
    assert got["data"]["disabled"] is False and got["data"]["failingSince"] is not None
