"""The MongoDB repositories when a write fails part-way, as a real server's can and mongomock's never
does (faults injected around the driver, tests/mongo_rules.py): a BulkWriteError naming some of the
ops, a timeout after the write was applied (the client cannot know it was)."""

from __future__ import annotations

import datetime as dt

import pytest
from pymongo.errors import NetworkTimeout

from dialer.ports import StoreUnavailable, Tally
from tests.contract.conftest import T0, batch_doc, planned
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
