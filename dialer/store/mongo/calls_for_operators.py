"""The `calls` collection's queries for operators (the batch lifecycle): claims not yet placed,
withdrawing, retrying and deleting a batch's calls, counters of many batches. Part of MongoCalls
(calls.py), whose counter bookkeeping (`_moved`, `counters`) they share. Indexes: batch_status_due_id
serves every batch-and-status filter here; batch_id the deletion.
"""

from __future__ import annotations

import datetime as dt
import secrets

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from dialer.core.statuses import IN_FLIGHT_VALUES, TERMINAL, WAITING_VALUES, CallStatus
from dialer.ports import Tally, active_key
from dialer.store.mongo.counters import tallies_of
from dialer.store.mongo.documents import normalise, unavailable, unordered

BEFORE_FIELDS = {"batchId": 1, "status": 1, "outcome": 1, "attempts": 1}
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)


class OperatorsCalls:
    c: object
    counters: object

    @unavailable
    async def unplaced(self, batch_id: ObjectId) -> int:
        return await self.c.count_documents({"batchId": batch_id, "status": CallStatus.DIALING.value,
                                             "providerCallId": {"$exists": False}, "uncertain": {"$ne": True}})

    @unavailable
    async def withdraw(self, batch_id: ObjectId, now: dt.datetime, entry: dict, limit: int) -> int:
        docs = await self.c.find({"batchId": batch_id, "status": {"$in": WAITING_VALUES}}, BEFORE_FIELDS
                                 ).limit(limit).to_list(None)
        if not docs:
            return 0
        token = secrets.token_hex(8)
        error = await unordered(self.c, [UpdateOne(
            {"_id": d["_id"], "status": d["status"]},
            {"$set": {"status": CallStatus.CANCELLED.value, "outcome": "cancelled", "updatedAt": now,
                      "finishedAt": now, "writeToken": token},
             "$unset": {"activeKey": ""}, "$push": {"history": {**entry, "result": "cancelled"}}}) for d in docs])
        # What landed, read back by the write's token: calls changed under us are not cancelled, and a
        # write that failed part-way (BulkWriteError, a timeout) may have cancelled any of them.
        done = {d["_id"] async for d in self.c.find({"_id": {"$in": [d["_id"] for d in docs]}, "writeToken": token},
                                                    {"_id": 1})}
        for d in docs:
            if d["_id"] in done:
                self._moved(d, CallStatus.CANCELLED.value, "cancelled")
        if error is not None and not done:
            raise error  # nothing withdrawn: a caller repeating until 0 must not take it for "none left"
        return len(done)

    @unavailable
    async def in_flight(self, batch_id: ObjectId) -> list[dict]:
        docs = await self.c.find({"batchId": batch_id, "status": {"$in": IN_FLIGHT_VALUES}}).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def retry_finished(self, batch_id: ObjectId, outcomes: list[str], now: dt.datetime, entry: dict,
                             limit: int) -> tuple[int, int]:
        docs = await self.c.find({"batchId": batch_id, "status": {"$in": sorted(TERMINAL_VALUES)},
                                  "outcome": {"$in": outcomes}, "retriedAt": {"$ne": now},
                                  # A chained contact's group ran its course: it is not redialled by a retry.
                                  "group": {"$exists": False}},
                                 {**BEFORE_FIELDS, "phoneNumber": 1, "extension": 1}).limit(limit).to_list(None)
        if not docs:
            return 0, 0
        token = secrets.token_hex(8)
        ops = [UpdateOne({"_id": d["_id"], "status": d["status"]},
                         {"$set": {"status": CallStatus.QUEUED.value, "nextAttemptAt": now, "updatedAt": now,
                                   "retriedAt": now, "writeToken": token,
                                   "activeKey": active_key(batch_id, d["phoneNumber"], d.get("extension"))},
                          "$unset": {"finishedAt": ""}, "$push": {"history": entry}}) for d in docs]
        try:
            await self.c.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            # A duplicate activeKey: the callee has a newer call waiting or in flight. Any refused one is
            # marked looked-at too, so a caller repeating until (0, 0) ends.
            refused = [docs[e["index"]]["_id"] for e in exc.details.get("writeErrors", [])]
            if refused:
                await self.c.update_many({"_id": {"$in": refused}}, {"$set": {"retriedAt": now}})
        done = {d["_id"] async for d in self.c.find({"_id": {"$in": [d["_id"] for d in docs]}, "writeToken": token},
                                                    {"_id": 1})}
        for d in docs:
            if d["_id"] in done:
                self._moved(d, CallStatus.QUEUED.value, d.get("outcome"))
        return len(done), len(docs) - len(done)

    @unavailable
    async def bring_forward(self, batch_id: ObjectId, now: dt.datetime) -> int:
        result = await self.c.update_many({"batchId": batch_id, "status": CallStatus.QUEUED.value,
                                           "nextAttemptAt": {"$gt": now}}, {"$set": {"nextAttemptAt": now}})
        return result.modified_count

    @unavailable
    async def delete_calls(self, batch_id: ObjectId, limit: int) -> int:
        ids = [d["_id"] for d in await self.c.find({"batchId": batch_id}, {"_id": 1}).limit(limit).to_list(None)]
        if not ids:
            return 0
        return (await self.c.delete_many({"_id": {"$in": ids}})).deleted_count

    @unavailable
    async def tallies_many(self, batch_ids: list[ObjectId]) -> dict[ObjectId, list[Tally]]:
        """One read for all of them: the tallies live on the batch documents."""
        await self.counters.flush()
        found = {d["_id"]: tallies_of(d) async for d in self.counters.batches.find(
            {"_id": {"$in": list(batch_ids)}}, {"tallies": 1})}
        return {batch_id: found.get(batch_id, []) for batch_id in batch_ids}
