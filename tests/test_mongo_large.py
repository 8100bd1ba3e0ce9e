"""The MongoDB repositories on large collections, under a server's rules (tests/mongo_rules.py): every
operation's time grows with what it examines and is bounded by the timeout in force, as on a real
server with the client's timeoutMS (30 s here, a quarter of the default lease).

Sizes are scaled down by ten: a document examined costs 100 ms, so an operation under the client's
timeout may examine 300, and the chunks the repositories and services use (1,000) are patched to 100.
"""

from __future__ import annotations

import logging

import pytest
from bson import ObjectId
from pymongo.errors import NetworkTimeout

from dialer.core.clock import FixedClock
from dialer.ports import StoreUnavailable, Tally, active_key
from dialer.services.batches import Batches
from dialer.services import lifecycle as lifecycle_module
from dialer.services.lifecycle import Lifecycle
from dialer.store.mongo import mongo_repositories
from dialer.store.mongo import calls_for_operators as operators_module
from dialer.store.mongo.calls import MongoCalls
from dialer.store.mongo.testing import mongomock_client
from tests.contract.conftest import at, batch_doc
from tests.mongo_rules import After, RulesDb, rules_repositories

T0 = at(0)
PER_DOC = 0.1  # seconds per document examined: 300 within the client's 30 s


def call_doc(batch_id: ObjectId, i: int, **fields) -> dict:
    return {"_id": ObjectId(), "batchId": batch_id, "workspaceId": batch_id, "phoneNumber": f"+1212555{i:04d}",
            "extension": None, "status": "queued", "attempts": 0, "nextAttemptAt": T0, "createdAt": T0,
            "updatedAt": T0, "history": [], **fields}


async def test_indexes_are_built_under_their_own_timeout_on_a_populated_collection(caplog):
    client = mongomock_client()
    await client["dialer"]["calls"].insert_many([call_doc(ObjectId(), i) for i in range(500)])  # a 50 s build
    rules = RulesDb(client["dialer"], per_doc=PER_DOC)
    with caplog.at_level(logging.INFO, logger="dialer.store.indexes"):
        repos = await mongo_repositories(client, rules)
    assert "batch_status_due_id" in await client["dialer"]["calls"].index_information()
    [calls] = [r for r in caplog.records if getattr(r, "collection", None) == "calls"]
    assert calls.documents == 500 and "batch_status_due_id" in calls.indexes
    assert caplog.records[-1].getMessage() == "indexes ready"
    await repos.close()


async def seeded(repos, db, batch: dict, docs: list[dict]) -> None:
    """Calls written straight into the collection, the batch's counters set to match them."""
    await db.db["calls"].insert_many(docs)
    await repos.calls.correct(batch["_id"], await repos.calls.recount(batch["_id"]))


async def agree(repos, db, batch_id: ObjectId) -> bool:
    """The batch's counters agree with its calls (recounted at no cost: the recount is not under test)."""
    per_doc, db["calls"].per_doc = db["calls"].per_doc, 0
    try:
        return set(await repos.calls.tallies(batch_id)) == set(await repos.calls.recount(batch_id))
    finally:
        db["calls"].per_doc = per_doc


async def test_a_retry_walks_a_large_batch_once_whatever_lies_ahead_of_its_matches():
    repos, db = await rules_repositories(per_doc=0)
    batch = batch_doc(status="completed")
    await repos.batches.insert(batch)
    final = [call_doc(batch["_id"], i, status=s, outcome=s, attempts=1)
             for i, s in enumerate(["completed"] * 400 + ["no_answer"] * 300)]
    # Five callees have a newer call waiting: theirs are looked at and skipped.
    newer = [call_doc(batch["_id"], 400 + i, activeKey=active_key(batch["_id"], f"+1212555{400 + i:04d}", None))
             for i in range(0, 100, 20)]
    await seeded(repos, db, batch, final + newer)
    db["calls"].per_doc, db["calls"].examined = PER_DOC, []  # each pass reading the final calls ahead: 50 s
    now, entry = at(60), {"at": at(60), "event": "retry_asked"}
    assert await repos.calls.retry_finished(batch["_id"], ["no_answer"], now, entry, 100) == (95, 5)
    # The rest from another process (which does not know where the walk stopped): it starts over.
    elsewhere, total = MongoCalls(repos.calls.c, repos.calls.counters), [0, 0]
    while (done := await elsewhere.retry_finished(batch["_id"], ["no_answer"], now, entry, 100)) != (0, 0):
        total = [total[0] + done[0], total[1] + done[1]]
    assert total == [200, 0]
    assert max(db["calls"].examined) <= 100
    retried = await db.db["calls"].count_documents({"status": "queued", "retriedAt": {"$ne": None}})
    assert retried == 295 and await agree(repos, db, batch["_id"])
    await repos.close()


