"""Operators run their batches through HTTP: list, start, stop, cancel, retry, delete, with dispatchers
running on a virtual clock (tests/dispatch_harness.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter

import pytest
from bson import ObjectId

from dialer.api.appkeys import INGESTION, LIFECYCLE
from dialer.core import machine
from tests.conftest import make_api
from tests.dispatch_harness import Harness, after_due_reads, nums
from tests.faults import inject
from workers import reaper


async def act(api, batch: str, verb: str, body=None) -> tuple[int, dict]:
    return await api.post(f"/api/call/batches/{batch}/{verb}", body)


async def while_stepping(h, request):
    """Run an HTTP request while the dispatchers keep working (a stop waits for their unplaced claims)."""
    task = asyncio.ensure_future(request)
    while not task.done():
        await h.step(0.2)
        await asyncio.sleep(0.01)
    return await task


async def done(h, batch):
    return await h.batch_status(batch) == "completed"


async def test_stop_means_stop_with_two_dispatchers_then_resume(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings.replace(calls_per_second=2.0), dispatchers=2, mean_duration=40)
    batch = await api.create_batch(concurrencyLimit=6)
    await api.add_calls(batch, nums(60))
    for _ in range(30):
        await h.step()
    assert 0 < len(h.sim.placed) < 60
    code, doc = await while_stepping(h, act(api, batch, "stop"))
    assert code == 200 and doc["data"]["status"] == "paused"
    placed = len(h.sim.placed)
    frozen = doc["data"]["counters"]
    for _ in range(300):  # five minutes: calls in flight end, nothing new is placed by either dispatcher
        await h.step()
    assert len(h.sim.placed) == placed
    _, doc = await api.get(f"/api/call/batches/{batch}")
    counters = doc["data"]["counters"]
    assert counters["inFlight"] == 0 and counters["dispatched"] == frozen["dispatched"]
    assert counters["finished"] == frozen["finished"] + frozen["inFlight"]
    code, again = await act(api, batch, "stop")  # a double click changes nothing
    assert code == 200 and again["data"]["status"] == "paused"
    code, doc = await act(api, batch, "start")
    assert code == 200 and doc["data"]["status"] == "running"
    await h.run_until(lambda: done(h, batch))
    assert Counter(r.to for r in h.sim.placed) == Counter(c["phoneNumber"] for c in nums(60))  # each once
    assert max(h.peak.values()) <= 6


async def test_a_start_wakes_the_dispatcher_of_its_process(api, clock, engine_settings):
    """`make run`: the dispatcher in the API's process is woken by a stop, a cancel, a retry or a change, and was
    not by a start; it found the batch again only at its recheck (a minute with the simulator): an operator's
    start placed nothing for up to a minute (found by an exploratory run: 47-55 s)."""
    h = Harness(api, clock, engine_settings, mean_duration=20)
    api.app[LIFECYCLE].on_change = h.engines[0].dispatcher.wake  # as the composition root wires it
    batch = await api.create_batch(concurrencyLimit=3)
    await api.add_calls(batch, nums(30))
    await h.step()
    await h.step()
    assert len(h.sim.placed) == 3
    code, _ = await while_stepping(h, act(api, batch, "stop"))
    assert code == 200
    for _ in range(40):  # the calls in flight end; the dispatcher goes idle until its recheck
        await h.step()
    code, _ = await act(api, batch, "start")
    assert code == 200
    await h.step()
    await h.step()
    assert len(h.sim.placed) == 6


async def test_a_stop_between_the_dispatchers_look_and_its_claim_places_nothing(api, clock, engine_settings):
    """The dispatcher read the due calls, then the stop answered (no claim yet: nothing to wait for), then the
    claim was written: the claim's write reads its batch after it, sees it paused, and hands the calls back."""
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(concurrencyLimit=3)
    await api.add_calls(batch, nums(3))
    answers = []

    async def stop_lands_after_the_look(found):
        if not answers:
            answers.append(await act(api, batch, "stop"))

    after_due_reads(h.engines[0].dispatcher.calls, stop_lands_after_the_look)
    for _ in range(5):
        await h.step()
    code, doc = answers[0]
    assert code == 200 and doc["data"]["status"] == "paused"
    assert h.sim.placed == []
    assert Counter(c["status"] for c in await api.all_calls(batch)) == {"queued": 3}


