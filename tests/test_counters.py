"""Batch counters kept by the transitions, and their repair after a crash (MongoDB repositories on the
test double: there a transition and its counter increment are two writes, so a crash can split them)."""

from __future__ import annotations

import datetime as dt

from dialer.core.statuses import BatchStatus
from dialer.ports import Tally, difference
from dialer.services.counters import CounterReconciler
from dialer.store.mongo.testing import mongomock_repositories
from tests.contract.conftest import batch_doc, planned
from dialer.core.clock import FixedClock

T0 = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.timezone.utc)


async def test_drift_left_by_a_crash_is_repaired_on_the_second_look():
    repos = await mongomock_repositories()
    clock = FixedClock(T0)
    batch = batch_doc(status=BatchStatus.RUNNING.value)
    await repos.batches.insert(batch)
    await repos.calls.enqueue(batch, [planned(f"+1212555{i:04d}") for i in range(5)], T0)
    assert await repos.calls.tallies(batch["_id"]) == [Tally("queued", None, 5, 0, 0)]
    # A crash between the calls' write and their counters' write: the next chunk's increments are lost.
    await repos.calls.enqueue(batch, [planned(f"+1305555{i:04d}") for i in range(3)], T0)
    repos.calls.counters._pending.clear()
    assert await repos.calls.tallies(batch["_id"]) == [Tally("queued", None, 5, 0, 0)]
    reconciler = CounterReconciler(repos.batches, repos.calls, clock)
    assert await reconciler.run() == 0  # seen once: may be a transition between its two writes
    assert await reconciler.run() == 1  # seen again: drift, corrected by an increment
    assert await repos.calls.tallies(batch["_id"]) == [Tally("queued", None, 8, 0, 0)]
    assert await reconciler.run() == 0
    await repos.close()


async def test_a_difference_that_resolves_itself_is_not_corrected():
    repos = await mongomock_repositories()
    clock = FixedClock(T0)
    batch = batch_doc(status=BatchStatus.RUNNING.value)
    await repos.batches.insert(batch)
    await repos.calls.enqueue(batch, [planned("+12125550100")], T0)
    held = dict(repos.calls.counters._pending)  # the increment is in flight, not yet written
    repos.calls.counters._pending.clear()
    reconciler = CounterReconciler(repos.batches, repos.calls, clock)
    assert await reconciler.run() == 0
    for batch_id, inc in held.items():
        repos.calls.counters.add(batch_id, inc)  # ...and lands
    assert await reconciler.run() == 0
    assert await repos.calls.tallies(batch["_id"]) == [Tally("queued", None, 1, 0, 0)]
    await repos.close()


def test_difference_is_per_status_and_outcome():
    assert difference([Tally("queued", None, 3, 0, 0)], [Tally("queued", None, 3, 0, 0)]) == []
    assert difference([Tally("busy", "busy", 1, 1, 2)], [Tally("queued", None, 1, 0, 0)]) == [
        Tally("busy", "busy", 1, 1, 2), Tally("queued", None, -1, 0, 0)]


async def test_a_pass_over_many_small_batches_costs_a_few_reads_and_still_repairs_each(monkeypatch):
    """The reconciliation of 450 running batches of one call each: a handful of port calls, not one recount per
    batch (it was the most of the port calls per placed call with one-call batches); a large batch is recounted
    alone; drift in any of them is still found and repaired."""
    import dialer.services.counters as counters

    repos = await mongomock_repositories()
    batches = [batch_doc() for _ in range(450)]
    for i, batch in enumerate(batches):
        await repos.batches.insert(batch)
        await repos.calls.enqueue(batch, [planned(f"+1212555{i:04d}")], T0)
    await repos.calls.counters.flush()
    await repos.calls.enqueue(batches[7], [planned("+13055550000")], T0)
    repos.calls.counters._pending.clear()  # a crash lost the last increment of batch 7
    audits: list[int] = []
    audit_many = repos.calls.audit_many

    async def counted(batch_ids):
        audits.append(len(batch_ids))
        return await audit_many(batch_ids)

    repos.calls.audit_many = counted
    reconciler = CounterReconciler(repos.batches, repos.calls, FixedClock(T0))
    assert await reconciler.run() == 0 and audits == [200, 200, 50]  # seen once
    assert await reconciler.run() == 1  # seen again: repaired
    assert await repos.calls.tallies(batches[7]["_id"]) == [Tally("queued", None, 2, 0, 0)]
    monkeypatch.setattr(counters, "AUDIT_CALLS", 300)
    big = batch_doc()
    await repos.batches.insert(big)
    await repos.calls.enqueue(big, [planned(f"+1415555{i:04d}") for i in range(400)], T0)
    await repos.calls.counters.flush()
    audits.clear()
    await reconciler.run()
    assert audits == [200, 200, 50, 1]  # the large batch (400 calls, more than 300) recounted alone
    await repos.close()


async def test_with_tallies_kept_in_the_calls_transaction_nothing_is_recounted(tmp_path):
    """SQLite keeps the tallies by triggers in the calls' own transaction: they cannot drift, so the pass
    recounts no running batch (its cost does not grow with them) and still finds a cancel cut short."""
    from dialer.store.sqlite import open_sqlite

    repos = await open_sqlite(str(tmp_path / "dialer.db"))
    running, cancelled = batch_doc(), batch_doc(status=BatchStatus.CANCELLED.value)
    for i, batch in enumerate((running, cancelled)):
        await repos.batches.insert({**batch, "updatedAt": T0})
        await repos.calls.enqueue(batch, [planned(f"+1212555{i}{j:03d}") for j in range(3)], T0)
    audits = []
    audit_many = repos.calls.audit_many

    async def counted(batch_ids):
        audits.append(batch_ids)
        return await audit_many(batch_ids)

    repos.calls.audit_many = counted
    assert repos.calls.tallies_exact
    reconciler = CounterReconciler(repos.batches, repos.calls, FixedClock(T0))
    assert await reconciler.run() == 0 and audits == []
    assert await repos.calls.tallies(running["_id"]) == [Tally("queued", None, 3, 0, 0)]
    # the cancelled batch's waiting calls (its cancel was cut short) are withdrawn
    assert await repos.calls.tallies(cancelled["_id"]) == [Tally("cancelled", "cancelled", 3, 0, 0)]
    await repos.close()


async def test_a_cancel_cut_short_just_before_the_clock_jumps_days_is_still_found(tmp_path):
    """The reconciliation looks back a day before its last pass, not only before now: a cancel cut short between
    two passes whose clock jumped three days (a simulation over quiet days, a machine asleep) is found."""
    from dialer.store.sqlite import open_sqlite

    repos = await open_sqlite(str(tmp_path / "dialer.db"))
    clock = FixedClock(T0)
    reconciler = CounterReconciler(repos.batches, repos.calls, clock)
    assert await reconciler.run() == 0
    clock.advance(3600)
    cut_short = batch_doc(status=BatchStatus.CANCELLED.value)  # moved, its waiting calls not withdrawn
    await repos.batches.insert({**cut_short, "updatedAt": clock.now()})
    await repos.calls.enqueue(cut_short, [planned(f"+1212555{j:04d}") for j in range(3)], clock.now())
    clock.advance(3 * 86400)
    await reconciler.run()
    assert await repos.calls.tallies(cut_short["_id"]) == [Tally("cancelled", "cancelled", 3, 0, 0)]
    await repos.close()
