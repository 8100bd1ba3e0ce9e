"""The `intakes` collection, for the IntakeRepo port (enrollment requests accepted, not yet scheduled).
Indexes: (state, createdAt) for `unfinished` (pending ones, oldest first); (expiresAt) for `purge`.
No TTL index: expiry follows the engine's injected clock, not the server's."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from dialer.ports import StoreUnavailable
from dialer.store.mongo.documents import normalise, unavailable
from dialer.store.mongo.outbox import outbox

PENDING, DONE = "pending", "done"


class MongoIntakes:
    def __init__(self, collection: Any) -> None:
        self.c = collection

    @unavailable
    async def insert(self, intake: dict) -> dict | None:
        for _ in range(2):  # the twin may be purged between the two calls: then the insert goes again
            try:
                await self.c.insert_one(dict(intake))
                return None
            except DuplicateKeyError:
                found = normalise(await self.c.find_one({"_id": intake["_id"]}))
                if found is not None:
                    return found
        raise StoreUnavailable("the intake kept clashing with one being purged")

    @unavailable
    async def get(self, intake_id: str) -> dict | None:
        return normalise(await self.c.find_one({"_id": intake_id}))

    @unavailable
    async def take(self, intake_id: str, by: str, until: dt.datetime, now: dt.datetime) -> dict | None:
        return normalise(await self.c.find_one_and_update(
            {"_id": intake_id, "state": PENDING,
             "$or": [{"leaseUntil": {"$exists": False}}, {"leaseUntil": {"$lte": now}}]},
            {"$set": {"leaseUntil": until, "takenBy": by}}, return_document=ReturnDocument.AFTER))

    @unavailable
    async def unfinished(self, now: dt.datetime, limit: int) -> list[str]:
        docs = await self.c.find(
            {"state": PENDING, "$or": [{"leaseUntil": {"$exists": False}}, {"leaseUntil": {"$lte": now}}]},
            {"_id": 1}).sort("createdAt", 1).limit(limit).to_list(None)
        return [d["_id"] for d in docs]

    @unavailable
    async def claim_settlement(self, intake_id: str, note_by: str | None) -> tuple[bool, str | None]:
        result = await self.c.update_one({"_id": intake_id, "creditsSettled": {"$ne": True}},
                                         {"$set": {"creditsSettled": True, "creditsSettledBy": note_by}})
        if result.modified_count == 1:
            return True, note_by
        found = await self.c.find_one({"_id": intake_id}, {"creditsSettledBy": 1})
        return False, (found or {}).get("creditsSettledBy")

    @unavailable
    async def finish(self, intake_id: str, now: dt.datetime) -> None:
        await self.c.update_one({"_id": intake_id, "state": PENDING},
                                {"$set": {"state": DONE, "finishedAt": now}, "$unset": {"calls": "", "batch": ""},
                                 "$push": outbox("enrollment.accepted", now)})

    @unavailable
    async def remove_expired(self, intake_id: str, now: dt.datetime) -> bool:
        result = await self.c.delete_one({"_id": intake_id, "state": DONE, "expiresAt": {"$lte": now}})
        return result.deleted_count == 1

    @unavailable
    async def purge(self, now: dt.datetime) -> int:
        return (await self.c.delete_many({"state": DONE, "expiresAt": {"$lte": now}})).deleted_count