async def test_stop_and_start_go_by_the_batch_as_it_is_not_as_it_was_read(api, clock, engine_settings):
    """Found by the million-call simulation: a stop read its batch paused, a start landed, and the stop answered
    at once from its stale copy ("paused", nothing to do) while the batch ran: its calls were placed after that
    answer. A stop or start acts on the status the move finds."""
    lifecycle = api.app[LIFECYCLE]
    batch = await api.create_batch(concurrencyLimit=3)
    assert (await act(api, batch, "start"))[0] == 200
    assert (await act(api, batch, "stop"))[0] == 200
    stale = await lifecycle.repo.get(ObjectId(batch))
    assert (await act(api, batch, "start"))[0] == 200
    answer = await lifecycle.stop(stale)
    assert answer["status"] == "paused" and (await lifecycle.repo.get(ObjectId(batch)))["status"] == "paused"
    answer = await lifecycle.start(answer)
    assert (await act(api, batch, "stop"))[0] == 200
    assert (await lifecycle.start(answer))["status"] == "running"  # read running, stopped since: started
    assert (await lifecycle.repo.get(ObjectId(batch)))["status"] == "running"
    code, doc = await act(api, batch, "start")  # a double click changes nothing
    assert code == 200 and doc["data"]["status"] == "running"


async def test_cancel_withdraws_waiting_calls_and_can_hang_up(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"no_answer": 1.0})  # each rings for ten minutes
    api.app[LIFECYCLE].hang_up = h.sim.hangup  # as the composition root wires the provider of make run
    batch = await api.create_batch(concurrencyLimit=3, ringingTimeoutSeconds=600)
    await api.add_calls(batch, nums(10))
    for _ in range(40):
        await h.step()
    assert len(h.sim.placed) == 3
    code, doc = await while_stepping(h, act(api, batch, "cancel", {"hangUp": True}))
    assert code == 200 and doc["data"]["status"] == "cancelled"
    assert doc["data"]["counters"]["byStatus"]["cancelled"] == 7
    for _ in range(5):
        await h.step()
    _, doc = await api.get(f"/api/call/batches/{batch}")
    assert doc["data"]["counters"]["inFlight"] == 0 and doc["data"]["counters"]["finished"] == 10
    assert len(h.sim.placed) == 3
    code, doc = await act(api, batch, "cancel")
    assert code == 409 and "cancelled" in doc["errorMessage"] and doc["data"]["status"] == "cancelled"
    for verb in ("start", "stop", "retry"):
        code, doc = await act(api, batch, verb)
        assert code == 409, verb


async def cancel_with_two_in_flight(h: Harness, api, **batch_settings) -> Counter:
    """Six calls at limit 2, cancelled (no hang-up) with two in flight; the calls' statuses once those ended."""
    batch = await api.create_batch(concurrencyLimit=2, **batch_settings)
    await api.add_calls(batch, nums(6))
    for _ in range(100):  # until both slots are taken (calls end and are retried within seconds)
        await h.step(0.2)
        _, doc = await api.get(f"/api/call/batches/{batch}")
        if doc["data"]["counters"]["inFlight"] == 2 and len(h.sim.placed) >= 2:
            break
    code, doc = await while_stepping(h, act(api, batch, "cancel"))
    assert code == 200 and doc["data"]["counters"]["inFlight"] == 2
    for _ in range(1000):
        await h.step()
    return Counter(c["status"] for c in await api.all_calls(batch))


async def test_cancel_without_hang_up_lets_calls_in_flight_end(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, mean_duration=60)
    assert await cancel_with_two_in_flight(h, api) == {"completed": 2, "cancelled": 4}


async def test_a_call_in_flight_at_a_cancel_that_ends_retryable_ends_cancelled_not_queued(api, clock, engine_settings):
    """Calls in flight end normally after a cancel; one whose outcome the batch retries must not go back to the
    queue of a batch that never runs again (the million-call simulation found 5,604 calls left so)."""
    h = Harness(api, clock, engine_settings, outcomes={"busy": 1.0}, mean_duration=60)
    retry = {"maxAttempts": 3, "delaySeconds": 0, "on": ["busy"]}
    assert await cancel_with_two_in_flight(h, api, retry=retry) == {"cancelled": 6}


