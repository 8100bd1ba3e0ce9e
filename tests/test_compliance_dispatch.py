"""Compliance through HTTP and the dispatcher's effects: profiles on batches and workspaces, deferrals and
suppressions with their rule in the call's history, frequency caps across batches and racing dispatchers."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId

from tests.dispatch_harness import Harness

UTC = dt.timezone.utc
NY = ZoneInfo("America/New_York")
ADMIN = {"Authorization": "Bearer admin-secret"}
FL, NYC = "+13055550100", "+12125550100"


def at_ny(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY).astimezone(UTC)


async def set_workspace(api, **body) -> dict:
    resp = await api.client.patch(f"/api/admin/workspaces/{api.workspace_id}", json=body, headers=ADMIN)
    doc = await resp.json()
    assert resp.status == 200, doc
    return doc["data"]


async def calls_by_number(api, batch) -> dict[str, dict]:
    return {c["phoneNumber"]: c for c in await api.all_calls(batch)}


async def test_profiles_are_validated_shown_and_changed(api):
    code, doc = await api.post("/api/call/createBatch", {"name": "b", "agentId": str(api.agent["_id"]),
                                                         "compliance": "us-everywhere"})
    assert code == 400 and "none, us-federal, us-states" in doc["errorMessage"]
    batch = await api.create_batch(compliance="us-states", stateField="st")
    _, doc = await api.get(f"/api/call/batches/{batch}")
    assert (doc["data"]["compliance"], doc["data"]["stateField"]) == ("us-states", "st")
    resp = await api.client.patch(f"/api/call/batches/{batch}", json={"compliance": "bogus"}, headers=api.headers())
    assert resp.status == 400 and "none, us-federal, us-states" in (await resp.json())["errorMessage"]
    resp = await api.client.patch(f"/api/call/batches/{batch}", json={"compliance": None}, headers=api.headers())
    assert resp.status == 200
    _, doc = await api.get("/api/call/batches")
    assert [b["compliance"] for b in doc["data"]["batches"]] == [None]  # follows the workspace's
    data = await set_workspace(api, compliance="us-federal", maxAttemptsPerNumberPerDay=4)
    assert (data["compliance"], data["maxAttemptsPerNumberPerDay"]) == ("us-federal", 4)
    resp = await api.client.patch(f"/api/admin/workspaces/{api.workspace_id}", json={"compliance": "x"}, headers=ADMIN)
    assert resp.status == 400 and "none, us-federal, us-states" in (await resp.json())["errorMessage"]
    resp = await api.client.patch(f"/api/admin/workspaces/{api.workspace_id}",
                                  json={"maxAttemptsPerNumberPerDay": 0}, headers=ADMIN)
    assert resp.status == 400 and "maxAttemptsPerNumberPerDay" in (await resp.json())["errorMessage"]
    _, spec = await api.get("/openapi.json")
    schemas = spec["components"]["schemas"] if "components" in spec else spec["data"]["components"]["schemas"]
    assert "compliance" in str(schemas["CreateBatchBody"]) and "maxAttemptsPerNumberPerDay" in str(schemas)


def test_cli_workspace_set_sends_the_compliance_settings(monkeypatch):
    from dialer import cli

    sent = []
    monkeypatch.setattr(cli, "_remote", sent.append)
    assert cli.main(["workspace-set", "w1", "--compliance", "us-states", "--max-attempts-per-day", "3"]) == 0
    assert cli.main(["workspace-set", "w1", "--compliance", "unset", "--max-attempts-per-day", "0"]) == 0
    assert [ns.body for ns in sent] == [{"compliance": "us-states", "maxAttemptsPerNumberPerDay": 3},
                                        {"compliance": None, "maxAttemptsPerNumberPerDay": None}]


async def test_a_workspace_default_defers_florida_after_eight_with_its_rule(api, clock, engine_settings):
    await set_workspace(api, compliance="us-states")
    clock.set(at_ny(2026, 11, 23, 20, 30))
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch()  # no profile of its own: the workspace's
    await api.add_calls(batch, [{"phoneNumber": FL}, {"phoneNumber": NYC}])
    for _ in range(5):
        await h.step()
    assert [r.to for r in h.sim.placed] == [NYC]
    fl = (await calls_by_number(api, batch))[FL]
    assert fl["status"] == "queued"
    deferred = [e for e in fl["history"] if e.get("rule")]
    assert deferred and deferred[0]["rule"] == "us-states/FL hours 08:00-20:00"
    # Placed at eight the next morning, not before.
    clock.set(at_ny(2026, 11, 24, 7, 59, 50))
    for _ in range(5):
        await h.step(1)
    assert [r.to for r in h.sim.placed] == [NYC]
    for _ in range(15):
        await h.step(1)
    assert [r.to for r in h.sim.placed] == [NYC, FL]
    assert min(t for t, n in h.placements if n == FL) >= at_ny(2026, 11, 24, 8, 0)


async def test_a_call_its_profile_never_allows_is_suppressed_and_counted(api, clock, engine_settings):
    clock.set(at_ny(2026, 11, 23, 20, 40))
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(compliance="us-states", callingWindow={"start": "20:30", "end": "21:00"})
    await api.add_calls(batch, [{"phoneNumber": FL}, {"phoneNumber": NYC}])
    await h.run_until(lambda: _status_is(h, batch, "completed"))
    assert [r.to for r in h.sim.placed] == [NYC]
    fl = (await calls_by_number(api, batch))[FL]
    assert (fl["status"], fl["outcome"]) == ("skipped", "suppressed")
    entry = fl["history"][-1]
    assert (entry["event"], entry["rule"]) == ("suppressed", "us-states/FL hours 08:00-20:00")
    _, doc = await api.get(f"/api/call/batches/{batch}")
    assert doc["data"]["counters"]["byOutcome"].get("suppressed") == 1


async def _status_is(h, batch, status):
    return await h.batch_status(batch) == status


async def test_the_workspace_cap_holds_across_batches_and_racing_dispatchers(api, clock, engine_settings):
    await set_workspace(api, maxAttemptsPerNumberPerDay=2)
    h = Harness(api, clock, engine_settings, dispatchers=2, mean_duration=20)
    batches = [await api.create_batch() for _ in range(5)]
    for batch in batches:
        await api.add_calls(batch, [{"phoneNumber": NYC}])
    start = clock.now()
    for _ in range(60):
        await h.step()
    assert [r.to for r in h.sim.placed] == [NYC, NYC]  # two of five, whichever dispatcher went first
    waiting = [c for b in batches for c in await api.all_calls(b) if c["status"] == "queued"]
    assert len(waiting) == 3
    for call in waiting:
        assert any(e.get("rule") == "cap: 2 per 24 h" for e in call["history"])
        assert dt.datetime.fromisoformat(call["nextAttemptAt"].replace("Z", "+00:00")) >= start + dt.timedelta(hours=24)
    # A day later two more may go, not three.
    clock.set(start + dt.timedelta(hours=24, seconds=60))
    for _ in range(60):
        await h.step()
    assert len(h.sim.placed) == 4
    assert await api.store.caps.count(ObjectId(str(api.workspace_id)), NYC, clock.now() - dt.timedelta(hours=24)) == 2


async def test_florida_cap_from_the_profile_counts_every_batch(api, clock, engine_settings):
    await set_workspace(api, compliance="us-states")
    h = Harness(api, clock, engine_settings, dispatchers=2, mean_duration=20)
    unprofiled = await api.create_batch(compliance="none")  # not capped itself, but its attempt counts
    await api.add_calls(unprofiled, [{"phoneNumber": FL}])
    for _ in range(30):
        await h.step()
    assert len(h.sim.placed) == 1
    batches = [await api.create_batch() for _ in range(3)]
    for batch in batches:
        await api.add_calls(batch, [{"phoneNumber": FL}])
    for _ in range(60):
        await h.step()
    assert len(h.sim.placed) == 3  # Florida: three attempts per 24 h, whichever batch made them
    waiting = [c for b in batches for c in await api.all_calls(b) if c["status"] == "queued"]
    assert len(waiting) == 1 and any(e.get("rule") == "cap: 3 per 24 h" for e in waiting[0]["history"])


async def test_a_batch_under_us_states_by_its_own_setting_makes_its_workspace_counted(api, clock, engine_settings):
    """The workspace has no profile: one running batch under us-states puts the workspace's attempts under its
    caps, so an attempt of another batch of the workspace (not capped itself) counts against Florida's three."""
    h = Harness(api, clock, engine_settings, dispatchers=1, mean_duration=600)
    profiled = await api.create_batch(compliance="us-states")
    await api.add_calls(profiled, [{"phoneNumber": NYC}])  # keeps it running (a long call)
    for _ in range(10):
        await h.step()
    # Short calls from now on: one person is in one call at a time, so Florida's calls of the batches below are
    # placed in turn, each once the one before has ended (the call to New York keeps its long talk).
    h.sim.mean_duration = 5
    unprofiled = await api.create_batch(compliance="none")
    await api.add_calls(unprofiled, [{"phoneNumber": FL}])

    async def placed_both() -> bool:
        return sorted(r.to for r in h.sim.placed) == sorted([NYC, FL])

    await h.run_until(placed_both, max_steps=300)
    assert await placed_both()
    more = [await api.create_batch(compliance="us-states") for _ in range(3)]
    for batch in more:
        await api.add_calls(batch, [{"phoneNumber": FL}])

    async def settled() -> bool:  # every call of the three attempted, or deferred by a rule
        calls = [c for b in more for c in await api.all_calls(b)]
        return all(c["attempts"] or any(e.get("rule") for e in c["history"]) for c in calls)

    await h.run_until(settled, max_steps=600)
    calls = [c for b in more for c in await api.all_calls(b)]
    assert sorted(c["attempts"] for c in calls) == [0, 1, 1]  # the unprofiled batch's attempt counted
    waiting = [c for b in more for c in await api.all_calls(b) if c["status"] == "queued"]
    assert len(waiting) == 1 and any(e.get("rule") == "cap: 3 per 24 h" for e in waiting[0]["history"])


