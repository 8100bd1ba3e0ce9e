"""The `calls` collection's queries for operators (the batch lifecycle): claims not yet placed,
withdrawing, retrying and deleting a batch's calls. Part of MongoCalls
(calls.py), whose counter bookkeeping (`_moved`, `counters`) they share. Indexes: batch_status_due_id
serves every batch-and-status filter here; batch_id the deletion and the retry's walk.

A retry walks the batch once in _id order, `limit` calls per read (hint batch_id: each read examines
that many, however large the batch), and resumes where the last call with the same `now` stopped (kept
in this process; without it, the walk starts over and skips what `retriedAt` says was looked at). An
index bounding the outcome would not do: the final calls it does not retry (another outcome, already
looked at, chained) would be read again by every pass, as they were ahead of the matches.
"""

from __future__ import annotations

import datetime as dt
import secrets

from bson import ObjectId
from pymongo import UpdateOne

from dialer.core.statuses import IN_FLIGHT_VALUES, TERMINAL, WAITING_VALUES, CallStatus
from dialer.ports import active_key
from dialer.store.mongo.documents import aware, normalise, refused, unavailable, unordered
from dialer.store.mongo.outbox import outbox

BEFORE_FIELDS = {"batchId": 1, "status": 1, "outcome": 1, "attempts": 1}
RETRY_FIELDS = {**BEFORE_FIELDS, "phoneNumber": 1, "extension": 1, "retriedAt": 1, "group": 1}
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)
CHUNK = 1000  # calls brought forward per operation


class OperatorsCalls:
    c: object
    counters: object
    _retry_walks: dict  # batch -> ((now, outcomes) of the retry, the _id its walk reached)

    @unavailable
    async def unplaced(self, batch_id: ObjectId) -> int:
        return await self.c.count_documents({"batchId": batch_id, "status": CallStatus.DIALING.value,
                                             "providerCallId": {"$exists": False}, "uncertain": {"$ne": True}})

    @unavailable
    async def unplaced_numbers(self, batch_ids: list[ObjectId]) -> set[str]:
        if not batch_ids:
            return set()
        docs = await self.c.find({"batchId": {"$in": batch_ids}, "status": CallStatus.DIALING.value,
                                  "providerCallId": {"$exists": False}, "uncertain": {"$ne": True}},
                                 {"phoneNumber": 1}).to_list(None)
        return {doc["phoneNumber"] for doc in docs}

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
             "$unset": {"activeKey": ""},
             "$push": {"history": {**entry, "result": "cancelled"}, **outbox("call.cancelled", now)}}) for d in docs])
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
    async def suppress_queued(self, call_id: ObjectId, now: dt.datetime, entry: dict) -> bool:
        skipped = CallStatus.SKIPPED.value
        before = await self.c.find_one_and_update(
            {"_id": call_id, "status": CallStatus.QUEUED.value},
            {"$set": {"status": skipped, "outcome": "suppressed", "updatedAt": now, "finishedAt": now},
             "$unset": {"activeKey": ""},
             "$push": {"history": {**entry, "result": skipped}, **outbox("call.skipped", now)}},
            projection=BEFORE_FIELDS)
        if before is None:
            return False
        self._moved(before, skipped, "suppressed")
        return True

    @unavailable
    async def in_flight(self, batch_id: ObjectId) -> list[dict]:
        docs = await self.c.find({"batchId": batch_id, "status": {"$in": IN_FLIGHT_VALUES}}).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def retry_finished(self, batch_id: ObjectId, outcomes: list[str], now: dt.datetime, entry: dict,
                             limit: int) -> tuple[int, int]:
        asked = (now, frozenset(outcomes))
        walked, after = self._retry_walks.get(batch_id, (None, None))
        docs, after = await self._finished(batch_id, asked, after if walked == asked else None, limit)
        if not docs:
            self._retry_walks.pop(batch_id, None)
            return 0, 0
        token = secrets.token_hex(8)
        ops = [UpdateOne({"_id": d["_id"], "status": d["status"]},
                         {"$set": {"status": CallStatus.QUEUED.value, "nextAttemptAt": now, "updatedAt": now,
                                   "retriedAt": now, "writeToken": token,
                                   "activeKey": active_key(batch_id, d["phoneNumber"], d.get("extension"))},
                          # The next attempt is a new provider call: forget the last one's (its outcome stays).
                          "$unset": {"finishedAt": "", "providerCallId": "", "answeredBy": "", "duration": "",
                                     "uncertain": ""},
                          "$push": {"history": entry}}) for d in docs]
        error = await unordered(self.c, ops)
        failed = refused(error)
        if failed:
            # A duplicate activeKey: the callee has a newer call waiting or in flight. Any refused one is
            # marked looked-at too, so a caller repeating until (0, 0) ends.
            await self.c.update_many({"_id": {"$in": [docs[i]["_id"] for i in failed]}}, {"$set": {"retriedAt": now}})
        done = {d["_id"] async for d in self.c.find({"_id": {"$in": [d["_id"] for d in docs]}, "writeToken": token},
                                                    {"_id": 1})}
        for d in docs:
            if d["_id"] in done:
                self._moved(d, CallStatus.QUEUED.value, d.get("outcome"))
        if failed is None:
            raise error  # a timeout: what landed is counted, and asking again retries the rest
        self._retry_walks[batch_id] = (asked, after)
        return len(done), len(docs) - len(done)

    async def _finished(self, batch_id: ObjectId, asked: tuple, after: ObjectId | None,
                        limit: int) -> tuple[list[dict], ObjectId | None]:
        """Up to `limit` final calls to retry for `asked` (now, outcomes), walking the batch's calls after
        `after` in _id order, `limit` a read; and the _id of the last call looked at."""
        now, outcomes = asked
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as stored: milliseconds
        found: list[dict] = []
        while len(found) < limit:
            flt = {"batchId": batch_id, **({"_id": {"$gt": after}} if after is not None else {})}
            window = await self.c.find(flt, RETRY_FIELDS).sort("_id", 1).limit(limit).hint("batch_id").to_list(None)
            for d in window:
                after = d["_id"]
                # A chained contact's group ran its course: it is not redialled by a retry.
                if (d["status"] in TERMINAL_VALUES and d.get("outcome") in outcomes and "group" not in d
                        and aware(d.get("retriedAt")) != now):
                    found.append(d)
                    if len(found) == limit:
                        break
            if len(window) < limit:
                break
        return found, after

    @unavailable
    async def bring_forward(self, batch_id: ObjectId, now: dt.datetime) -> int:
        """In chunks, each a read of the claim index (covered) and an update of that many calls by _id: a
        batch with millions of calls due later takes as many bounded operations, and one cut short is
        completed by asking again (the calls already brought forward no longer match)."""
        later = {"batchId": batch_id, "status": CallStatus.QUEUED.value, "nextAttemptAt": {"$gt": now}}
        moved = 0
        while True:
            ids = [d["_id"] for d in await self.c.find(later, {"_id": 1}).hint("batch_status_due_id"
                                                                            ).limit(CHUNK).to_list(None)]
            if ids:
                result = await self.c.update_many({**later, "_id": {"$in": ids}}, {"$set": {"nextAttemptAt": now}})
                moved += result.modified_count
            if len(ids) < CHUNK:
                return moved

    @unavailable
    async def delete_calls(self, batch_id: ObjectId, limit: int) -> int:
        ids = [d["_id"] for d in await self.c.find({"batchId": batch_id}, {"_id": 1}).limit(limit).to_list(None)]
        if not ids:
            return 0
        return (await self.c.delete_many({"_id": {"$in": ids}})).deleted_count