async def test_a_claim_the_provider_refuses_after_a_cancel_elsewhere_ends_cancelled_not_queued(api, clock, engine_settings):
    """A claim refused by the provider (rate limited: back to the queue, not an attempt) after its batch was
    cancelled by another process, whose cancel had already withdrawn the waiting calls: it must not wait for
    ever in the queue of a batch that never runs again (the million-call simulation's second finding)."""
    from dialer.services.calls import withdraw_all
    from workers.telephony.base import ErrorKind, ProviderError

    h = Harness(api, clock, engine_settings, mean_duration=60)
    batch = await api.create_batch(concurrencyLimit=3)
    await api.add_calls(batch, nums(1))
    place, refused = h.sim.place_call, []

    async def cancelled_meanwhile(request):
        if not refused:  # the cancel lands between the placer's look at the batch and the provider's answer
            refused.append(request.to)
            assert await api.store.batches.move(ObjectId(batch), machine.CANCEL, clock.now())
            await withdraw_all(api.store.calls, ObjectId(batch), clock.now())
            raise ProviderError(ErrorKind.RATE_LIMITED, "slow down", retry_after=5)
        return await place(request)

    h.sim.place_call = cancelled_meanwhile
    while not refused:
        await h.step()
    await h.step()  # at once, not when the reaper's reconciliation next looks at cancelled batches
    statuses = Counter(c["status"] for c in await api.all_calls(batch))
    assert statuses == {"cancelled": 1}, statuses


async def test_retry_redials_only_the_named_outcomes(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"answered": 0.5, "busy": 0.5}, mean_duration=10)
    batch = await api.create_batch(concurrencyLimit=10)
    await api.add_calls(batch, nums(20))
    await h.run_until(lambda: done(h, batch))
    first = Counter(c["status"] for c in await api.all_calls(batch))
    assert first["busy"] > 0 and first["completed"] > 0
    code, doc = await act(api, batch, "retry", {"outcomes": ["busy"]})
    assert code == 200 and doc["data"]["status"] == "running" and doc["data"]["retryCount"] == 1
    assert doc["data"]["counters"]["waiting"] == first["busy"]
    completed = {c["phoneNumber"] for c in await api.all_calls(batch, status="completed")}
    before = len(h.sim.placed)
    await h.run_until(lambda: done(h, batch))
    redialled = [r.to for r in h.sim.placed[before:]]
    assert len(redialled) == first["busy"] and not set(redialled) & completed  # a success is never redialled
    _, doc = await api.get(f"/api/call/batches/{batch}")
    assert doc["data"]["counters"]["scheduled"] == 20 and doc["data"]["retryCount"] == 1
    code, doc = await act(api, batch, "retry", {"outcomes": ["no_answer"]})
    assert code == 409 and "nothing to retry" in doc["errorMessage"]
    code, doc = await act(api, batch, "retry", {"outcomes": ["completed"]})
    assert code == 400


async def test_a_retry_whose_batch_move_fails_once_still_runs_the_calls_it_put_back(api, clock, engine_settings):
    """Found by the million-call simulation: a retry put 910 calls back in the queue of a completed batch, then its
    move of the batch to running met a store failure (a 503, never re-sent): the calls waited for ever in a batch
    no dispatcher serves. The move is tried again before the answer."""
    h = Harness(api, clock, engine_settings, outcomes={"busy": 1.0}, mean_duration=10)
    batch = await api.create_batch(concurrencyLimit=5)
    await api.add_calls(batch, nums(5))
    await h.run_until(lambda: done(h, batch))
    fault = inject(api.store.batches, "move", {1})  # the retry's move of the batch, once
    code, doc = await act(api, batch, "retry", {"outcomes": ["busy"]})
    assert fault.calls >= 2
    assert code == 200 and doc["data"]["status"] == "running" and doc["data"]["counters"]["waiting"] == 5, doc
    before = len(h.sim.placed)
    await h.run_until(lambda: done(h, batch))
    assert len(h.sim.placed) - before == 5  # redialled, not left waiting


async def test_a_scheduled_batch_starts_at_its_time_not_at_the_reapers_next_run(api, clock, engine_settings):
    """Scheduled starts waited for the reaper's run (every minute), then for the dispatcher's recheck: an
    exploratory run saw first calls 20-60 s after `scheduledAt`. The dispatcher that saw the batch (woken by its
    calls, as `make run` wires it) starts it at its time."""
    h = Harness(api, clock, engine_settings)
    api.app[INGESTION].on_enqueued = h.engines[0].dispatcher.wake  # as the composition root wires it
    start = clock.now() + dt.timedelta(seconds=90)
    batch = await api.create_batch(scheduledAt=start.strftime("%Y-%m-%dT%H:%M:%SZ"))
    await api.add_calls(batch, nums(2))
    placed_at = None
    for _ in range(120):
        await h.step()
        if h.sim.placed and placed_at is None:
            placed_at = clock.now()
    assert placed_at is not None and start <= placed_at <= start + dt.timedelta(seconds=2), (start, placed_at)


