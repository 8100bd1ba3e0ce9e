"""TwilioProvider through the real twilio SDK against tests/fake_twilio.py."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest
from aiohttp import web
from tests.fake_twilio import FakeTwilio
from twilio.request_validator import RequestValidator

from workers.telephony.base import DialRequest, ErrorKind, ProviderError
from workers.telephony.twilio import TwilioProvider

# twilio 9.13 still hands aiohttp a BasicAuth object, which aiohttp 3.14 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:.*(BasicAuth|'auth' parameter).*:DeprecationWarning")

TO, FROM = "+14155550100", "+14155550199"


def dial(**kw) -> DialRequest:
    fields = dict(call_id="c1", batch_id="b1", to=TO, from_=FROM, ringing_timeout=25,
                  status_callback_url="https://dialer.example/twilio/status?call=c1",
                  twiml_url="https://dialer.example/twilio/twiml?call=c1")
    return DialRequest(**{**fields, **kw})


@pytest.fixture
async def fake():
    async with FakeTwilio() as server:
        yield server


@pytest.fixture
async def provider(fake):
    p = TwilioProvider(fake.account_sid, fake.auth_token, timeout=2.0, api_base=fake.base_url)
    yield p
    await p.close()


async def test_create_sends_every_parameter_with_basic_auth(fake, provider):
    placed = await provider.place_call(dial(send_digits="ww123#", machine_detection=True))

    assert placed.provider_call_id.startswith("CA") and len(placed.provider_call_id) == 34
    [create] = fake.creates()
    assert create.path == f"/2010-04-01/Accounts/{fake.account_sid}/Calls.json"
    assert create.user == fake.account_sid and create.authorized
    assert create.params == {
        "To": TO, "From": FROM, "Url": "https://dialer.example/twilio/twiml?call=c1",
        "StatusCallback": "https://dialer.example/twilio/status?call=c1", "StatusCallbackMethod": "POST",
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "Timeout": "25", "SendDigits": "ww123#", "MachineDetection": "Enable",
    }
    call = fake.calls[placed.provider_call_id]
    assert (call["To"], call["From"], call["status"]) == (TO, FROM, "queued")
    assert call["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]


async def test_optional_parameters_are_left_out(fake, provider):
    await provider.place_call(dial())
    [create] = fake.creates()
    assert "SendDigits" not in create.params and "MachineDetection" not in create.params


@pytest.mark.parametrize("status, code, kind", [
    (400, 21211, ErrorKind.INVALID_NUMBER),
    (400, 21214, ErrorKind.INVALID_NUMBER),
    (400, 13224, ErrorKind.INVALID_NUMBER),
    (429, 20429, ErrorKind.RATE_LIMITED),
    (400, 20429, ErrorKind.RATE_LIMITED),
    (503, 20503, ErrorKind.TRANSIENT),
    (500, 20500, ErrorKind.TRANSIENT),
    (400, 21205, ErrorKind.REJECTED),
    (403, 21215, ErrorKind.REJECTED),
    (404, 20404, ErrorKind.REJECTED),
    (401, 20003, ErrorKind.TRANSIENT),
    (403, 20005, ErrorKind.TRANSIENT),
])
async def test_error_answers_are_classified(fake, provider, status, code, kind):
    fake.fail_next(status, code, f"Twilio says no ({code})")
    with pytest.raises(ProviderError) as err:
        await provider.place_call(dial())
    assert err.value.kind == kind
    assert str(code) in err.value.message and f"Twilio says no ({code})" in err.value.message
    assert err.value.retry_after is None
    assert fake.calls == {}
    await provider.place_call(dial())  # the fault was for one create only


async def test_a_number_refused_every_time(fake, provider):
    fake.fail_number(TO)
    for _ in range(2):
        with pytest.raises(ProviderError) as err:
            await provider.place_call(dial())
        assert err.value.kind == ErrorKind.INVALID_NUMBER
    await provider.place_call(dial(to="+14155550101"))


async def test_wrong_credentials_are_transient_not_the_calls_fault(fake):
    provider = TwilioProvider(fake.account_sid, "0" * 32, api_base=fake.base_url)
    try:
        with pytest.raises(ProviderError) as err:
            await provider.place_call(dial())
    finally:
        await provider.close()
    assert err.value.kind == ErrorKind.TRANSIENT and "401" in err.value.message
    assert not fake.requests[-1].authorized


async def test_a_late_create_is_unknown_and_find_calls_reconciles_it(fake):
    provider = TwilioProvider(fake.account_sid, fake.auth_token, timeout=0.3, api_base=fake.base_url)
    since = dt.datetime.now(dt.timezone.utc)
    fake.delay_next(2.0)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as err:
            await provider.place_call(dial())
        assert time.monotonic() - started < 0.8
        assert err.value.kind == ErrorKind.UNKNOWN
        [sid] = fake.calls  # Twilio accepted it: still queued, so no start_time yet
        assert await provider.find_calls(TO, FROM, since) == [sid]
    finally:
        await provider.close()


async def test_a_connection_lost_after_the_create_went_out_is_unknown(fake, provider):
    fake.drop_next()
    with pytest.raises(ProviderError) as err:
        await provider.place_call(dial())
    assert err.value.kind == ErrorKind.UNKNOWN
    assert len(fake.calls) == 1
    await provider.place_call(dial())  # the pooled connection is not reused


async def test_find_calls_returns_every_matching_call_since_newest_first(fake, provider):
    now = dt.datetime.now(dt.timezone.utc)
    fake.add_call(TO, FROM, status="completed", created=now - dt.timedelta(hours=1))
    fake.add_call(TO, "+14155550000", created=now)
    fake.add_call("+14155550111", FROM, created=now)
    assert await provider.find_calls(TO, FROM, now - dt.timedelta(minutes=1)) == []
    older = fake.add_call(TO, FROM, status="ringing", created=now - dt.timedelta(seconds=30))
    newer = fake.add_call(TO, FROM, created=now - dt.timedelta(seconds=10))
    assert await provider.find_calls(TO, FROM, now - dt.timedelta(minutes=1)) == [newer, older]
    assert await provider.find_calls(TO, FROM, (now - dt.timedelta(minutes=1)).replace(tzinfo=None)) == [newer, older]
    assert await provider.find_calls(TO, FROM, now - dt.timedelta(seconds=20)) == [newer]
    assert older != newer
    [listing] = [r for r in fake.requests if r.method == "GET" and r.path.endswith("/Calls.json")][-1:]
    assert listing.params["To"] == TO and listing.params["From"] == FROM


async def test_connection_refused_is_transient(fake):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    provider = TwilioProvider(fake.account_sid, fake.auth_token, timeout=2.0, api_base=f"http://127.0.0.1:{port}")
    try:
        for attempt in (provider.place_call(dial()), provider.call_status("CA" + "0" * 32),
                        provider.find_calls(TO, FROM, dt.datetime.now(dt.timezone.utc)), provider.hangup("CA" + "0" * 32)):
            with pytest.raises(ProviderError) as err:
                await attempt
            assert err.value.kind == ErrorKind.TRANSIENT
    finally:
        await provider.close()


async def test_the_auth_token_never_shows_in_errors(fake):
    token = fake.auth_token
    provider = TwilioProvider(fake.account_sid, token, timeout=0.3, api_base=fake.base_url)
    messages = []
    try:
        for fault in (lambda: fake.fail_next(400, 21211, f"echoing your credentials {fake.account_sid}:{token}"),
                      lambda: fake.fail_next(503, 20503, f"Service unavailable {token}"),
                      lambda: fake.delay_next(1.0)):
            fault()
            with pytest.raises(ProviderError) as err:
                await provider.place_call(dial())
            messages.append(err.value.message)
    finally:
        await provider.close()
    closed = TwilioProvider(fake.account_sid, token, api_base="http://127.0.0.1:1")
    try:
        with pytest.raises(ProviderError) as err:
            await closed.place_call(dial())
        messages.append(err.value.message)
    finally:
        await closed.close()
    assert len(messages) == 4
    assert all(token not in m and token not in repr(ProviderError(ErrorKind.UNKNOWN, m)) for m in messages)
    assert "[auth token]" in messages[0]
    assert token not in repr(provider)


async def test_call_status_and_hangup(fake, provider):
    sid = (await provider.place_call(dial())).provider_call_id
    event = await provider.call_status(sid)
    assert (event.provider_call_id, event.status, event.answered_by, event.duration) == (sid, "queued", None, None)

    fake.set_status(sid, "in-progress", answered_by="human")
    event = await provider.call_status(sid)
    assert (event.status, event.answered_by) == ("in-progress", "human")

    await provider.hangup(sid)
    assert fake.calls[sid]["status"] == "completed"
    update = fake.requests[-1]
    assert update.method == "POST" and update.path.endswith(f"/Calls/{sid}.json") and update.params == {"Status": "completed"}
    fake.set_status(sid, "completed", duration=42)
    event = await provider.call_status(sid)
    assert (event.status, event.duration) == ("completed", 42)

    assert await provider.call_status("CA" + "0" * 32) is None
    await provider.hangup("CA" + "0" * 32)  # unknown call: nothing to end


async def test_send_status_posts_signed_callbacks(fake, provider, aiohttp_server):
    received, public_url = [], None

    async def status(request: web.Request) -> web.Response:
        form = dict(await request.post())
        public = public_url or str(request.url)
        ok = RequestValidator(fake.auth_token).validate(public, form, request.headers.get("X-Twilio-Signature", ""))
        received.append(form)
        return web.Response(status=204 if ok else 403)

    app = web.Application()
    app.router.add_post("/twilio/status", status)
    server = await aiohttp_server(app)
    callback = str(server.make_url("/twilio/status?call=c1"))
    sid = (await provider.place_call(dial(status_callback_url=callback))).provider_call_id

    assert await fake.send_status(sid, "ringing") == 204
    assert await fake.send_status(sid, "completed", answered_by="machine_start", duration=17) == 204
    assert received[-1] | {"Timestamp": None} == {
        "CallSid": sid, "AccountSid": fake.account_sid, "To": TO, "From": FROM, "CallStatus": "completed",
        "Direction": "outbound-api", "ApiVersion": "2010-04-01", "CallbackSource": "call-progress-events",
        "AnsweredBy": "machine_start", "CallDuration": "17", "Timestamp": None}
    assert (fake.calls[sid]["status"], fake.calls[sid]["duration"]) == ("completed", 17)
    assert await fake.send_unsigned(sid, "completed") == 403
    assert await fake.send_forged(sid, "completed") == 403
    assert await fake.send_status(sid, "completed", signature="bogus") == 403

    # Behind a proxy: Twilio signs the public URL, which the receiver validates against.
    public_url = "https://dialer.example/twilio/status?call=c1"
    assert await fake.send_status(sid, "completed", validator_url=public_url) == 204
    assert await fake.send_status(sid, "completed") == 403
    assert [c.status for c in fake.callbacks] == [204, 204, 403, 403, 403, 204, 403]


async def test_close_is_idempotent_and_the_provider_reopens(fake, provider):
    await provider.place_call(dial())
    await provider.close()
    await provider.close()
    await provider.place_call(dial())
    assert len(fake.calls) == 2


async def test_the_fake_pages_call_lists_like_twilio(fake, provider):
    for _ in range(25):
        fake.add_call(TO, FROM)
    fake.add_call(TO, "+14155550000")
    calls = await provider._calls().list_async(to=TO, from_=FROM, page_size=10)  # next-page links stay on the fake
    assert len(calls) == 25 and len({c.sid for c in calls}) == 25
