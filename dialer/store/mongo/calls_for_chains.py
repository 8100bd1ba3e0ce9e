"""The `calls` collection's queries for contact chaining (the enrollment face): writing planned calls under
their own ids, reading a group, activating and skipping held calls, the agent's verdict. Part of
MongoCalls (calls.py), whose counter bookkeeping (`counters`, `_moved`) they share.

Indexes: `batch_group` (batchId, group.key) serves `group` and `skip_held`; `batch_status_due_id`
serves `held_groups` ({batchId, status: held}); writes by _id need none.
"""

from __future__ import annotations

import datetime as dt

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError

from dialer.core.records import PlannedCall
from dialer.core.statuses import CallStatus
from dialer.ports import active_key
from dialer.store.mongo.documents import DUPLICATE_KEY, aggregate, normalise, unavailable
from dialer.store.mongo.outbox import outbox

HELD = CallStatus.HELD.value
QUEUED = CallStatus.QUEUED.value
GROUP_PROJECTION = {"status": 1, "outcome": 1, "duration": 1, "answeredBy": 1, "verdict": 1, "finishedAt": 1,
                    "group": 1, "nextAttemptAt": 1}
BEFORE_FIELDS = {"batchId": 1, "status": 1, "outcome": 1, "attempts": 1}


class ChainCalls:
    c: object
    counters: object

    @unavailable
    async def insert_new(self, batch: dict, chunk: list[PlannedCall], now: dt.datetime) -> int:
        from dialer.store.mongo.calls import new_call

        docs = []
        for call in chunk:
            doc = new_call(batch, call, call.call_id,
                           active_key(batch["_id"], call.e164, call.extension) + call.key_suffix, now)
            if call.suppressed is not None:  # stopped by a rule before it was queued: final, holding no key
                del doc["activeKey"]
                doc.update(status=CallStatus.SKIPPED.value, outcome="suppressed", finishedAt=now, nextAttemptAt=None,
                           history=[{**call.suppressed, "result": "suppressed"}])
            if call.held:
                doc["status"] = HELD
            if call.group is not None:
                doc["group"] = call.group
            docs.append(doc)
        if not docs:
            return 0
        refused: set[int] = set()
        try:
            await self.c.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # A duplicate _id: written by an earlier run of this intake; a duplicate activeKey: the callee
            # already waits in this batch. Anything else is a real failure.
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            refused = {e["index"] for e in errors}
        for i, doc in enumerate(docs):
            if i not in refused:
                self.counters.change(batch["_id"], None, (doc["status"], doc.get("outcome"), 0))
        return len(docs) - len(refused)

    @unavailable
    async def group(self, batch_id: ObjectId, key: str) -> list[dict]:
        docs = await self.c.find({"batchId": batch_id, "group.key": key}, GROUP_PROJECTION).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def held_groups(self, batch_id: ObjectId, limit: int) -> list[str]:
        rows = await aggregate(self.c, [{"$match": {"batchId": batch_id, "status": HELD}},
                                        {"$group": {"_id": "$group.key"}}, {"$limit": limit}])
        return [r["_id"] for r in rows]

    @unavailable
    async def activate(self, call_id: ObjectId, now: dt.datetime, entry: dict) -> bool:
        before = await self.c.find_one_and_update(
            {"_id": call_id, "status": HELD},
            {"$set": {"status": QUEUED, "updatedAt": now}, "$max": {"nextAttemptAt": now},
             "$push": {"history": entry}}, projection=BEFORE_FIELDS)
        if before is None:
            return False
        self._moved(before, QUEUED, before.get("outcome"))
        return True

    @unavailable
    async def skip_held(self, batch_id: ObjectId, key: str, now: dt.datetime, entry: dict) -> int:
        skipped = CallStatus.SKIPPED.value
        result = await self.c.update_many(
            {"batchId": batch_id, "group.key": key, "status": HELD},
            {"$set": {"status": skipped, "outcome": "skipped", "updatedAt": now, "finishedAt": now},
             "$unset": {"activeKey": ""},
             "$push": {"history": {**entry, "result": "skipped"}, **outbox("call.skipped", now)}})
        for _ in range(result.modified_count):  # held calls never ran: no outcome, no attempts
            self.counters.change(batch_id, (HELD, None, 0), (skipped, "skipped", 0))
        return result.modified_count

    @unavailable
    async def record_verdict(self, call_id: ObjectId, verdict: dict, now: dt.datetime) -> dict | None:
        doc = await self.c.find_one_and_update(
            {"_id": call_id},
            {"$set": {"verdict": verdict},
             "$push": {"history": {"at": now, "event": "verdict", "successful": verdict.get("successful")}}},
            return_document=ReturnDocument.AFTER)
        return normalise(doc)
