"""End to end with Twilio: the engine places calls through the real twilio SDK against tests/fake_twilio.py,
and the fake's signed status callbacks reach our API served on a real port (the one in public_base_url)."""

from __future__ import annotations

import asyncio
import json
import datetime as dt
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from bson import ObjectId
from tests.fake_twilio import FakeTwilio
from twilio.request_validator import RequestValidator

from dialer.api.appkeys import EVENTS as CALL_EVENTS, REPOS
from dialer.composition import build_app, build_engine, open_services, open_wakeups
from dialer.core.clock import FixedClock
from tests.conftest import make_api
from tests.crash_harness import free_port
from workers.engine import Engine
from workers.telephony.twilio import TwilioProvider

# twilio 9.13 still hands aiohttp a BasicAuth object, which aiohttp 3.14 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:.*(BasicAuth|'auth' parameter).*:DeprecationWarning")

CALLERS = ["+14155550101", "+14155550102"]
EVENTS = ["initiated", "ringing", "answered", "completed"]
N1, N2, N3 = "+12125551001", "+12125551002", "+12125551003"


@dataclass
class Env:
    api: Any
    fake: FakeTwilio
    engine: Engine
    clock: FixedClock
    base: str

    async def tick(self, n: int = 1, seconds: float = 1.0) -> None:
        for _ in range(n):
            await self.engine.step()
            self.clock.advance(seconds)

    def creates(self, to: str | None = None) -> list:
        return [r for r in self.fake.creates() if to is None or r.params["To"] == to]

    def sid(self, to: str) -> str:
        return [sid for sid, c in self.fake.calls.items() if c["To"] == to][-1]

    async def calls(self, batch: str) -> dict[str, dict]:
        return {c["phoneNumber"]: c for c in await self.api.all_calls(batch)}

    async def used(self, batch: str) -> int:
        """Slots the batch holds, as the next reservation sees them."""
        return (await self.engine.slots.state(self.engine.clock.now())).used(ObjectId(batch))

    async def batch_status(self, batch: str) -> str:
        _, doc = await self.api.get(f"/api/call/batches/{batch}")
        return doc["data"]["status"]


@pytest.fixture
async def fake(clock):
    async with FakeTwilio(now=clock.now) as server:  # date_created on the virtual clock, for find_calls
        yield server


@pytest.fixture
async def make_env(settings, clock, fake, aiohttp_client, caplog):
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    engines: list[Engine] = []

    @web.middleware
    async def capture(request, handler):  # every response body our server sends
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            bodies.append(exc.text or "")
            raise
        body = getattr(resp, "body", None)
        bodies.append(body.decode() if isinstance(body, bytes) else str(body or ""))
        return resp

    async def make(agent: dict | None = None, **overrides: Any) -> Env:
        port = free_port()  # known before the app exists: public_base_url is part of its settings
        base = f"http://127.0.0.1:{port}"
        s = settings.replace(twilio_auth_token=fake.auth_token, twilio_account_sid=fake.account_sid,
                             public_base_url=base, provider="twilio", calls_per_second=100, lease_seconds=120,
                             **overrides)
        app = build_app(s, clock)
        app.middlewares.insert(0, capture)
        client = await aiohttp_client(TestServer(app, host="127.0.0.1", port=port))
        assert str(client.make_url("")).rstrip("/") == base
        spec = {"name": "agent", "callingNumbers": CALLERS, "timezones": ["America/New_York"], **(agent or {})}
        api = await make_api(client, app, spec)
        provider = TwilioProvider(fake.account_sid, fake.auth_token, timeout=0.5, api_base=fake.base_url)
        engines.append(Engine(app[REPOS], clock, s, provider, app[CALL_EVENTS], name="d0"))
        return Env(api, fake, engines[-1], clock, base)

    yield make
    for engine in engines:
        await engine.provider.close()
    # No auth token in anything our server answered, nor in any log record (message, extras, exception).
    assert bodies and not [b for b in bodies if fake.auth_token in b]
    for record in caplog.records:
        text = logging.Formatter().format(record) + repr(record.__dict__)
        assert fake.auth_token not in text, record.getMessage()


