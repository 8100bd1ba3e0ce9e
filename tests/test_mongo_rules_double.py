"""The server-rules double (tests/mongo_rules.py) itself: hints checked, time charged per key examined
on the plan a server would pick, a multi-update cut by its timeout applied in part, faults as asked."""

from __future__ import annotations

import pymongo
import pytest
from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, ExecutionTimeout, NetworkTimeout, OperationFailure

from dialer.store.mongo.testing import mongomock_client
from tests.mongo_rules import After, Refuse, RulesDb, filter_of


async def calls(n: int, per_doc: float = 0.1):
    """`n` queued calls of one batch (and one call of another) under 300 keys per 30 s operation."""
    db = RulesDb(mongomock_client()["dialer"], per_doc=0)
    batch = ObjectId()
    await db["calls"].insert_many([{"_id": ObjectId(), "batchId": batch, "status": "queued", "n": i} for i in range(n)]
                                  + [{"_id": ObjectId(), "batchId": ObjectId(), "status": "queued", "n": -1}])
    db["calls"].per_doc = per_doc
    return db["calls"], batch


async def test_a_hint_must_name_a_declared_index():
    c, batch = await calls(3)
    assert len(await c.find({"batchId": batch}).hint("batch_id").to_list(None)) == 3
    with pytest.raises(OperationFailure):
        await c.find({"batchId": batch}).hint("batchId_1").to_list(None)
    with pytest.raises(OperationFailure):
        await c.aggregate([{"$match": {"batchId": batch}}], hint="nope")


async def test_time_is_charged_per_key_the_plan_examines_against_the_timeout_in_force():
    c, batch = await calls(400)
    assert len(await c.find({"batchId": batch, "n": {"$gte": 200}}).limit(5).to_list(None)) == 5
    assert c.examined[-1] == 205  # the batch's keys walked in _id order up to the fifth match: 20.5 s
    with pytest.raises(ExecutionTimeout):
        await c.find({"batchId": batch, "n": {"$gte": 200}}).to_list(None)  # all 400 keys: 40 s
    with pytest.raises(ExecutionTimeout):
        await c.find({"batchId": batch}).sort("n", 1).limit(1).to_list(None)  # a blocking sort reads them all
    with pymongo.timeout(60):
        assert len(await c.find({"batchId": batch}).to_list(None)) == 400
    ids = [d["_id"] for d in await c.inner.find({"batchId": batch}).limit(10).to_list(None)]
    assert len(await c.find({"batchId": batch, "_id": {"$in": ids}}).to_list(None)) == 10
    assert c.examined[-1] == 10  # the _id index holds fewest keys for these bounds


async def test_a_multi_update_cut_by_its_timeout_has_applied_its_first_documents():
    c, batch = await calls(400)
    with pytest.raises(ExecutionTimeout):
        await c.update_many({"batchId": batch}, {"$set": {"status": "cancelled"}})
    assert await c.inner.count_documents({"status": "cancelled"}) == 300


async def test_faults_are_injected_as_asked():
    c, batch = await calls(3, per_doc=0)
    first, *others = [d["_id"] for d in await c.inner.find({"batchId": batch}).to_list(None)]
    ops = [UpdateOne({"_id": i}, {"$set": {"status": "dialing"}}) for i in [first, *others]]
    c.faults["bulk_write"] = [Refuse(lambda op: filter_of(op)["_id"] == first), After(NetworkTimeout("lost"))]
    with pytest.raises(BulkWriteError) as refused:
        await c.bulk_write(ops, ordered=False)
    assert [e["index"] for e in refused.value.details["writeErrors"]] == [0]
    assert await c.inner.count_documents({"status": "dialing"}) == 2
    with pytest.raises(NetworkTimeout):
        await c.bulk_write(ops, ordered=False)
    assert await c.inner.count_documents({"status": "dialing"}) == 3  # applied, then the answer lost