async def test_an_attempt_the_provider_refused_gives_its_cap_back(api, clock, engine_settings):
    from workers.telephony.base import ErrorKind, ProviderError

    await set_workspace(api, maxAttemptsPerNumberPerDay=1)
    h = Harness(api, clock, engine_settings)
    place, refusals = h.sim.place_call, []

    async def rate_limited_once(request):
        if not refusals:
            refusals.append(request.to)
            raise ProviderError(ErrorKind.RATE_LIMITED, "slow down", retry_after=5)
        return await place(request)

    h.sim.place_call = rate_limited_once
    batch = await api.create_batch()
    await api.add_calls(batch, [{"phoneNumber": NYC}])
    for _ in range(300):  # an idle dispatcher looks again after its recheck interval
        await h.step()
    # Refused, not an attempt: its reservation went back, so the retry five seconds later was not capped.
    assert refusals == [NYC] and [r.to for r in h.sim.placed] == [NYC]
    call = (await calls_by_number(api, batch))[NYC]
    assert not any(e.get("rule") for e in call["history"])
    workspace = ObjectId(str(api.workspace_id))
    assert await api.store.caps.count(workspace, NYC, clock.now() - dt.timedelta(hours=24)) == 1


async def test_a_create_that_never_reached_the_provider_gives_its_cap_back(api, clock, engine_settings):
    from workers.telephony.base import ErrorKind, ProviderError

    await set_workspace(api, maxAttemptsPerNumberPerDay=1)
    h = Harness(api, clock, engine_settings)
    place, lost = h.sim.place_call, []

    async def timed_out_once(request):  # the create timed out and nothing was made: the reaper finds nothing
        if not lost:
            lost.append(request.to)
            raise ProviderError(ErrorKind.UNKNOWN, "timed out")
        return await place(request)

    h.sim.place_call = timed_out_once
    batch = await api.create_batch()
    await api.add_calls(batch, [{"phoneNumber": NYC}])
    await h.run_until(lambda: _status_is(h, batch, "completed"))
    assert lost == [NYC] and [r.to for r in h.sim.placed] == [NYC]
    call = (await calls_by_number(api, batch))[NYC]
    assert any(e["event"] == "requeued_after_crash" for e in call["history"])
    assert not any(e.get("rule") for e in call["history"])