def events_of(call: dict) -> list[str]:
    return [h["event"] for h in call["history"]]


@pytest.mark.parametrize("amd", [False, True])
async def test_placed_call_carries_every_parameter(make_env, amd):
    env = await make_env(machine_detection=amd)
    batch = await env.api.create_batch(concurrencyLimit=2, ringingTimeoutSeconds=25)
    code, _ = await env.api.add_calls(batch, [{"phoneNumber": "+1 212 555 1001 ext 22"}, {"phoneNumber": N2}])
    assert code == 200
    await env.tick(2)  # dial times are spaced by 1/cps: the second goes out on the next tick
    for create in env.creates():  # Twilio's first callback records the call's sid at once
        assert await env.fake.send_status(env.sid(create.params["To"]), "initiated") == 204
    calls = await env.calls(batch)
    assert len(env.creates()) == 2
    for create in env.creates():
        p, call = create.params, calls[create.params["To"]]
        query = f"callId={call['callId']}&batchId={batch}&attempt="
        assert p["To"] in (N1, N2) and p["From"] in CALLERS
        assert p["Url"].startswith(f"{env.base}/webhooks/twilio/twiml?{query}")
        assert p["StatusCallback"].startswith(f"{env.base}/webhooks/twilio/status?{query}")
        assert p["StatusCallbackMethod"] == "POST" and p["StatusCallbackEvent"] == EVENTS
        assert p["Timeout"] == "25"
        assert ("MachineDetection" in p) is amd and p.get("MachineDetection", "Enable") == "Enable"
        assert call["providerCallId"] == env.sid(p["To"]) and call["status"] == "dialing"
    [ext] = env.creates(N1)
    assert ext.params["SendDigits"].lstrip("wW") == "22"
    assert "SendDigits" not in env.creates(N2)[0].params


async def test_signed_callbacks_drive_calls_free_the_slot_and_complete_the_batch(make_env):
    env = await make_env()
    batch = await env.api.create_batch(concurrencyLimit=1)
    await env.api.add_calls(batch, [{"phoneNumber": N1}, {"phoneNumber": N2}])
    await env.tick(3)
    assert [c.params["To"] for c in env.creates()] == [N1]
    sid = env.sid(N1)
    for twilio_status, ours in [("initiated", "dialing"), ("ringing", "ringing"), ("in-progress", "in_progress")]:
        assert await env.fake.send_status(sid, twilio_status, answered_by="human") == 204
        assert (await env.calls(batch))[N1]["status"] == ours
        await env.tick(2)
        assert len(env.creates()) == 1 and await env.used(batch) == 1  # still holding the only slot
    assert await env.fake.send_status(sid, "completed", duration=42) == 204
    first = (await env.calls(batch))[N1]
    assert first["status"] == "completed" and first["outcome"] == "completed" and first["attempts"] == 1
    assert events_of(first) == ["placed", "ringing", "in-progress", "completed"]
    assert first["history"][-1]["duration"] == 42
    assert (first["duration"], first["answeredBy"]) == (42, "human")  # on the call itself, not only its history
    assert await env.used(batch) == 0
    await env.tick()  # the callback reached the API of this dispatcher's process: it looks again at once
    assert [c.params["To"] for c in env.creates()] == [N1, N2]  # the freed slot goes to the second call
    assert await env.batch_status(batch) == "running"
    assert await env.fake.send_status(env.sid(N2), "completed", duration=5) == 204
    await env.tick(5)  # the dispatcher looks at batches with calls in flight every 5 s: done, then
    assert await env.batch_status(batch) == "completed"
    assert {c["status"] for c in (await env.calls(batch)).values()} == {"completed"}


