"""The dispatcher on a virtual clock with the simulator: limits, windows, retries, completion, crashes."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId

from dialer.api.appkeys import TENANCY
from dialer.core import machine
from dialer.core.clock import as_utc
from tests.dispatch_harness import Harness, nums

UTC = dt.timezone.utc


async def test_batch_runs_to_completion_within_its_limit(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings,
                outcomes={"answered": 0.6, "busy": 0.15, "no_answer": 0.15, "failed": 0.1})
    batch = await api.create_batch(concurrencyLimit=10)
    code, doc = await api.add_calls(batch, nums(100))
    assert code == 200
    await h.run_until(lambda: _is(h, batch, "completed"))
    assert h.peak[batch] == 10  # reached, never exceeded
    _, doc = await api.get(f"/api/call/batches/{batch}")
    counters = doc["data"]["counters"]
    assert counters["finished"] == counters["scheduled"] == counters["dispatched"] == 100
    assert counters["inFlight"] == 0 and counters["waiting"] == 0
    by = counters["byStatus"]
    assert by["completed"] + by["busy"] + by["no_answer"] + by["failed"] == 100
    assert min(by["completed"], by["busy"], by["no_answer"], by["failed"]) > 0
    assert sum(counters["byOutcome"].values()) == 100 and counters["byOutcome"]["busy"] == by["busy"]
    # Every number dialled exactly once (no retry policy beyond the default single attempt).
    assert Counter(r.to for r in h.sim.placed) == Counter(f"+1212555{i:04d}" for i in range(100))
    # FIFO: the first ten placed are the first ten enqueued.
    assert [r.to for r in h.sim.placed[:10]] == [f"+1212555{i:04d}" for i in range(10)]


async def _is(h, batch, status):
    return await h.batch_status(batch) == status


async def test_a_batch_is_completed_within_seconds_of_its_last_call_ending(
        api, clock, engine_settings):
    """Calls ending a few seconds apart: one ending pokes the dispatcher, which looks and finds the batch still has
    a call in flight; the last one's poke came before the next look at such batches was due, and no more pokes
    would come: the dispatcher slept its recheck (a minute with the simulator) before it saw the batch done (a
    bench run's last batch completed 60 s after its last call). The look at batches with calls in flight is a
    wake-up time of its own (every 5 s)."""
    h = Harness(api, clock, engine_settings, mean_duration=10, seed=5)  # seed 5: two calls end 2 s apart, late
    batch = await api.create_batch(concurrencyLimit=3)
    await api.add_calls(batch, nums(3))
    await h.run_until(lambda: _is(h, batch, "completed"), seconds=0.5)
    last_event = max(dt.datetime.fromisoformat(e["at"]) for c in await api.all_calls(batch) for e in c["history"])
    _, doc = await api.get(f"/api/call/batches/{batch}")
    completed_at = dt.datetime.fromisoformat(doc["data"]["updatedAt"])
    assert dt.timedelta(0) <= completed_at - last_event <= dt.timedelta(seconds=6)  # not the minute's recheck


async def test_two_dispatchers_racing_never_exceed_the_limit(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, dispatchers=2, mean_duration=20)
    b1 = await api.create_batch(concurrencyLimit=5)
    b2 = await api.create_batch(concurrencyLimit=7)
    await api.add_calls(b1, nums(60, "212"))
    await api.add_calls(b2, nums(60, "305"))

    async def both_done():
        return await h.batch_status(b1) == "completed" and await h.batch_status(b2) == "completed"

    await h.run_until(both_done)
    assert h.peak[b1] == 5 and h.peak[b2] == 7
    assert len(h.sim.placed) == 120 and len({r.to for r in h.sim.placed}) == 120
    # Both dispatchers did work.
    assert all(e.dispatcher.stats.placed > 0 for e in h.engines)


@pytest.mark.parametrize("dispatchers", [1, 3])
async def test_one_person_in_three_batches_is_in_one_call_at_a_time(api, clock, engine_settings, dispatchers):
    """Invariant 3 across batches (found by an exploratory run: the same 300 numbers in three batches of one
    workspace were dialled two or three at once). Every number ends up called by each batch, one at a time."""
    h = Harness(api, clock, engine_settings, dispatchers=dispatchers, mean_duration=20)
    batches = [await api.create_batch(concurrencyLimit=10) for _ in range(3)]
    for batch in batches:
        await api.add_calls(batch, nums(12, "212"))
    ended = ("completed", "busy", "no-answer", "failed", "canceled")
    worst = 0

    async def done():
        nonlocal worst
        talking = Counter(c.request.to for c in h.sim.calls.values() if c.status not in ended)
        worst = max(worst, max(talking.values(), default=0))
        return all([await h.batch_status(b) == "completed" for b in batches])

    await h.run_until(done)
    assert worst == 1
    assert Counter(r.to for r in h.sim.placed) == {n["phoneNumber"]: 3 for n in nums(12, "212")}
    busy = [c for b in batches for c in await api.all_calls(b) if "callee_busy" in [e["event"] for e in c["history"]]]
    assert busy and all(c["attempts"] == 1 and c["status"] == "completed" for c in busy)


async def test_concurrent_ticks_of_many_dispatchers_respect_limits(api, clock, engine_settings):
    import asyncio

    h = Harness(api, clock, engine_settings.replace(max_concurrent_calls=9), dispatchers=4, mean_duration=15)
    b1 = await api.create_batch(concurrencyLimit=6)
    b2 = await api.create_batch(concurrencyLimit=6)
    await api.add_calls(b1, nums(40, "212"))
    await api.add_calls(b2, nums(40, "305"))
    for _ in range(400):
        await asyncio.gather(*(e.step() for e in h.engines))
        await h.observe()
        clock.advance(1)
    assert h.peak[b1] <= 6 and h.peak[b2] <= 6
    assert h.peak_total == 9  # the account-wide limit, reached and never exceeded
    assert len(h.sim.placed) == len({r.to for r in h.sim.placed}) == 80


async def test_batches_share_the_account_fairly(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings.replace(max_concurrent_calls=4), mean_duration=600)
    b1 = await api.create_batch(concurrencyLimit=10)
    b2 = await api.create_batch(concurrencyLimit=10)
    await api.add_calls(b1, nums(20, "212"))
    await api.add_calls(b2, nums(20, "305"))
    await h.step()
    await h.step()  # dial times are spaced by 1/cps: the rest of the reservation is placed next tick
    placed = Counter(r.batch_id for r in h.sim.placed)
    assert placed == {b1: 2, b2: 2}


async def test_calls_per_second_is_honoured_across_dispatchers(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings.replace(calls_per_second=2.0), dispatchers=3, mean_duration=5)
    batch = await api.create_batch(concurrencyLimit=50)
    await api.add_calls(batch, nums(40))
    for _ in range(80):
        await h.step(0.25)
    per_second = Counter(when.replace(microsecond=0) for when, _ in h.placements)
    assert max(per_second.values()) <= 2
    assert len(h.placements) >= 38  # and the budget is actually used (20 s at 2 per second)


async def test_no_call_starts_outside_the_callee_window(api, clock, engine_settings):
    clock.set(dt.datetime(2026, 11, 23, 11, 0, tzinfo=UTC))  # 06:00 New York, 03:00 Los Angeles
    h = Harness(api, clock, engine_settings, mean_duration=30)
    batch = await api.create_batch(concurrencyLimit=20, callingWindow={"start": "09:00", "end": "17:00"})
    await api.add_calls(batch, nums(15, "212") + nums(15, "310"))
    await h.run_until(lambda: _is(h, batch, "completed"), seconds=60)
    zones = {"212": ZoneInfo("America/New_York"), "310": ZoneInfo("America/Los_Angeles")}
    for when, number in h.placements:
        local = when.astimezone(zones[number[2:5]])
        assert dt.time(9) <= local.time() < dt.time(17), (number, local)
    first = {area: min(w for w, n in h.placements if n[2:5] == area) for area in zones}
    assert first["212"] == dt.datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert first["310"] == dt.datetime(2026, 11, 23, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize("day, opening_utc", [
    (dt.date(2026, 3, 7), dt.datetime(2026, 3, 7, 13, 0, tzinfo=UTC)),   # EST, the day before
    (dt.date(2026, 3, 8), dt.datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),   # spring forward: EDT
    (dt.date(2026, 10, 31), dt.datetime(2026, 10, 31, 12, 0, tzinfo=UTC)),  # EDT
    (dt.date(2026, 11, 1), dt.datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),  # fall back: EST
])
async def test_window_opens_at_local_0800_across_dst(api, clock, engine_settings, day, opening_utc):
    clock.set(dt.datetime.combine(day, dt.time(4, 0), tzinfo=UTC))  # the night before, New York
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(concurrencyLimit=5)
    await api.add_calls(batch, nums(3))
    for _ in range(12 * 60):
        await h.step(60)
        if h.placements:
            break
    assert h.placements[0][0] == opening_utc


async def test_multi_zone_number_waits_until_open_in_every_zone(client, app, clock, engine_settings):
    from tests.conftest import make_api

    api = await make_api(client, app, {"name": "a", "callingNumbers": ["+14155550111"], "timezones": []})
    clock.set(dt.datetime(2026, 11, 23, 13, 0, tzinfo=UTC))  # 08:00 in New York
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch()
    await api.add_calls(batch, [{"phoneNumber": "+18005550199"}])  # toll-free: every NANP zone
    await h.run_until(lambda: _is(h, batch, "completed"), seconds=300)
    [(when, _)] = h.placements
    assert when == dt.datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # 08:00 in Guam, 12:00 in Pago Pago


async def test_window_crossing_midnight(api, clock, engine_settings):
    clock.set(dt.datetime(2026, 11, 23, 20, 0, tzinfo=UTC))  # Monday 15:00 New York
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(callingWindow={"start": "22:00", "end": "02:00", "days": ["mon"]})
    await api.add_calls(batch, nums(2))
    await h.run_until(lambda: _is(h, batch, "completed"), seconds=600)
    for when, _ in h.placements:
        local = when.astimezone(ZoneInfo("America/New_York"))
        assert local.time() >= dt.time(22) or local.time() < dt.time(2)
        assert local.weekday() in (0, 1)


async def test_busy_is_retried_by_policy_after_the_delay(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"busy": 1.0})
    batch = await api.create_batch(retry={"maxAttempts": 3, "delaySeconds": 600, "on": ["busy"]})
    await api.add_calls(batch, nums(1))
    await h.run_until(lambda: _is(h, batch, "completed"), seconds=30)
    times = [w for w, _ in h.placements]
    assert len(times) == 3
    assert all(b - a >= dt.timedelta(seconds=600) for a, b in zip(times, times[1:]))
    [call] = await api.all_calls(batch)
    assert call["status"] == "busy" and call["attempts"] == 3 and call["outcome"] == "busy"


async def test_no_retry_for_outcomes_the_policy_does_not_name(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"no_answer": 1.0})
    batch = await api.create_batch(retry={"maxAttempts": 3, "delaySeconds": 60, "on": ["busy"]})
    await api.add_calls(batch, nums(2))
    await h.run_until(lambda: _is(h, batch, "completed"))
    assert len(h.sim.placed) == 2


async def test_a_retry_policy_patched_while_calls_ring_decides_their_outcomes(api, clock, engine_settings):
    """The events read a running batch's retry policy from the dispatcher's copy, which a PATCH reaches within
    seconds (not from a cache a minute old): calls placed before the change are retried by the new policy."""
    h = Harness(api, clock, engine_settings, outcomes={"no_answer": 1.0})
    batch = await api.create_batch(concurrencyLimit=2, ringingTimeoutSeconds=120)  # no retry
    await api.add_calls(batch, nums(2))
    await h.run_until(lambda: _placed(h, 2), seconds=10)
    resp = await api.client.patch(f"/api/call/batches/{batch}", headers=api.headers(),
                                  json={"retry": {"maxAttempts": 2, "delaySeconds": 60, "on": ["no_answer"]}})
    assert resp.status == 200, await resp.text()
    await h.run_until(lambda: _is(h, batch, "completed"), seconds=600)
    assert len(h.sim.placed) == 4
    assert sorted(c["attempts"] for c in await api.all_calls(batch)) == [2, 2]


async def _placed(h, n):
    return len(h.sim.placed) >= n


async def test_scheduled_batch_starts_at_its_time(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(scheduledAt="2026-11-23T18:00:00Z")
    await api.add_calls(batch, nums(2))
    assert await h.batch_status(batch) == "pending"
    await h.run_until(lambda: _is(h, batch, "completed"), seconds=60)
    assert min(w for w, _ in h.placements) >= dt.datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


async def test_killed_dispatcher_before_placing_loses_nothing_and_dials_once(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings.replace(calls_per_second=1.0), mean_duration=10)
    batch = await api.create_batch(concurrencyLimit=5)
    await api.add_calls(batch, nums(5))
    doomed = h.engines[0]
    await doomed.dispatcher.claim(clock.now())  # claims 5 calls with dial times spread over 5 s...
    assert doomed.dispatcher.waiting_to_place > 0
    await doomed.dispatcher.placer.place_due(clock.now())  # ...places the first, then the process dies
    assert len(h.sim.placed) == 1
    h.engines = [h.new_engine("survivor")]
    clock.advance(300)  # past the lease
    await h.engines[0].reaper.run()
    await h.run_until(lambda: _is(h, batch, "completed"))
    assert Counter(r.to for r in h.sim.placed) == Counter(f"+1212555{i:04d}" for i in range(5))


async def test_lost_callbacks_are_reconciled_with_the_provider(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, mean_duration=30)
    batch = await api.create_batch(concurrencyLimit=3)
    await api.add_calls(batch, nums(3))
    await h.step()
    await h.step()
    assert len(h.sim.placed) == 3
    h.sim.sink = None  # the dispatcher died: nobody hears the provider's events any more
    clock.advance(200)
    await h.sim.pump()  # the calls end at the provider, unheard
    h.engines = [h.new_engine("survivor")]
    assert await h.engines[0].reaper.reconcile_expired() == 3
    calls = await api.all_calls(batch)
    assert {c["status"] for c in calls} == {"completed"}
    assert len(h.sim.placed) == 3
    await h.step()
    assert await h.batch_status(batch) == "completed"


async def test_stale_slots_heal(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(concurrencyLimit=2)
    await api.add_calls(batch, nums(4))
    # A crash left two slots reserved for claims that never landed.
    await h.engines[0].slots.state()
    lost = [{"callId": ObjectId(), "batchId": ObjectId(batch), "token": "t", "at": clock.now()} for _ in range(2)]
    state = await api.store.ledger.read()
    assert await api.store.ledger.write(state.version, state.pending + lost, state.next_dial_at)
    await h.step()
    assert h.sim.placed == []
    clock.advance(300)
    assert await h.engines[0].reaper.heal_slots() == 2
    await h.step()
    await h.step()
    assert len(h.sim.placed) == 2


async def test_stop_hands_back_claimed_calls(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings.replace(calls_per_second=1.0))
    batch = await api.create_batch(concurrencyLimit=5)
    await api.add_calls(batch, nums(5))
    engine = h.engines[0]
    await engine.dispatcher.claim(clock.now())
    await engine.stop()
    calls = await api.all_calls(batch)
    assert {c["status"] for c in calls} == {"queued"} and {c["attempts"] for c in calls} == {0}
    state = await engine.slots.state(clock.now())  # as the next reservation sees it
    assert state.total == 0


def test_dial_time_is_utc_aware():
    assert as_utc(dt.datetime(2026, 1, 1)).tzinfo is UTC


@pytest.mark.parametrize("detection, outcome", [(True, "machine"), (False, "completed")])
async def test_machine_outcome_needs_detection(api, clock, engine_settings, detection, outcome):
    h = Harness(api, clock, engine_settings.replace(machine_detection=detection), outcomes={"machine": 1.0})
    batch = await api.create_batch()
    await api.add_calls(batch, nums(2))
    await h.run_until(lambda: _is(h, batch, "completed"))
    assert {c["outcome"] for c in await api.all_calls(batch)} == {outcome}
    assert all(r.machine_detection is detection for r in h.sim.placed)


async def test_calls_enqueued_while_a_batch_completes_are_not_stranded(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch()
    await api.add_calls(batch, nums(1))
    await h.run_until(lambda: _is(h, batch, "completed"))
    # Replay the race: the dispatcher found nothing active, then a request enqueued a call while the
    # batch still read `running`, then the dispatcher marked it completed.
    assert await api.store.batches.move(ObjectId(batch), machine.REOPEN, clock.now())
    dispatcher = h.engines[0].dispatcher
    batches = dispatcher.batches

    class EnqueueingBeforeCompletion:  # the batch repository, with a request slipping in
        def __getattr__(self, name):
            return getattr(batches, name)

        async def move_many(self, batch_ids, move, now, *args, **kwargs):
            if move is machine.COMPLETE:
                code, _ = await api.add_calls(batch, [{"phoneNumber": "+12125559999"}])
                assert code == 200
            return await batches.move_many(batch_ids, move, now, *args, **kwargs)

    dispatcher.batches = EnqueueingBeforeCompletion()
    await dispatcher._complete_idle([{"_id": ObjectId(batch)}], clock.now())
    dispatcher.batches = batches
    assert await h.batch_status(batch) == "running"
    await h.run_until(lambda: _is(h, batch, "completed"))
    assert "+12125559999" in {r.to for r in h.sim.placed}


async def test_a_failed_claim_write_gives_its_slots_back(api, clock, engine_settings):
    from tests.faults import inject

    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(concurrencyLimit=3)
    await api.add_calls(batch, nums(3))
    faulty = inject(api.store.calls, "claim", {1})  # the claim's write: connection reset
    await h.step()
    assert faulty.calls == 1 and h.sim.placed == []
    assert {c["status"] for c in await api.all_calls(batch)} == {"queued"}
    assert (await h.engines[0].slots.state(clock.now())).used(ObjectId(batch)) == 0
    for _ in range(3):
        await h.step()
    assert len(h.sim.placed) == 3


async def test_claims_survive_a_failed_look_at_the_running_batches_just_before_placing(api, clock, engine_settings):
    # Found while building the simulation's store faults (sim/): the claims due were dropped from memory when the
    # placer's read of the running batches failed, and waited a whole lease for the reaper.
    from dialer.ports import StoreUnavailable
    from tests.faults import inject

    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(concurrencyLimit=3)
    await api.add_calls(batch, nums(3))
    dispatcher = h.engines[0].dispatcher
    await dispatcher.claim(clock.now())
    assert dispatcher.waiting_to_place == 3
    clock.advance(5)  # their dial times have come
    inject(api.store.batches, "runnable_stamps", {1})  # the placer's fresh read, just before it places
    with pytest.raises(StoreUnavailable):
        await dispatcher.placer.place_due(clock.now())
    assert dispatcher.waiting_to_place == 3 and h.sim.placed == []
    await dispatcher.placer.place_due(clock.now())
    assert len(h.sim.placed) == 3


async def test_a_claim_whose_write_stalls_past_the_grace_period_is_handed_back(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(concurrencyLimit=3)
    await api.add_calls(batch, nums(3))
    claim = api.store.calls.claim

    async def stalling_claim(*args, **kwargs):
        won = await claim(*args, **kwargs)
        clock.advance(engine_settings.lease_seconds)  # the write took a whole lease to come back
        return won

    api.store.calls.claim = stalling_claim
    await h.engines[0].dispatcher.claim(clock.now())
    api.store.calls.claim = claim
    assert h.engines[0].dispatcher.waiting_to_place == 0
    calls = await api.all_calls(batch)
    assert {c["status"] for c in calls} == {"queued"} and {c["attempts"] for c in calls} == {0}
    assert (await h.engines[0].slots.state(clock.now())).used(ObjectId(batch)) == 0
    await h.run_until(lambda: _is(h, batch, "completed"))
    assert len(h.sim.placed) == 3


async def test_a_window_narrowed_so_a_numbers_zones_never_share_it_ends_the_call_instead_of_waiting_for_ever(
        api, clock, engine_settings):
    """A toll-free number without a zone may be called only when the window is open in every NANP zone; a PATCH
    narrowing the window to 08:00-12:00 left it queued for ever, 15 days at a time, the batch never completing
    (found by an exploratory run). It ends skipped, saying why, as the same record sent now is refused."""
    agent = await api.app[TENANCY].create_agent(api.workspace_id, {"name": "no zone", "callingNumbers": ["+14155550177"]})
    clock.set(dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.timezone.utc))  # outside every NANP zone's 08:00-12:00
    h = Harness(api, clock, engine_settings)
    code, doc = await api.post("/api/call/createBatch", {"name": "toll free", "agentId": str(agent["_id"]),
                                                         "callingWindow": {"start": "00:00", "end": "24:00"}})
    batch = doc["data"]["batchId"]
    code, _ = await api.add_calls(batch, [{"phoneNumber": "+18005550100"}])
    assert code == 200
    resp = await api.client.patch(f"/api/call/batches/{batch}", headers=api.headers(),
                                  json={"callingWindow": {"start": "08:00", "end": "12:00"}})
    assert resp.status == 200

    async def completed() -> bool:
        return await h.batch_status(batch) == "completed"

    await h.run_until(completed, max_steps=100)
    [call] = await api.all_calls(batch)
    assert call["status"] == "skipped" and h.sim.placed == []
    assert "never open in every time zone" in call["history"][-1]["rule"]