async def test_a_slot_write_that_fails_gives_its_cap_back(api, clock, engine_settings):
    """Found by review: the caps were reserved, then the slot ledger's write failed (a database error) and
    nothing gave the attempt back: the number, never dialled, waited 24 hours. (The ledger's write goes with
    the claim's: that write fails here.)"""
    from dialer.ports import StoreUnavailable

    await set_workspace(api, maxAttemptsPerNumberPerDay=1)
    h = Harness(api, clock, engine_settings)
    calls, failures = api.store.calls, []
    write = calls.claim

    async def fails_once(*args, **kwargs):
        if not failures and kwargs.get("reservation", args[6] if len(args) > 6 else None) is not None:
            failures.append(1)
            raise StoreUnavailable("database error: SQLITE_BUSY")
        return await write(*args, **kwargs)

    calls.claim = fails_once
    batch = await api.create_batch()
    await api.add_calls(batch, [{"phoneNumber": NYC}])
    await h.engines[0].dispatcher.claim(clock.now())  # the write fails: nothing claimed, everything given back
    assert failures and not h.engines[0].dispatcher.placer.ready
    await h.run_until(lambda: _status_is(h, batch, "completed"))
    assert failures and [r.to for r in h.sim.placed] == [NYC]
    call = (await calls_by_number(api, batch))[NYC]
    assert not any(e.get("rule") for e in call["history"])  # never deferred by its own phantom attempt


async def test_a_record_state_on_another_clock_is_read_in_that_states_time(api, clock, engine_settings):
    """A New York number whose record says Texas: the callee may be in Texas, where Sunday calls start at noon
    Central (noon Mountain in El Paso), not at noon Eastern."""
    clock.set(at_ny(2026, 12, 6, 12, 30))  # Sunday: 11:30 in Dallas, 10:30 in El Paso
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(compliance="us-states", stateField="st",
                                   callingWindow={"start": "00:00", "end": "24:00"})
    await api.add_calls(batch, [{"phoneNumber": NYC, "st": "TX"}])
    for _ in range(5):
        await h.step()
    assert h.sim.placed == []
    call = (await calls_by_number(api, batch))[NYC]
    assert call["status"] == "queued" and call["nextAttemptAt"] == "2026-12-06T19:00:00Z"  # noon MST
    assert [e["rule"] for e in call["history"] if e.get("rule")][0] == "us-states/TX hours 09:00-21:00, sun 12:00-21:00"