async def test_a_callback_to_the_api_of_the_dispatchers_process_frees_its_slot_at_once(make_env):
    """`make run` with Twilio: the callbacks reach the API of the process the dispatcher runs in, which looks again
    at the next tick, not at its recheck (20 s here: 4 polls of 5 s); a batch whose calls are short is not
    held back by how often its dispatcher polls."""
    env = await make_env(poll_interval_seconds=5)
    batch = await env.api.create_batch(concurrencyLimit=1)
    await env.api.add_calls(batch, [{"phoneNumber": n} for n in (N1, N2, N3)])
    await env.tick()
    for done, (number, following) in enumerate([(N1, N2), (N2, N3)], start=1):
        await env.tick(3)  # nothing to do while the call is in flight
        assert len(env.creates()) == done
        assert await env.fake.send_status(env.sid(number), "completed", duration=3) == 204
        await env.tick()
        assert [c.params["To"] for c in env.creates()][-1] == following


async def test_a_callback_to_the_api_wakes_the_dispatcher_of_another_process_at_once(make_env, fake, clock):
    """`dialer serve` beside `dialer worker` on one SQLite file: the callbacks reach the API's process, the
    dispatcher runs in the other; it learnt of a freed slot at its recheck (20 s here: 4 polls of 5 s). The API's
    process now wakes it over the data folder's socket: the next call is placed at its next tick; and calls given
    to the API are placed at the worker's next tick too, although it now rechecks only every 10 s."""
    env = await make_env(poll_interval_seconds=5)
    worker_settings = env.engine.settings
    services = await open_services(worker_settings, clock)  # the worker's own connection and events
    provider = TwilioProvider(fake.account_sid, fake.auth_token, timeout=0.5, api_base=fake.base_url)
    worker = build_engine(services, provider=provider, name="worker")
    await open_wakeups(services, worker)
    try:
        batch = await env.api.create_batch(concurrencyLimit=1)
        await env.api.add_calls(batch, [{"phoneNumber": n} for n in (N1, N2, N3)])
        await worker.step()
        for done, (number, following) in enumerate([(N1, N2), (N2, N3)], start=1):
            for _ in range(3):  # nothing to do while the call is in flight
                clock.advance(1)
                await worker.step()
            assert len(env.creates()) == done
            assert await env.fake.send_status(env.sid(number), "completed", duration=3) == 204  # to the API
            await asyncio.sleep(0.2)  # the datagram, read by the worker's loop
            clock.advance(1)
            await worker.step()
            assert [c.params["To"] for c in env.creates()][-1] == following
        other = await env.api.create_batch(concurrencyLimit=1)
        await env.api.add_calls(other, [{"phoneNumber": "+12125551004"}])  # to the API: the worker is idle meanwhile
        await asyncio.sleep(0.2)
        clock.advance(1)
        await worker.step()
        assert [c.params["To"] for c in env.creates()][-1] == "+12125551004"
    finally:
        await worker.stop()
        await services.close()


async def test_a_worker_stopping_hands_its_claims_to_another_worker_at_its_next_tick(make_env, fake, clock):
    """Two `dialer worker`s on one SQLite file. One claimed three calls a second apart (DIALER_CPS=1), placed the
    first, and is stopped (SIGTERM, a deploy): it hands the other two back. The other one, idle with the batch at
    its limit, was told nothing of it and placed them at its recheck (10 s once it is woken over the socket); it
    is now told, as of a call that ended, and places them at its next tick."""
    env = await make_env(poll_interval_seconds=5)
    workers = []
    for name in ("stopping", "staying"):
        services = await open_services(env.engine.settings.replace(calls_per_second=1), clock)
        provider = TwilioProvider(fake.account_sid, fake.auth_token, timeout=0.5, api_base=fake.base_url)
        worker = build_engine(services, provider=provider, name=name)
        await open_wakeups(services, worker)
        workers.append((worker, services))
    (stopping, stopping_services), (staying, staying_services) = workers
    try:
        batch = await env.api.create_batch(concurrencyLimit=3)
        await env.api.add_calls(batch, [{"phoneNumber": n} for n in (N1, N2, N3)])
        await stopping.step()  # claims all three, dial times 1 s apart: N1 placed now
        assert [c.params["To"] for c in env.creates()] == [N1]
        clock.advance(3)  # (N2 and N3 are due, at the stopping worker's next tick: there is none)
        await staying.step()  # the batch at its limit: nothing to claim, idle until its recheck
        await stopping.stop()  # N2, N3 back in the queue
        await stopping_services.close()
        await asyncio.sleep(0.2)  # the datagram, read by the other worker's loop
        for _ in range(2):
            clock.advance(1)
            await staying.step()
        assert sorted(c.params["To"] for c in env.creates()) == [N1, N2, N3]
    finally:
        await staying.stop()
        await staying_services.close()