def lifecycle_over(repos, clock) -> Lifecycle:
    return Lifecycle(Batches(repos.batches, repos.calls, clock), repos.batches, repos.calls, clock)


async def retry_setup(calls: int, monkeypatch) -> tuple:
    monkeypatch.setattr(lifecycle_module, "CHUNK", 100)
    repos, db = await rules_repositories(per_doc=PER_DOC)
    clock = FixedClock(at(60))
    batch = batch_doc(status="completed")
    await repos.batches.insert(batch)
    await seeded(repos, db, batch, [call_doc(batch["_id"], i, status="busy", outcome="busy", attempts=1)
                                    for i in range(calls)])
    return repos, db, clock, batch, lifecycle_over(repos, clock)


async def test_a_retry_cut_short_by_a_timeout_is_completed_by_asking_again(monkeypatch):
    repos, db, clock, batch, lifecycle = await retry_setup(250, monkeypatch)
    db["calls"].faults["bulk_write"] = [None, After(NetworkTimeout("timed out"))]  # the second pass's answer lost
    with pytest.raises(StoreUnavailable):
        await lifecycle.retry(await repos.batches.get(batch["_id"]), ["busy"])
    assert await agree(repos, db, batch["_id"])  # what landed is counted
    clock.advance(60)
    again = await lifecycle.retry(await repos.batches.get(batch["_id"]), ["busy"])
    assert again["status"] == "running"
    assert await db.db["calls"].count_documents({"status": "queued"}) == 250 and await agree(repos, db, batch["_id"])
    await repos.close()


async def test_a_retry_cut_short_after_its_last_pass_runs_the_batch_when_asked_again(monkeypatch):
    repos, db, clock, batch, lifecycle = await retry_setup(50, monkeypatch)
    db["calls"].faults["bulk_write"] = [After(NetworkTimeout("timed out"))]
    with pytest.raises(StoreUnavailable):
        await lifecycle.retry(await repos.batches.get(batch["_id"]), ["busy"])
    clock.advance(60)
    assert (await lifecycle.retry(await repos.batches.get(batch["_id"]), ["busy"]))["status"] == "running"
    assert await db.db["calls"].count_documents({"status": "queued"}) == 50 and await agree(repos, db, batch["_id"])
    await repos.close()


async def start_setup(calls: int, monkeypatch) -> tuple:
    """A batch scheduled an hour ahead whose calls wait for it, and an operator about to start it now."""
    monkeypatch.setattr(operators_module, "CHUNK", 100)
    repos, db = await rules_repositories(per_doc=0)
    clock = FixedClock(at(60))
    batch = batch_doc(status="pending", scheduled_at=at(3600))
    await repos.batches.insert(batch)
    await seeded(repos, db, batch, [call_doc(batch["_id"], i, nextAttemptAt=at(3600)) for i in range(calls)])
    db["calls"].per_doc = PER_DOC  # one update of them all would take 50 s
    return repos, db, clock, batch, lifecycle_over(repos, clock)


async def due_later(db, batch_id: ObjectId, than) -> int:
    return await db.db["calls"].count_documents({"batchId": batch_id, "nextAttemptAt": {"$gt": than}})


async def test_starting_a_batch_early_brings_forward_any_number_of_calls_in_bounded_steps(monkeypatch):
    repos, db, clock, batch, lifecycle = await start_setup(500, monkeypatch)
    assert (await lifecycle.start(await repos.batches.get(batch["_id"])))["status"] == "running"
    assert await due_later(db, batch["_id"], at(60)) == 0
    assert max(db["calls"].examined) <= 100
    await repos.close()


async def test_a_start_cut_short_leaves_the_batch_as_it_was_and_is_completed_by_starting_again(monkeypatch):
    repos, db, clock, batch, lifecycle = await start_setup(250, monkeypatch)
    db["calls"].faults["update_many"] = [After(NetworkTimeout("timed out"))]  # the first step's answer lost
    with pytest.raises(StoreUnavailable):
        await lifecycle.start(await repos.batches.get(batch["_id"]))
    assert (await repos.batches.get(batch["_id"]))["status"] == "pending"  # not running with calls left behind
    clock.advance(30)
    assert (await lifecycle.start(await repos.batches.get(batch["_id"])))["status"] == "running"
    assert await due_later(db, batch["_id"], at(90)) == 0
    await repos.close()


async def test_a_recount_reads_a_whole_large_batch_on_its_index_under_its_own_timeout():
    repos, db = await rules_repositories(per_doc=0)
    batch = batch_doc()
    await repos.batches.insert(batch)
    await seeded(repos, db, batch, [call_doc(batch["_id"], i) for i in range(500)])
    db["calls"].per_doc = PER_DOC  # 50 s: more than the client's timeout
    assert await repos.calls.recount(batch["_id"]) == [Tally("queued", None, 500, 0, 0)]
    await repos.close()
