"""The MongoDB repositories when a write fails part-way, as a real server's can and mongomock's never
does (faults injected around the driver, tests/mongo_rules.py): a BulkWriteError naming some of the
ops, a timeout after the write was applied (the client cannot know it was), a crash that lost counter
increments. Each answer is checked against the calls themselves (the counters against a recount)."""

from __future__ import annotations

import pytest
from bson import ObjectId
from pymongo.errors import NetworkTimeout, ServerSelectionTimeoutError

from dialer.core.clock import FixedClock
from dialer.core.machine import COMPLETE
from dialer.ports import Claim, PlacedRecord, StoreUnavailable, Tally
from dialer.services.counters import CounterReconciler
from tests.contract.conftest import T0, at, batch_doc, planned
from tests.mongo_rules import After, Refuse, filter_of, rules_repositories


def phones(prefix: str, n: int) -> list:
    return [planned(f"+1{prefix}555{i:04d}") for i in range(n)]


async def stored_batch(repos, **fields) -> dict:
    batch = batch_doc(**fields)
    await repos.batches.insert(batch)
    return batch


# ---- counters --------------------------------------------------------------------------------------

async def test_counter_increments_a_bulk_write_refused_are_written_once_the_others_never_again():
    repos, db = await rules_repositories()
    a, b = await stored_batch(repos), await stored_batch(repos)
    await repos.calls.enqueue(a, phones("212", 2), T0)
    await repos.calls.enqueue(b, phones("305", 3), T0)
    db["batches"].faults["bulk_write"] = [Refuse(lambda op: filter_of(op)["_id"] == b["_id"])]
    with pytest.raises(StoreUnavailable):
        await repos.calls.tallies(a["_id"])  # the flush before the read failed for b's increments
    assert await repos.calls.tallies(a["_id"]) == [Tally("queued", None, 2, 0, 0)]  # a's landed, and only once
    assert await repos.calls.tallies(b["_id"]) == [Tally("queued", None, 3, 0, 0)]  # b's kept, and written now
    await repos.close()


async def test_counter_increments_whose_write_timed_out_are_not_written_again():
    repos, db = await rules_repositories()
    batch = await stored_batch(repos)
    await repos.calls.enqueue(batch, phones("212", 2), T0)
    db["batches"].faults["bulk_write"] = [After(NetworkTimeout("timed out"))]  # applied, then the answer lost
    with pytest.raises(StoreUnavailable):
        await repos.calls.tallies(batch["_id"])
    assert await repos.calls.tallies(batch["_id"]) == [Tally("queued", None, 2, 0, 0)]
    await repos.close()


async def test_drift_in_a_batch_that_completed_is_repaired_and_then_left_alone():
    repos, db = await rules_repositories()
    batch = await stored_batch(repos)
    await repos.calls.enqueue(batch, phones("212", 2), T0)
    # A crash between a call's write and its counter's: the call is there, its increment is not.
    await db.db["calls"].insert_one({"_id": ObjectId(), "batchId": batch["_id"], "status": "busy", "outcome": "busy",
                                     "attempts": 1, "phoneNumber": "+13055550000"})
    assert await repos.batches.move(batch["_id"], COMPLETE, at(600), {"completedAt": at(600)})
    clock = FixedClock(at(900))
    reconciler = CounterReconciler(repos.batches, repos.calls, clock)  # a process started after the completion
    recounts = count_calls(repos.calls, "audit_many")
    assert await reconciler.run() == 0  # seen once: may be a transition between its two writes
    assert await reconciler.run() == 1
    assert set(await repos.calls.tallies(batch["_id"])) == {Tally("queued", None, 2, 0, 0),
                                                            Tally("busy", "busy", 1, 1, 1)}
    assert await reconciler.run() == 0 and recounts() == 3  # right with nothing in flight: settled
    assert await reconciler.run() == 0 and recounts() == 3  # ... and not counted again while it is unchanged
    await repos.close()


def count_calls(repo, method: str):
    original, calls = getattr(repo, method), []

    async def counted(*args, **kwargs):
        calls.append(args)
        return await original(*args, **kwargs)

    setattr(repo, method, counted)
    return lambda: len(calls)


# ---- claims and withdrawals: what landed is read back -----------------------------------------------

def is_claim_of(call_id: ObjectId):
    return lambda op: filter_of(op) == {"_id": call_id, "status": "queued"}


async def claim(repos, *call_ids: ObjectId, records=(), token: str = "tok-1") -> set[ObjectId]:
    claims = [Claim(c, token, "dispatcher-a", T0, at(120)) for c in call_ids]
    return (await repos.calls.claim(claims, [], list(records), T0)).won


async def test_a_claim_refused_in_part_reports_the_claims_that_landed():
    repos, db = await rules_repositories()
    batch = await stored_batch(repos)
    a, b, c = [ObjectId(i) for i in (await repos.calls.enqueue(batch, phones("212", 3), T0)).call_ids]
    db["calls"].faults["bulk_write"] = [Refuse(is_claim_of(c))]
    assert await claim(repos, a, b, c) == {a, b}  # to be placed now, not left dialing until their lease ends
    assert (await repos.calls.get(c))["status"] == "queued"
    assert set(await repos.calls.tallies(batch["_id"])) == {Tally("dialing", None, 2, 2, 2),
                                                            Tally("queued", None, 1, 0, 0)}
    await repos.close()