async def test_forged_and_unsigned_callbacks_are_refused_and_change_nothing(make_env):
    env = await make_env()
    batch = await env.api.create_batch(concurrencyLimit=1)
    await env.api.add_calls(batch, [{"phoneNumber": N1}, {"phoneNumber": N2}])
    await env.tick()
    await env.engine.dispatcher.placer.flush_records()  # the sid is recorded (else with the next claim)
    sid = env.sid(N1)
    before = (await env.calls(batch))[N1]
    assert await env.fake.send_forged(sid, "completed", duration=3) == 403
    assert await env.fake.send_unsigned(sid, "completed", duration=3) == 403
    # A genuine signature, but for another URL (the same callback replayed against the other call).
    other = (await env.calls(batch))[N2]["callId"]
    url = env.fake.calls[sid]["StatusCallback"]
    assert await env.fake.send_status(sid, "completed", url=url.replace(before["callId"], other),
                                      validator_url=url) == 403
    assert [cb.status for cb in env.fake.callbacks] == [403, 403, 403]
    after = (await env.calls(batch))[N1]
    assert after == before and after["status"] == "dialing" and events_of(after) == ["placed"]
    assert await env.used(batch) == 1
    await env.tick(3)
    assert len(env.creates()) == 1  # the slot is still taken: the second call waits


async def test_busy_is_retried_only_after_the_policy_delay(make_env):
    env = await make_env()
    batch = await env.api.create_batch(concurrencyLimit=1, retry={"maxAttempts": 2, "delaySeconds": 60, "on": ["busy"]})
    await env.api.add_calls(batch, [{"phoneNumber": N1}])
    await env.tick()
    assert await env.fake.send_status(env.sid(N1), "busy") == 204
    call = (await env.calls(batch))[N1]
    assert (call["status"], call["outcome"], call["attempts"]) == ("queued", "busy", 1)
    assert await env.used(batch) == 0
    for _ in range(60):  # 0 .. 59 s after the busy callback
        await env.tick()
        assert len(env.creates(N1)) == 1
    await env.tick()  # 60 s
    assert len(env.creates(N1)) == 2
    assert (await env.calls(batch))[N1]["attempts"] == 2


async def test_callbacks_of_a_retried_attempt_are_applied(make_env):
    env = await make_env()
    batch = await env.api.create_batch(concurrencyLimit=1, retry={"maxAttempts": 2, "delaySeconds": 60, "on": ["busy"]})
    await env.api.add_calls(batch, [{"phoneNumber": N1}])
    await env.tick()
    first = env.sid(N1)
    await env.fake.send_status(first, "busy")
    await env.tick(62)
    second = env.sid(N1)
    assert second != first and len(env.creates(N1)) == 2
    assert await env.fake.send_status(second, "initiated") == 204
    assert (await env.calls(batch))[N1]["providerCallId"] == second
    await env.fake.send_status(second, "in-progress", answered_by="human")
    await env.fake.send_status(second, "completed", duration=30)
    call = (await env.calls(batch))[N1]
    assert (call["status"], call["outcome"]) == ("completed", "completed")


