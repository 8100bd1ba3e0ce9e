"""The `calls` collection's queries for the do-not-call list: a claim whose number was listed since ends
unplaced, and an opt-out withdraws the number's waiting calls. Part of MongoCalls (calls.py), whose counter
bookkeeping (`counters`) they share.

Index: `active_key` (unique, sparse) finds a callee's waiting call in a batch: the exact key, and its
extensions and chaining turns (`<key>;ext=...`, `<key>#n`) by an anchored prefix regex, which the same
index serves.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne

from dialer.core.statuses import WAITING_VALUES, CallStatus
from dialer.ports import active_key
from dialer.store.mongo.calls_for_claims import CLAIM_FIELDS
from dialer.store.mongo.documents import normalise, unavailable, unordered
from dialer.store.mongo.outbox import outbox

SKIPPED = CallStatus.SKIPPED.value
SUPPRESSED = "suppressed"


def _suppressed(now: dt.datetime, entry: dict) -> dict:
    return {"$set": {"status": SKIPPED, "outcome": SUPPRESSED, "updatedAt": now, "finishedAt": now},
            "$push": {"history": {**entry, "result": SUPPRESSED}, **outbox(f"call.{SUPPRESSED}", now)}}


class DncCalls:
    c: object
    counters: object

    @unavailable
    async def suppress_claimed(self, call_id: ObjectId, token: str, entry: dict, now: dt.datetime) -> dict | None:
        update = _suppressed(now, entry)
        update.update({"$inc": {"attempts": -1}, "$unset": {**CLAIM_FIELDS, "activeKey": ""}})
        before = await self.c.find_one_and_update(
            {"_id": call_id, "claimToken": token, "status": CallStatus.DIALING.value,
             "providerCallId": {"$exists": False}}, update, return_document=ReturnDocument.BEFORE)
        if before is None:
            return None
        attempts = before.get("attempts", 0)
        self.counters.change(before["batchId"], (before["status"], before.get("outcome"), attempts),
                             (SKIPPED, SUPPRESSED, attempts - 1))
        return normalise(await self.c.find_one({"_id": call_id}))

    @unavailable
    async def suppress_waiting(self, batch_ids: list[ObjectId], e164: str, now: dt.datetime,
                               entry: dict) -> list[dict]:
        if not batch_ids:
            return []
        keys = [active_key(b, e164, None) for b in batch_ids]
        match = {"status": {"$in": WAITING_VALUES},
                 "$or": [{"activeKey": {"$in": keys}},
                         *({"activeKey": {"$regex": "^" + re.escape(k) + "[;#]"}} for k in keys)]}
        docs = await self.c.find(match, {"batchId": 1, "status": 1, "outcome": 1, "attempts": 1}).to_list(None)
        if not docs:
            return []
        token = secrets.token_hex(8)  # what landed is read back by it (as withdraw does)
        update = _suppressed(now, entry)
        update["$set"]["writeToken"] = token
        update["$unset"] = {"activeKey": ""}
        error = await unordered(self.c, [UpdateOne({"_id": d["_id"], "status": d["status"]}, update) for d in docs])
        after = {d["_id"]: d for d in await self.c.find(
            {"_id": {"$in": [d["_id"] for d in docs]}, "writeToken": token}).to_list(None)}
        for d in docs:
            if d["_id"] in after:
                self.counters.change(d["batchId"], (d["status"], d.get("outcome"), d.get("attempts", 0)),
                                     (SKIPPED, SUPPRESSED, d.get("attempts", 0)))
        if error is not None and not after:
            raise error
        return [normalise(d) for d in after.values()]
