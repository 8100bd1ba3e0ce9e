"""The MongoDB repositories when a write fails part-way, as a real server's can and mongomock's never
does (faults injected around the driver, tests/mongo_rules.py): a BulkWriteError naming some of the
ops, a timeout after the write was applied (the client cannot know it was), a crash that lost counter
increments."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import ObjectId
from pymongo.errors import NetworkTimeout

from dialer.core.clock import FixedClock
from dialer.core.machine import COMPLETE
from dialer.ports import StoreUnavailable, Tally
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
    recounts = count_calls(repos.calls, "recount")
    assert await reconciler.run() == 0  # seen once: may be a transition between its two writes
    assert await reconciler.run() == 1
    assert set(await repos.calls.tallies(batch["_id"])) == {Tally("queued", None, 2, 0, 0), Tally("busy", "busy", 1, 1, 1)}
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