async def claim_as_seen(repos, batch, token: str = "tok-1") -> tuple[set[ObjectId], int]:
    """A claim of every due call, written on what the due read saw (as the dispatcher's): (won, finds of the calls
    the claim made after its write)."""
    due = await repos.calls.due(batch["_id"], T0, 10)
    claims = [Claim(c["_id"], token, "dispatcher-a", T0, at(120), None, (c["batchId"], c.get("outcome"), c["attempts"]))
              for c in due]
    finds = []
    find = repos.calls.c.find
    repos.calls.c.find = lambda *args, **kwargs: finds.append(args) or find(*args, **kwargs)
    try:
        return (await repos.calls.claim(claims, [], [], T0)).won, len(finds)
    finally:
        repos.calls.c.find = find


async def test_a_claim_whose_every_op_matched_is_not_read_back_and_counts_each_call_once():
    repos, db = await rules_repositories()
    batch = await stored_batch(repos)
    ids = {ObjectId(i) for i in (await repos.calls.enqueue(batch, phones("212", 3), T0)).call_ids}
    assert await claim_as_seen(repos, batch) == (ids, 0)  # before: one read of the three calls after the write
    assert await repos.calls.tallies(batch["_id"]) == [Tally("dialing", None, 3, 3, 3)]
    assert await repos.calls.tallies(batch["_id"]) == await repos.calls.recount(batch["_id"])
    await repos.close()


async def test_a_claim_of_a_call_changed_since_the_due_read_reads_back_what_landed():
    repos, db = await rules_repositories()
    batch = await stored_batch(repos)
    a, b = [ObjectId(i) for i in (await repos.calls.enqueue(batch, phones("212", 2), T0)).call_ids]
    due = await repos.calls.due(batch["_id"], T0, 10)
    await repos.calls.c.update_one({"_id": b}, {"$set": {"outcome": "no_answer"}})  # changed under the claim
    claims = [Claim(c["_id"], "tok-1", "dispatcher-a", T0, at(120), None, (c["batchId"], c.get("outcome"), c["attempts"]))
              for c in due]
    assert (await repos.calls.claim(claims, [], [], T0)).won == {a}
    assert (await repos.calls.get(b))["status"] == "queued"
    await repos.close()


async def test_a_claim_that_timed_out_once_applied_reports_every_claim_and_counts_each_once():
    repos, db = await rules_repositories()
    batch = await stored_batch(repos)
    ids = [ObjectId(i) for i in (await repos.calls.enqueue(batch, phones("212", 3), T0)).call_ids]
    db["calls"].faults["bulk_write"] = [After(NetworkTimeout("timed out"))]
    assert await claim(repos, *ids) == set(ids)
    assert await repos.calls.tallies(batch["_id"]) == [Tally("dialing", None, 3, 3, 3)]
    assert await repos.calls.tallies(batch["_id"]) == await repos.calls.recount(batch["_id"])
    db["calls"].faults["bulk_write"] = [ServerSelectionTimeoutError("no primary")]  # nothing was sent
    with pytest.raises(StoreUnavailable):
        await claim(repos, ids[0], token="tok-2")
    await repos.close()


async def test_a_placed_record_refused_with_a_claim_is_written_again():
    repos, db = await rules_repositories()
    batch = await stored_batch(repos)
    a, b = [ObjectId(i) for i in (await repos.calls.enqueue(batch, phones("212", 2), T0)).call_ids]
    assert await claim(repos, a) == {a}
    record = PlacedRecord(a, "tok-1", "CA-a", at(2), at(240))  # its own write failed: it rides on the next claim
    db["calls"].faults["bulk_write"] = [Refuse(lambda op: "claimToken" in filter_of(op))]
    assert await claim(repos, b, records=[record], token="tok-2") == {b}
    placed = await repos.calls.get(a)
    assert placed["providerCallId"] == "CA-a" and [h["event"] for h in placed["history"]] == ["placed"]
    assert await repos.calls.unplaced(batch["_id"]) == 1  # b only: a stop does not wait for a
    await repos.close()


async def test_a_withdrawal_that_failed_part_way_counts_what_landed_and_goes_on():
    repos, db = await rules_repositories()
    batch = await stored_batch(repos)
    a, b, c = [ObjectId(i) for i in (await repos.calls.enqueue(batch, phones("212", 3), T0)).call_ids]
    entry = {"at": at(5), "event": "batch_cancelled"}
    db["calls"].faults["bulk_write"] = [Refuse(lambda op: filter_of(op)["_id"] == c),
                                        After(NetworkTimeout("timed out"))]
    assert await repos.calls.withdraw(batch["_id"], at(5), entry, 10) == 2
    assert await repos.calls.withdraw(batch["_id"], at(5), entry, 10) == 1  # the rest, though its answer was lost
    assert await repos.calls.withdraw(batch["_id"], at(5), entry, 10) == 0
    assert await repos.calls.tallies(batch["_id"]) == [Tally("cancelled", "cancelled", 3, 0, 0)]
    await repos.calls.enqueue(batch, phones("305", 1), T0)
    db["calls"].faults["bulk_write"] = [Refuse(lambda op: True)]
    with pytest.raises(StoreUnavailable):  # nothing withdrawn: not "none left"
        await repos.calls.withdraw(batch["_id"], at(5), entry, 10)
    await repos.close()
