"""The reaper's search at the provider after a crash, through Twilio (tests/fake_twilio.py): a call left dialling
without a provider id is given a call to its number that no other call of ours holds, never a sibling's. Two
extensions of one number claimed together, or another batch's call to the number seconds before, leave calls to
that number at Twilio; adopting one of them ended the call with someone else's outcome, never dialled (a silent
loss). A dispatcher that died after its claim is played by writing the claim through the store, as it would."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets

import pytest
from bson import ObjectId

from dialer.composition import build_engine, open_services, open_wakeups
from dialer.ports import Claim, line_key
from tests.test_twilio_flow import CALLERS, N1, fake, make_env  # noqa: F401 (fixtures)
from workers.engine import Engine
from workers.telephony.twilio import TwilioProvider

pytestmark = pytest.mark.filterwarnings("ignore:.*(BasicAuth|'auth' parameter).*:DeprecationWarning")


def by_extension(calls: list[dict]) -> dict[str, dict]:
    return {c["extension"]: c for c in calls}


def digits(env, sid: str) -> str | None:
    return env.fake.calls[sid].get("SendDigits")


async def claimed_by_a_dead_dispatcher(env, call_id: str, dial_in: float = 0.0) -> None:
    repos, now = env.engine.repos, env.clock.now()
    call = await repos.calls.get(ObjectId(call_id))
    batch = await repos.batches.get(call["batchId"])
    claim = Claim(call["_id"], secrets.token_hex(6), "dead-dispatcher", now + dt.timedelta(seconds=dial_in),
                  now + dt.timedelta(seconds=120), line_key(batch["workspaceId"], call["phoneNumber"], call["extension"]))
    assert (await repos.calls.claim([claim], [], [], now)).won == {call["_id"]}


async def restarted(env) -> Engine:
    """The dispatcher process restarted on the same store: a new engine (the dead one's claims die with it)."""
    dead = env.engine
    provider = TwilioProvider(env.fake.account_sid, env.fake.auth_token, timeout=0.5, api_base=env.fake.base_url)
    return Engine(dead.repos, env.clock, dead.settings, provider, dead.events, name="d1")


async def test_an_extension_left_unplaced_is_requeued_not_given_its_siblings_call(make_env):
    env = await make_env()
    batch = await env.api.create_batch(concurrencyLimit=2)
    await env.api.add_calls(batch, [{"phoneNumber": N1 + " ext 22"}, {"phoneNumber": N1 + " ext 23"}])
    await env.tick()  # both claimed; ext 22 placed (not yet recorded), ext 23 due a moment later: the process dies
    [sid22] = env.fake.calls
    assert digits(env, sid22) == "ww22"
    calls = by_extension(await env.api.all_calls(batch))
    assert [(calls[x]["status"], calls[x]["providerCallId"]) for x in ("22", "23")] == [("dialing", None)] * 2
    engine = await restarted(env)
    try:
        env.clock.advance(121)  # the leases run out
        await engine.reaper.run()
        calls = by_extension(await env.api.all_calls(batch))
        assert calls["22"]["providerCallId"] == sid22
        assert (calls["23"]["status"], calls["23"]["providerCallId"]) == ("queued", None)
        assert [h["event"] for h in calls["23"]["history"]] == ["requeued_after_crash"]
        await engine.step()  # the restarted dispatcher places it: its own call, its own outcome
    finally:
        await engine.provider.close()
    [sid23] = [sid for sid in env.fake.calls if sid != sid22]
    assert digits(env, sid23) == "ww23" and len(env.creates()) == 2
    assert await env.fake.send_status(sid22, "busy") == 204
    assert await env.fake.send_status(sid23, "completed", duration=12) == 204
    calls = by_extension(await env.api.all_calls(batch))
    assert [(calls[x]["outcome"], calls[x]["providerCallId"]) for x in ("22", "23")] == \
        [("busy", sid22), ("completed", sid23)]


async def test_a_timed_out_create_is_adopted_though_a_sibling_placed_a_newer_call_to_the_number(make_env):
    env = await make_env()
    batch = await env.api.create_batch(concurrencyLimit=2)
    env.fake.delay_next(1.5)  # ext 23's create times out; Twilio made the call anyway
    await env.api.add_calls(batch, [{"phoneNumber": N1 + " ext 23"}, {"phoneNumber": N1 + " ext 22"}])
    await env.tick(2)
    sid23, sid22 = env.fake.calls
    assert (digits(env, sid23), digits(env, sid22)) == ("ww23", "ww22")
    assert env.fake.calls[sid22]["date_created"] > env.fake.calls[sid23]["date_created"]  # ext 22's is the newest
    assert by_extension(await env.api.all_calls(batch))["23"]["providerCallId"] is None
    env.clock.advance(121)
    await env.engine.reaper.run()
    calls = by_extension(await env.api.all_calls(batch))
    assert (calls["23"]["providerCallId"], calls["22"]["providerCallId"]) == (sid23, sid22)
    assert len(env.creates()) == 2  # adopted, not dialled again


async def test_siblings_both_placed_and_unrecorded_each_get_their_own_call(make_env):
    """Neither id recorded (the dispatcher died after both creates, and the API with it, so no callback came): the
    calls are reconciled in dial order, each taking the oldest call no other one holds."""
    env = await make_env()
    batch = await env.api.create_batch(concurrencyLimit=2)
    _, added = await env.api.add_calls(batch, [{"phoneNumber": N1 + " ext 23"}, {"phoneNumber": N1 + " ext 22"}])
    ext23, ext22 = added["data"]["callIds"]
    await claimed_by_a_dead_dispatcher(env, ext22)  # dialled first, though enqueued second
    await claimed_by_a_dead_dispatcher(env, ext23, dial_in=1)
    now = env.clock.now()
    sid22 = env.fake.add_call(N1, CALLERS[0], created=now, SendDigits="ww22")
    sid23 = env.fake.add_call(N1, CALLERS[0], created=now + dt.timedelta(seconds=1), SendDigits="ww23")
    env.clock.advance(121)
    await env.engine.reaper.run()
    calls = by_extension(await env.api.all_calls(batch))
    assert (calls["22"]["providerCallId"], calls["23"]["providerCallId"]) == (sid22, sid23)
    assert not env.creates()


async def test_another_batchs_call_to_the_number_moments_before_is_not_adopted(make_env):
    env = await make_env()
    first = await env.api.create_batch(concurrencyLimit=1)
    await env.api.add_calls(first, [{"phoneNumber": N1}])
    await env.tick()
    earlier = env.sid(N1)
    assert await env.fake.send_status(earlier, "completed", duration=3) == 204  # ended: the callee is free again
    second = await env.api.create_batch(concurrencyLimit=1)
    _, added = await env.api.add_calls(second, [{"phoneNumber": N1}])
    [call_id] = added["data"]["callIds"]
    await claimed_by_a_dead_dispatcher(env, call_id)  # a second after the first batch's call was created
    env.clock.advance(121)
    await env.engine.reaper.run()
    call = (await env.calls(second))[N1]
    assert (call["status"], call["providerCallId"], call.get("outcome")) == ("queued", None, None)
    assert (await env.calls(first))[N1]["providerCallId"] == earlier
    for _ in range(6):  # a dispatcher places it (it sees the second batch within 5 s)
        await env.tick()
    assert len(env.creates(N1)) == 2 and env.sid(N1) != earlier


async def test_a_call_the_reaper_requeues_is_placed_by_a_worker_at_its_next_tick(make_env, fake, clock):
    """The reaper of one process (here the API's engine) puts back a call a dead dispatcher left unplaced. A
    `dialer worker` beside it, idle with the batch at its limit (the dead claim held the slot), was told nothing
    and placed it at its recheck (10 s once woken over the socket); it is now told, and places it at its next tick."""
    env = await make_env(poll_interval_seconds=5)
    services = await open_services(env.engine.settings, clock)
    provider = TwilioProvider(fake.account_sid, fake.auth_token, timeout=0.5, api_base=fake.base_url)
    worker = build_engine(services, provider=provider, name="worker")
    await open_wakeups(services, worker)
    try:
        batch = await env.api.create_batch(concurrencyLimit=1)
        _, added = await env.api.add_calls(batch, [{"phoneNumber": N1}])
        [call_id] = added["data"]["callIds"]
        await claimed_by_a_dead_dispatcher(env, call_id)
        env.clock.advance(121)  # its lease ran out
        await worker.step()  # the batch at its limit: idle until its recheck
        await env.engine.reaper.run()  # never reached Twilio: requeued
        assert [h["event"] for h in (await env.calls(batch))[N1]["history"]] == ["requeued_after_crash"]
        await asyncio.sleep(0.2)  # the datagram, read by the worker's loop
        env.clock.advance(1)
        await worker.step()
        assert len(env.creates(N1)) == 1
    finally:
        await worker.stop()
        await services.close()
