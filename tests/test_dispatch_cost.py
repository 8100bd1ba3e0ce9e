"""The dispatcher's cost: independent of batches that cannot take a call and of batches with nothing due.
Counted as the repository calls it makes (each one a database round trip with MongoDB)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from bson import ObjectId

from dialer.api.appkeys import INGESTION
from tests.dispatch_harness import Harness, nums

UTC = dt.timezone.utc


def count_due(repos) -> Counter:
    """Counts the reads of each batch's due calls from now on (`calls.due`, or its part of `calls.due_many` or of
    `calls.look`, the read with the slots)."""
    counts: Counter = Counter()
    original, original_many, original_look = repos.calls.due, repos.calls.due_many, repos.calls.look

    async def due(batch_id, now, limit):
        counts[str(batch_id)] += 1
        return await original(batch_id, now, limit)

    async def due_many(wanted, now):
        for batch_id, limit in wanted.items():
            counts[str(batch_id)] += limit > 0
        return await original_many(wanted, now)

    async def look(batch_ids, wanted, now, *args):
        for batch_id, limit in wanted.items():
            counts[str(batch_id)] += limit > 0
        return await original_look(batch_ids, wanted, now, *args)

    repos.calls.due = due
    repos.calls.due_many = due_many
    repos.calls.look = look
    return counts


async def test_batches_the_account_cannot_serve_are_not_read(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings.replace(max_concurrent_calls=4), outcomes={"no_answer": 1.0})
    batches = [await api.create_batch(concurrencyLimit=10, ringingTimeoutSeconds=600) for _ in range(20)]
    for i, batch in enumerate(batches):
        await api.add_calls(batch, nums(10, str(201 + i)))
    due = count_due(api.store)
    await h.step()
    await h.step()
    assert len(h.sim.placed) == 4
    assert sum(due.values()) <= 4  # only the batches the four free slots were shared out to
    due.clear()
    for _ in range(60):  # the account is full: a minute of ticks reads no batch's calls
        await h.step()
    assert sum(due.values()) == 0 and len(h.sim.placed) == 4


async def test_a_batch_waiting_for_its_window_is_left_alone_until_it_opens(api, clock, engine_settings):
    clock.set(dt.datetime(2026, 11, 23, 11, 0, tzinfo=UTC))  # 06:00 in New York
    h = Harness(api, clock, engine_settings, mean_duration=20)
    waiting = await api.create_batch(callingWindow={"start": "09:00", "end": "17:00"})
    busy = await api.create_batch(callingWindow={"start": "00:00", "end": "24:00"})
    await api.add_calls(waiting, nums(5, "212"))
    await api.add_calls(busy, nums(40, "305"))
    due = count_due(api.store)
    for _ in range(600):  # ten minutes of 1 s ticks
        await h.step()
    assert due[waiting] <= 1 + 600 // 30  # looked at once, then every 30 s at most
    assert Counter(r.batch_id for r in h.sim.placed) == {busy: 40}
    # New calls: the batch is looked at again at once (enqueueing wakes the dispatcher, which re-reads
    # the batches and sees their enqueuedAt move, as a dispatcher in another process does within 5 s).
    api.app[INGESTION].on_enqueued = h.engines[0].dispatcher.wake
    code, _ = await api.add_calls(waiting, nums(1, "213"))
    assert code == 200
    before = due[waiting]
    await h.step()
    assert due[waiting] == before + 1
    clock.set(dt.datetime(2026, 11, 23, 14, 0, tzinfo=UTC))  # 09:00 in New York: the window opens
    await h.run_until(lambda: _completed(h, waiting), seconds=30)
    assert min(w for w, n in h.placements if n.startswith("+1212")) == dt.datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


async def _completed(h, batch):
    return await h.batch_status(batch) == "completed"


async def test_a_retry_brings_a_quiet_batch_back(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"busy": 1.0})
    batch = await api.create_batch(concurrencyLimit=5, retry={"maxAttempts": 2, "delaySeconds": 60, "on": ["busy"]})
    await api.add_calls(batch, nums(1, "212"))
    await h.run_until(lambda: _completed(h, batch), seconds=5)
    assert len(h.sim.placed) == 2  # the retry was found although the batch had had nothing due
    [call] = await api.all_calls(batch)
    assert call["attempts"] == 2 and ObjectId(call["batchId"]) == ObjectId(batch)


async def test_many_batches_share_the_account_in_turn(api, clock, engine_settings):
    """30 batches, room for 10 calls at a time: each wave of freed slots goes to the batches served longest
    ago, so after three waves every batch has had exactly one call (none twice while another had none)."""
    h = Harness(api, clock, engine_settings.replace(max_concurrent_calls=10), outcomes={"no_answer": 1.0})
    batches = [await api.create_batch(concurrencyLimit=10, ringingTimeoutSeconds=60) for _ in range(30)]
    for i, batch in enumerate(batches):  # New York numbers: every callee's window open
        await api.add_calls(batch, [{"phoneNumber": f"+1212555{i:02d}{j:02d}"} for j in range(5)])
    await h.run_until(lambda: _placed(h, 30), seconds=1)
    assert Counter(r.batch_id for r in h.sim.placed) == {b: 1 for b in batches}
    await h.run_until(lambda: _placed(h, 60), seconds=1)
    assert Counter(r.batch_id for r in h.sim.placed) == {b: 2 for b in batches}


async def _placed(h, n):
    return len(h.sim.placed) >= n


async def test_a_batch_given_calls_by_another_process_is_picked_up_within_the_recheck_time(
        api, clock, engine_settings):
    """The dispatcher re-reads only the batches changed or given calls since its last look: a batch that
    had finished gets calls from another process (nothing wakes this dispatcher), and is served within the
    recheck interval (plus one look interval), as before, while another batch keeps it busy or not."""
    h = Harness(api, clock, engine_settings, mean_duration=600)
    busy = await api.create_batch(concurrencyLimit=2)
    quiet = await api.create_batch(concurrencyLimit=2)
    await api.add_calls(busy, nums(20, "305"))
    await api.add_calls(quiet, nums(1, "212"))
    await h.run_until(lambda: _is(h, quiet, "completed"), seconds=1)
    config = h.engines[0].dispatcher.config
    for n in range(2):
        before = len(h.sim.placed)
        code, _ = await api.add_calls(quiet, [{"phoneNumber": f"+1212666000{n}"}])  # not woken: another process
        assert code == 200 and await h.batch_status(quiet) == "running"
        steps = await h.run_until(lambda: _has_placed(h, quiet, before), seconds=1)
        assert steps <= config.recheck_seconds + config.batch_cache_seconds + 1
        await h.run_until(lambda: _is(h, quiet, "completed"), seconds=10)


async def _has_placed(h, batch, before):
    return any(r.batch_id == batch for r in h.sim.placed[before:])


async def _is(h, batch, status):
    return await h.batch_status(batch) == status



async def test_the_events_of_many_batches_read_no_batch_of_their_own(api, clock, engine_settings):
    """Every final event needs its batch's retry policy: the dispatcher in the same process reads the running
    batches anyway, and what it reads serves the events, so they cost no batch read each (they did once a
    batch's cached policy was a minute old: with many batches, on almost every call)."""
    h = Harness(api, clock, engine_settings, outcomes={"no_answer": 1.0})
    batches = [await api.create_batch(concurrencyLimit=1, ringingTimeoutSeconds=90) for _ in range(10)]
    for i, batch in enumerate(batches):
        await api.add_calls(batch, [{"phoneNumber": f"+1212555{i:02d}{j:02d}"} for j in range(3)])
    gets = Counter()
    original = api.store.batches.get

    async def get(batch_id):
        gets[str(batch_id)] += 1
        return await original(batch_id)

    api.store.batches.get = get
    for _ in range(300):  # each batch rings its three callees 90 s each in turn: past the policies' 60 s cache
        await h.step()
    api.store.batches.get = original
    assert len(h.sim.placed) == 30
    assert sum(gets.values()) <= len(batches)


def count_calls(repo, *methods: str) -> Counter:
    """Counts the calls of these methods of one repository from now on."""
    counts: Counter = Counter()
    for method in methods:
        original = getattr(repo, method)

        def counted(*args, _original=original, _method=method, **kwargs):
            counts[_method] += 1
            return _original(*args, **kwargs)

        setattr(repo, method, counted)
    return counts


async def test_a_claim_placed_over_several_rounds_reads_the_lists_and_records_its_calls_once(
        api, clock, engine_settings):
    """At 2 calls/s a claim of five calls has dial times 0.5 s apart: five placement rounds. The do-not-call
    lists are read once for the claim (its numbers, by the claim's own write, after it), and the provider ids
    are written once, with its last call; until then the claim's calls count as unplaced (a stop waits)."""
    h = Harness(api, clock, engine_settings.replace(calls_per_second=2.0), mean_duration=600)
    batch = await api.create_batch(concurrencyLimit=5)
    await api.add_calls(batch, nums(5))
    lists = count_calls(api.store.dnc, "listed")
    records = count_calls(api.store.calls, "record_placed", "claim")
    await h.step(0.5)
    assert len(h.sim.placed) == 1 and h.engines[0].dispatcher.waiting_to_place == 4
    for _ in range(3):
        await h.step(0.5)
    assert len(h.sim.placed) == 4 and records["record_placed"] == 0
    assert await api.store.calls.unplaced(ObjectId(batch)) == 5
    await h.step(0.5)
    assert len(h.sim.placed) == 5 and await api.store.calls.unplaced(ObjectId(batch)) == 0
    assert lists["listed"] == 0 and records["claim"] == 1 and records["record_placed"] == 1
    assert all(c["providerCallId"] for c in await api.store.calls.in_flight(ObjectId(batch)))


async def test_the_reaper_purges_expired_records_every_fifth_run_not_every_run(api, clock, engine_settings):
    """The purges are housekeeping (the readers check expiry themselves): with the recount, every fifth run."""
    h = Harness(api, clock, engine_settings)
    purges = count_calls(api.store.idempotency, "purge")
    caps = count_calls(api.store.caps, "purge")
    passes = count_calls(api.store.batches, "updated_since")  # the counters' pass reads the batches changed lately
    batch = await api.create_batch()
    await api.add_calls(batch, nums(2))
    for _ in range(10):
        await h.engines[0].reaper.run()
        clock.advance(60)
    assert purges["purge"] == 2 and caps["purge"] == 2 and passes["updated_since"] == 2


async def test_a_call_ending_reads_the_slots_of_its_batch_not_of_every_batch_waiting(api, clock, engine_settings):
    """60 batches of limit 1, each waiting on its one slot: a look after a call ended used to read the slots of all
    of them (the cost of a look grew with the batches running); now of the batch told of, the others at the
    dispatcher's recheck (a minute here: every call's end is an event in its process)."""
    h = Harness(api, clock, engine_settings, mean_duration=20)
    for i in range(60):
        batch = await api.create_batch(concurrencyLimit=1)
        await api.add_calls(batch, [{"phoneNumber": f"+1212555{i:02d}{j:02d}"} for j in range(5)])
    await h.step()
    await h.step()
    assert len(h.sim.placed) == 60  # every batch holds its slot: all of them wait
    scoped: list[int] = []
    everything = 0
    read, look = api.store.ledger.read, api.store.calls.look

    def count(batch_ids) -> None:
        nonlocal everything
        if batch_ids is None:
            everything += 1  # a look at every batch (the metrics' gauges made one every 5 s until session 13)
        else:
            scoped.append(len(batch_ids))

    async def counting(batch_ids=None, *args):
        count(batch_ids)
        return await read(batch_ids, *args)

    async def counting_look(batch_ids, wanted, now, *args):  # the slots read with the due calls
        count(batch_ids)
        return await look(batch_ids, wanted, now, *args)

    api.store.ledger.read, api.store.calls.look = counting, counting_look
    for _ in range(50):
        await h.step()
    ended = len(h.sim.placed) - 60
    assert ended >= 40 and everything == 0  # the gauges of calls in flight are read at the scrape
    assert sum(scoped) <= 3 * ended, (sum(scoped), ended)  # before: ~60 batches read per call ended


async def test_a_freed_group_of_slots_is_claimed_with_one_read_and_one_write(api, clock, engine_settings):
    """In the steady state (calls ending one by one in the dispatcher's process), a claim reads the slots and its
    batch's due calls in one store operation (CallRepo.look), then writes: no second read of the due calls."""
    h = Harness(api, clock, engine_settings.replace(calls_per_second=50.0), mean_duration=20)
    batch = await api.create_batch(concurrencyLimit=25)  # claims of 1 call (4% of 25)
    await api.add_calls(batch, nums(120))
    await h.step()
    await h.step()
    assert len(h.sim.placed) == 25
    ops = count_calls(api.store.calls, "look", "due_many", "claim")
    reads = count_calls(api.store.ledger, "read")
    while len(h.sim.placed) < 120:
        await h.step()
    assert ops["claim"] >= 50 and ops["due_many"] <= 2, ops  # before: one due_many per claim
    assert ops["look"] + reads["read"] <= ops["claim"] + 5, (ops, reads)  # a look per claim