async def test_callback_arriving_while_another_create_of_the_tick_is_slow_is_applied(make_env):
    env = await make_env()
    batch = await env.api.create_batch(concurrencyLimit=3)
    await env.api.add_calls(batch, [{"phoneNumber": n} for n in (N1, N2, N3)])
    await env.tick()  # claims all three (dial times 10 ms apart), places N1
    env.fake.delay_next(0.3)  # one of the next two creates answers late (within the provider timeout)
    step = asyncio.create_task(env.engine.step())
    while len(env.fake.calls) < 3 or not any(r.params["To"] == N3 for r in env.fake.creates()):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the prompt create has answered; the slow one has not
    assert not step.done()
    for number in (N2, N3):
        assert await env.fake.send_status(env.sid(number), "busy") == 204
    await step
    calls = await env.calls(batch)
    assert calls[N2]["status"] == calls[N3]["status"] == "busy"


async def test_invalid_number_fails_at_once_without_retry(make_env):
    env = await make_env()
    env.fake.fail_number(N3)
    batch = await env.api.create_batch(concurrencyLimit=1,
                                       retry={"maxAttempts": 3, "delaySeconds": 10, "on": ["busy", "failed"]})
    await env.api.add_calls(batch, [{"phoneNumber": N3}])
    await env.tick()
    call = (await env.calls(batch))[N3]
    assert (call["status"], call["outcome"], call["attempts"]) == ("failed", "failed", 1)
    [entry] = [h for h in call["history"] if h["event"] == "provider_error"]
    assert entry["kind"] == "invalid_number" and "21211" in entry["error"] and N3 in entry["error"]
    assert entry["result"] == "failed"
    assert await env.used(batch) == 0
    await env.tick(30)
    assert len(env.creates(N3)) == 1
    assert await env.batch_status(batch) == "completed"


@pytest.mark.parametrize("status, code, kind", [(429, 20429, "rate_limited"), (503, 20503, "transient")])
async def test_refused_create_is_requeued_and_placed_after_backoff(make_env, status, code, kind):
    env = await make_env()
    env.fake.fail_next(status, code, "Too many requests" if status == 429 else "Service unavailable", times=2)
    batch = await env.api.create_batch(concurrencyLimit=2)
    await env.api.add_calls(batch, [{"phoneNumber": n} for n in (N1, N2, N3)])
    placed_at: list[tuple[str, dt.datetime]] = []  # (number, when) of every create, refused or not
    born: dict[str, dt.datetime] = {}  # sid -> when the fake created it
    peak = 0
    for _ in range(40):
        now, before = env.clock.now(), len(env.creates())
        for sid in [sid for sid, at in born.items() if now - at >= dt.timedelta(seconds=3)]:  # calls last 3 s
            del born[sid]
            await env.fake.send_status(sid, "completed", duration=3)
        await env.tick()
        placed_at += [(r.params["To"], now) for r in env.creates()[before:]]
        born.update({sid: now for sid, c in env.fake.calls.items() if sid not in born and c["status"] == "queued"})
        flying = sum(c["status"] in ("dialing", "ringing", "in_progress") for c in (await env.calls(batch)).values())
        assert flying == await env.used(batch)
        peak = max(peak, flying)
        if await env.batch_status(batch) == "completed":
            break
    assert await env.batch_status(batch) == "completed" and peak == 2
    assert len(placed_at) == 5 and len(env.fake.calls) == 3  # two refused creates, three calls
    calls = await env.calls(batch)
    for number, refused_at in placed_at[:2]:  # fail_next hit the first two creates
        [retried_at] = [when for n, when in placed_at[2:] if n == number]
        assert retried_at - refused_at >= dt.timedelta(seconds=2)  # backoff of 2 s after a first refusal
        call = calls[number]
        assert call["status"] == "completed" and call["attempts"] == 1  # the refused attempt is not counted
        [entry] = [h for h in call["history"] if h["event"] == "provider_error"]
        assert entry["kind"] == kind and str(code) in entry["error"]