async def test_start_runs_a_scheduled_batch_early_and_double_clicks_are_harmless(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(scheduledAt="2026-12-24T15:00:00Z")
    await api.add_calls(batch, nums(2))
    for _ in range(5):
        await h.step()
    assert h.sim.placed == []
    code, doc = await act(api, batch, "start")
    assert code == 200 and doc["data"]["status"] == "running" and doc["data"]["scheduledAt"] is None
    code, doc = await act(api, batch, "start")
    assert code == 200 and doc["data"]["status"] == "running"
    await h.run_until(lambda: done(h, batch))
    assert len(h.sim.placed) == 2
    code, doc = await act(api, batch, "start")
    assert code == 409 and "completed" in doc["errorMessage"]


async def test_delete_is_refused_while_calls_are_in_flight(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, mean_duration=60)
    batch = await api.create_batch(concurrencyLimit=2)
    await api.add_calls(batch, nums(4))
    for _ in range(3):
        await h.step()
    resp = await api.client.delete(f"/api/call/batches/{batch}", headers=api.headers())
    doc = await resp.json()
    assert resp.status == 409 and "in flight" in doc["errorMessage"]
    await h.run_until(lambda: done(h, batch))
    resp = await api.client.delete(f"/api/call/batches/{batch}", headers=api.headers())
    assert resp.status == 200 and (await resp.json())["data"]["batchId"] == batch
    code, _ = await api.get(f"/api/call/batches/{batch}")
    assert code == 404
    assert await api.store.calls.page(__import__("bson").ObjectId(batch), None, None, 10) == []


async def test_list_pages_filters_and_counts(api, client, app):
    other = await make_api(client, app)
    await other.create_batch()
    ids = [await api.create_batch(name=f"b{i}") for i in range(5)]
    await api.add_calls(ids[1], nums(3))
    code, doc = await api.get("/api/call/batches?limit=2")
    assert code == 200 and [b["batchId"] for b in doc["data"]["batches"]] == [ids[4], ids[3]]
    code, doc = await api.get(f"/api/call/batches?limit=2&cursor={doc['data']['nextCursor']}")
    assert [b["batchId"] for b in doc["data"]["batches"]] == [ids[2], ids[1]]
    assert doc["data"]["batches"][1]["counters"]["scheduled"] == 3
    code, doc = await api.get("/api/call/batches?status=running")
    assert [b["batchId"] for b in doc["data"]["batches"]] == [ids[1]] and doc["data"]["nextCursor"] is None
    code, doc = await api.get(f"/api/call/batches?agentId={api.agent['_id']}&limit=100")
    assert len(doc["data"]["batches"]) == 5
    for bad in ("?status=sleeping", "?limit=0", "?limit=1000", "?limit=x", "?cursor=zz", "?agentId=nope"):
        code, doc = await api.get(f"/api/call/batches{bad}")
        assert code == 400 and doc["status"] is False, bad


@pytest.mark.parametrize("verb, body, reason", [
    ("cancel", {"hangUp": "yes"}, "hangUp must be a bool"),
    ("cancel", {"hangup": True}, "unknown fields"),
    ("retry", {"outcomes": "busy"}, "outcomes must be a list"),
    ("retry", {"outcomes": []}, "outcomes must be a non-empty list"),
    ("start", {"now": True}, "unknown fields"),
    ("stop", [1], "body must be a JSON object"),
])
async def test_bad_bodies_are_400(api, verb, body, reason):
    batch = await api.create_batch()
    code, doc = await act(api, batch, verb, body)
    assert code == 400 and reason in doc["errorMessage"]


async def test_unknown_malformed_and_foreign_batches(api, client, app):
    other = await make_api(client, app)
    theirs = await other.create_batch()
    for batch, code in (("64e5f12345abcdef98765432", 404), ("not-an-id", 404), (theirs, 403)):
        for verb in ("start", "stop", "cancel", "retry"):
            status, doc = await act(api, batch, verb)
            assert status == code and doc["code"] == code, (batch, verb)
        resp = await api.client.delete(f"/api/call/batches/{batch}", headers=api.headers())
        assert resp.status == code
    _, doc = await other.get(f"/api/call/batches/{theirs}")
    assert doc["data"]["status"] == "pending"


async def test_claims_not_yet_placed_are_never_placed_after_a_stop(api, clock, engine_settings):
    """The sharp edge of "stop means stop": calls already claimed (dial times spread by the rate) and a
    second dispatcher whose view of the running batches is a few seconds old."""
    h = Harness(api, clock, engine_settings.replace(calls_per_second=1.0), dispatchers=2, mean_duration=600)
    first, stale = h.engines
    batch = await api.create_batch(concurrencyLimit=10)
    await api.add_calls(batch, nums(20))
    await stale.dispatcher.claim(clock.now())  # reads the running batches, claims (the rate allows 3)...
    await stale.dispatcher.placer.place_due(clock.now())  # ...and places the first
    await first.dispatcher.claim(clock.now())  # the other claims too (its dial times are later still)
    assert len(h.sim.placed) == 1 and first.dispatcher.waiting_to_place + stale.dispatcher.waiting_to_place >= 2

    async def placer_keeps_working():
        for _ in range(50):
            clock.advance(0.1)
            for engine in h.engines:
                await engine.dispatcher.placer.place_due(clock.now())
            await asyncio.sleep(0.01)

    work = asyncio.ensure_future(placer_keeps_working())
    code, doc = await act(api, batch, "stop")
    assert code == 200 and doc["data"]["status"] == "paused"
    await work
    assert len(h.sim.placed) == 1  # the claims waiting for their dial time went back to the queue unplaced
    # The stale dispatcher still believes the batch runs (it re-reads batches every 5 s): it may claim,
    # but it checks again before placing, and places nothing.
    clock.advance(1)
    await stale.dispatcher.claim(clock.now())
    clock.advance(3)
    await stale.dispatcher.placer.place_due(clock.now())
    assert len(h.sim.placed) == 1
    calls = await api.all_calls(batch)
    assert Counter(c["status"] for c in calls) == {"queued": 19, "dialing": 1}
    assert {c["attempts"] for c in calls if c["status"] == "queued"} == {0}


async def test_update_raises_the_limit_and_dispatchers_follow(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, mean_duration=600)
    api.app[LIFECYCLE].on_change = h.engines[0].dispatcher.wake  # as the composition root wires make run's
    batch = await api.create_batch(concurrencyLimit=2)
    await api.add_calls(batch, nums(20))
    for _ in range(5):
        await h.step()
    assert len(h.sim.placed) == 2
    resp = await api.client.patch(f"/api/call/batches/{batch}", headers=api.headers(),
                                  json={"concurrencyLimit": 5, "name": "bigger", "retry": {"maxAttempts": 2}})
    doc = await resp.json()
    assert resp.status == 200 and doc["data"]["concurrencyLimit"] == 5 and doc["data"]["name"] == "bigger"
    assert doc["data"]["retry"]["maxAttempts"] == 2
    for _ in range(3):  # woken, the dispatcher reads the running batches again and sees the new limit
        await h.step()
    assert len(h.sim.placed) == 5 and h.peak[batch] == 5


async def test_update_of_the_window_makes_waiting_calls_due(api, clock, engine_settings):
    import datetime as dt

    clock.set(dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.timezone.utc))  # 15:00 in New York
    h = Harness(api, clock, engine_settings)
    api.app[LIFECYCLE].on_change = h.engines[0].dispatcher.wake
    batch = await api.create_batch(callingWindow={"start": "18:00", "end": "20:00"})
    await api.add_calls(batch, nums(2))
    for _ in range(5):
        await h.step()
    assert h.sim.placed == []
    resp = await api.client.patch(f"/api/call/batches/{batch}", headers=api.headers(),
                                  json={"callingWindow": {"start": "09:00", "end": "17:00"}})
    assert resp.status == 200
    for _ in range(3):
        await h.step()
    assert len(h.sim.placed) == 2


