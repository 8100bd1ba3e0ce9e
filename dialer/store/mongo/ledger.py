"""The `dispatch` collection's one document (`_id: "account"`), for the SlotLedger port: slots per batch
and for the account, and the next dial time, written by compare-and-set on `version`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId

from dialer.ports import LedgerState
from dialer.store.mongo.documents import aware, normalise, unavailable

ACCOUNT = "account"


class MongoLedger:
    def __init__(self, collection: Any) -> None:
        self.c = collection

    @unavailable
    async def read(self) -> LedgerState:
        doc = await self.c.find_one({"_id": ACCOUNT})
        if doc is None:
            await self.c.update_one({"_id": ACCOUNT},
                                    {"$setOnInsert": {"version": 0, "slots": {}, "all": [], "nextDialAt": None}},
                                    upsert=True)
            doc = await self.c.find_one({"_id": ACCOUNT})
        doc = normalise(doc)
        slots = {batch: [_entry(e) for e in entries] for batch, entries in doc.get("slots", {}).items()}
        return LedgerState(doc["version"], slots, [_entry(e) for e in doc.get("all", [])], doc.get("nextDialAt"))

    @unavailable
    async def write(self, version: int, slots: dict[str, list[dict]], all_: list[dict],
                    next_dial_at: dt.datetime | None) -> bool:
        result = await self.c.update_one(
            {"_id": ACCOUNT, "version": version},
            {"$set": {"slots": slots, "all": all_, "nextDialAt": next_dial_at}, "$inc": {"version": 1}})
        return result.matched_count == 1

    @unavailable
    async def release(self, batch_id: ObjectId, call_ids: list[ObjectId], token: str) -> None:
        if not call_ids:
            return
        cond = {"callId": {"$in": list(call_ids)}, "token": token}
        await self.c.update_one({"_id": ACCOUNT},
                                {"$pull": {f"slots.{batch_id}": cond, "all": cond}, "$inc": {"version": 1}})


def _entry(entry: dict) -> dict:
    return {**entry, "at": aware(entry["at"])}