async def test_refused_credentials_fail_no_call_they_wait_until_twilio_takes_them_again(make_env):
    """The account's auth token was rotated at Twilio (or the account suspended): every create is a 401.
    That is no fault of the callee's: the calls were all ended `failed` at once, the whole queue burnt at
    the dial rate (and a chained group's every contact with it). They wait, the attempt not counted."""
    env = await make_env()
    token, env.fake.auth_token = env.fake.auth_token, "rotated-" + env.fake.auth_token[:8]
    batch = await env.api.create_batch(concurrencyLimit=3)
    await env.api.add_calls(batch, [{"phoneNumber": n} for n in (N1, N2, N3)])
    await env.tick(5)
    assert len(env.fake.requests) >= 3 and not env.fake.calls  # refused, nothing created
    for call in (await env.calls(batch)).values():
        assert call["status"] == "queued" and call["attempts"] == 0, call
        assert {h["kind"] for h in call["history"] if h["event"] == "provider_error"} == {"transient"}
        assert "401" in call["history"][-1]["error"]
    env.fake.auth_token = token  # the new token is at Twilio too
    await env.tick(10)
    assert sorted(c.params["To"] for c in env.creates() if c.authorized) == [N1, N2, N3]
    assert {c["status"] for c in (await env.calls(batch)).values()} == {"dialing"}


async def test_timed_out_create_is_adopted_by_the_reaper_not_redialled(make_env):
    env = await make_env()
    env.fake.delay_next(1.5)  # beyond the provider's 0.5 s timeout; the fake creates the call anyway
    batch = await env.api.create_batch(concurrencyLimit=1)
    await env.api.add_calls(batch, [{"phoneNumber": N1}, {"phoneNumber": N2}])
    await env.tick()
    call = (await env.calls(batch))[N1]
    assert call["status"] == "dialing" and call["providerCallId"] is None
    assert [h["kind"] for h in call["history"] if h["event"] == "provider_error"] == ["unknown"]
    await env.tick(5)
    assert len(env.creates()) == 1 and await env.used(batch) == 1  # in flight, slot held, not redialled
    env.clock.advance(121)
    await env.engine.reaper.run()
    sid = env.sid(N1)
    assert (await env.calls(batch))[N1]["providerCallId"] == sid
    await env.tick(3)
    assert len(env.creates(N1)) == 1 and len(env.creates()) == 1
    assert await env.fake.send_status(sid, "completed", duration=9) == 204
    assert (await env.calls(batch))[N1]["status"] == "completed"
    await env.tick(3)  # a callback to the API does not wake this process: it looks again within 2 s
    assert [c.params["To"] for c in env.creates()] == [N1, N2]


@pytest.mark.parametrize("kind", ["stream", "twiml"])
async def test_twiml_connects_the_agent_with_the_record_variables(make_env, kind):
    agent = {"streamUrl": "wss://agent.example/media"} if kind == "stream" else \
        {"twimlUrl": "https://agent.example/voice?x=1"}
    env = await make_env(agent)
    batch = await env.api.create_batch()
    await env.api.add_calls(batch, [{"phoneNumber": N1, "firstName": "Zoë & Co", "score": 3, "tags": ["a"],
                                     "callId": "spoofed"}])
    await env.tick()
    [create] = env.creates()
    url, sid = create.params["Url"], env.sid(N1)
    path = url[len(env.base):]
    form = {"CallSid": sid, "AccountSid": env.fake.account_sid, "CallStatus": "in-progress", "To": N1}
    client = env.api.client
    assert (await client.post(path, data=form)).status == 403
    bad = RequestValidator("x" + env.fake.auth_token).compute_signature(url, form)
    assert (await client.post(path, data=form, headers={"X-Twilio-Signature": bad})).status == 403
    signature = RequestValidator(env.fake.auth_token).compute_signature(url, form)
    resp = await client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert resp.status == 200 and resp.content_type == "application/xml"
    root = ET.fromstring(await resp.text())
    call_id = (await env.calls(batch))[N1]["callId"]
    expected = {"callId": call_id, "batchId": batch, "phoneNumber": N1, "firstName": "Zoë & Co", "score": "3",
                "tags": '["a"]'}
    if kind == "stream":
        stream = root.find("./Connect/Stream")
        assert stream is not None and stream.get("url") == "wss://agent.example/media"
        assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == expected
    else:
        redirect = root.find("./Redirect")
        assert redirect is not None and redirect.get("method") == "POST"
        target = urlsplit(redirect.text)
        assert target.netloc == "agent.example" and target.path == "/voice"
        assert dict(parse_qsl(target.query)) == {"x": "1", **expected}