@pytest.mark.parametrize("body, reason", [
    ({}, "body must be a JSON object"),
    ({"concurrencyLimit": 0}, "concurrencyLimit"),
    ({"callingWindow": {"start": "25:00"}}, "callingWindow"),
    ({"agentId": "x"}, "unchangeable"),
    ({"retry": {"on": ["completed"]}}, "retry.on"),
    ([], "body must be a JSON object"),
])
async def test_update_refuses_bad_bodies(api, body, reason):
    batch = await api.create_batch()
    resp = await api.client.patch(f"/api/call/batches/{batch}", headers=api.headers(), json=body)
    doc = await resp.json()
    assert resp.status == 400 and reason in doc["errorMessage"]


async def test_a_cancelled_batch_cannot_change(api, clock):
    batch = await api.create_batch()
    code, _ = await act(api, batch, "cancel")
    assert code == 200
    resp = await api.client.patch(f"/api/call/batches/{batch}", headers=api.headers(), json={"name": "x"})
    assert resp.status == 409


async def test_claims_a_stale_dispatcher_makes_during_a_cancel_end_cancelled_not_queued(api, clock, engine_settings):
    """A dispatcher whose view of the running batches is a few seconds old claims calls while the cancel
    is withdrawing the waiting ones (between two of its chunks); handed back, they must not stay queued."""
    h = Harness(api, clock, engine_settings.replace(calls_per_second=1.0), mean_duration=600)
    [stale] = h.engines
    batch = await api.create_batch(concurrencyLimit=10)
    await api.add_calls(batch, nums(1500))
    await stale.dispatcher.claim(clock.now())  # it has read the running batches (cached for 5 s)
    clock.advance(3)
    await stale.dispatcher.placer.place_due(clock.now())
    placed = len(h.sim.placed)
    withdraw = api.store.calls.withdraw

    async def withdraw_while_a_stale_dispatcher_claims(batch_id, now, entry, limit):
        done = await withdraw(batch_id, now, entry, limit)
        stale.dispatcher._idle_until = None  # (it would look again soon anyway)
        await stale.dispatcher.claim(clock.now())  # claims from what is still queued
        return done

    api.store.calls.withdraw = withdraw_while_a_stale_dispatcher_claims
    code, doc = await act(api, batch, "cancel")
    api.store.calls.withdraw = withdraw
    assert code == 200
    clock.advance(5)
    await stale.dispatcher.placer.place_due(clock.now())  # sees the batch cancelled: hands them back
    assert len(h.sim.placed) == placed
    statuses = Counter(c["status"] for c in await api.all_calls(batch))
    assert statuses["queued"] == 0 and statuses["cancelled"] == 1500 - placed  # none left waiting for ever


async def test_a_cancel_cut_short_by_a_crash_is_finished_by_its_retry(api, clock):
    """Its process died between the cancel's move and the withdrawal (found by tests/test_crash.py): the
    batch is cancelled and its calls still wait. The partner, who got no answer, retries the cancel: the
    retry withdraws them and answers as a repeated cancel does."""
    batch = await api.create_batch()
    await api.add_calls(batch, nums(5))
    assert await api.store.batches.move(ObjectId(batch), machine.CANCEL, clock.now())  # all it did
    code, doc = await act(api, batch, "cancel")
    assert code == 409 and doc["data"]["status"] == "cancelled"
    assert Counter(c["status"] for c in await api.all_calls(batch)) == {"cancelled": 5}


async def test_a_cancel_cut_short_and_never_retried_is_finished_by_the_reaper(api, clock, engine_settings):
    """As above, but no retry comes (the operator closed the page): the reaper's look at batches changed
    lately finds the cancelled batch with calls waiting and withdraws them."""
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch()
    await api.add_calls(batch, nums(5))
    assert await api.store.batches.move(ObjectId(batch), machine.CANCEL, clock.now())  # all it did
    clock.advance(60)
    for _ in range(reaper.HOUSEKEEPING_EVERY):  # the reconciliation runs every few reaper runs
        await h.engines[0].reaper.run()
    assert Counter(c["status"] for c in await api.all_calls(batch)) == {"cancelled": 5}
    _, doc = await api.get(f"/api/call/batches/{batch}")
    assert doc["data"]["counters"]["byStatus"].get("queued", 0) == 0


async def test_claims_of_a_dead_dispatcher_in_a_cancelled_batch_end_cancelled_not_queued(api, clock, engine_settings):
    """A dispatcher claims calls and dies before placing them; the batch is cancelled meanwhile. The
    reaper finds them unplaced and puts them back: in a cancelled batch they must be withdrawn, not
    left queued for ever."""
    h = Harness(api, clock, engine_settings.replace(calls_per_second=1.0))
    batch = await api.create_batch(concurrencyLimit=5)
    await api.add_calls(batch, nums(5))
    await h.engines[0].dispatcher.claim(clock.now())  # then the process dies
    api.app[LIFECYCLE].settle_seconds = 0.1  # the cancel gives up waiting for the dead claims
    code, doc = await act(api, batch, "cancel")
    assert code == 200 and 0 < doc["data"]["counters"]["inFlight"] < 5
    h.engines = [h.new_engine("survivor")]
    clock.advance(300)  # past the lease
    await h.engines[0].reaper.run()
    assert Counter(c["status"] for c in await api.all_calls(batch)) == {"cancelled": 5} and not h.sim.placed