async def test_provider_error_echoing_the_token_is_redacted(make_env, caplog):
    env = await make_env()
    env.fake.fail_next(400, 21205, f"Url rejected for account token {env.fake.auth_token}")
    batch = await env.api.create_batch()
    await env.api.add_calls(batch, [{"phoneNumber": N1}])
    await env.tick()
    call = (await env.calls(batch))[N1]
    [entry] = [h for h in call["history"] if h["event"] == "provider_error"]
    assert entry["kind"] == "rejected" and "[auth token]" in entry["error"]
    assert any(getattr(r, "error", "").endswith("[auth token]") for r in caplog.records)
    # the fixture's teardown checks every response body and log record for the token itself


async def test_a_late_event_of_an_earlier_attempt_changes_nothing(make_env):
    env = await make_env()
    batch = await env.api.create_batch(concurrencyLimit=1, retry={"maxAttempts": 2, "delaySeconds": 0, "on": ["busy"]})
    await env.api.add_calls(batch, [{"phoneNumber": N1}])
    await env.tick()
    first = env.sid(N1)
    assert await env.fake.send_status(first, "busy") == 204
    await env.tick(3)
    second = env.sid(N1)
    assert second != first
    before = (await env.calls(batch))[N1]
    assert before["status"] == "dialing" and before["attempts"] == 2
    # Twilio delivers a stale callback of the first attempt (duplicated, out of order).
    assert await env.fake.send_status(first, "completed", duration=5) == 204
    assert (await env.calls(batch))[N1] == before
    assert await env.used(batch) == 1
    assert await env.fake.send_status(second, "completed", duration=7) == 204
    after = (await env.calls(batch))[N1]
    assert (after["status"], after["providerCallId"]) == ("completed", second)


async def test_an_elevenlabs_recipient_reaches_the_agent_with_its_id_and_client_data(make_env):
    from elevenlabs import AsyncElevenLabs

    env = await make_env({"streamUrl": "wss://agent.example/media"})
    client = AsyncElevenLabs(api_key=env.api.key, base_url=env.base)
    await client.conversational_ai.batch_calls.create(
        call_name="via the vendor's SDK", agent_id=str(env.api.agent["_id"]), recipients=[
            {"id": "crm-7", "phone_number": N1, "conversation_initiation_client_data": {
                "dynamic_variables": {"name": "Zoë"}, "user_id": "u-7"}}])
    await env.tick()
    [create] = env.creates()
    url = create.params["Url"]
    form = {"CallSid": env.sid(N1), "AccountSid": env.fake.account_sid, "CallStatus": "in-progress", "To": N1}
    signature = RequestValidator(env.fake.auth_token).compute_signature(url, form)
    resp = await env.api.client.post(url[len(env.base):], data=form, headers={"X-Twilio-Signature": signature})
    stream = ET.fromstring(await resp.text()).find("./Connect/Stream")
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params["name"] == "Zoë" and params["recipientId"] == "crm-7"
    assert json.loads(params["clientData"]) == {"user_id": "u-7"} and params["phoneNumber"] == N1


@pytest.mark.parametrize("duration", ["²", "9" * 5000, "-3", "1e3", "12345678901"])
async def test_a_duration_twilio_never_sends_is_left_out_not_a_500(make_env, duration):
    """CallDuration is whole seconds in ASCII digits; anything else in a signed callback is ignored (a
    superscript digit passed isdigit() and broke int(); 5,000 digits passed it and broke int() too)."""
    env = await make_env()
    batch = await env.api.create_batch()
    await env.api.add_calls(batch, [{"phoneNumber": N1}])
    await env.tick(3)
    assert await env.fake.send_status(env.sid(N1), "completed", extra={"CallDuration": duration}) == 204
    call = (await env.calls(batch))[N1]
    assert call["status"] == "completed" and "duration" not in call["history"][-1]
