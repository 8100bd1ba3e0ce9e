"""The `dispatch` collection's one document (`_id: "account"`), for the SlotLedger port: the reservations not
seen claimed yet (`pending`) and the next dial time, written by compare-and-set on `version`. A read takes
the document, then the pending calls' holders, then the calls in flight per batch (`calls`, index
`status_lease`), in that order: a reservation seen claimed is counted by its call from then on."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from bson import ObjectId

from dialer.core.statuses import IN_FLIGHT_VALUES
from dialer.ports import FlyingCounts, LedgerState
from dialer.store.mongo.calls_for_claims import holders_of
from dialer.store.mongo.documents import aggregate, aware, normalise, unavailable

ACCOUNT = "account"


class MongoLedger:
    def __init__(self, collection: Any, calls: Any) -> None:
        self.c = collection
        self.calls = calls

    @unavailable
    async def read(self, batch_ids: list[ObjectId] | None = None, settled: frozenset[str] = frozenset()) -> LedgerState:
        doc = await self.c.find_one({"_id": ACCOUNT})
        if doc is None:
            await self.c.update_one({"_id": ACCOUNT},
                                    {"$setOnInsert": {"version": 0, "pending": [], "nextDialAt": None}},
                                    upsert=True)
            doc = await self.c.find_one({"_id": ACCOUNT})
        doc = normalise(doc)
        pending = [_entry(e) for e in _pending(doc)]
        unsettled = [e for e in pending if e.get("token") not in settled]
        if unsettled:
            holders = await holders_of(self.calls, [e["callId"] for e in unsettled])
            for entry in unsettled:
                entry["holder"] = holders.get(entry["callId"])
        flying = {"status": {"$in": IN_FLIGHT_VALUES}}
        among = flying if batch_ids is None else {"batchId": {"$in": list(batch_ids)}, **flying}
        per_batch = aggregate(self.calls, [{"$match": among}, {"$group": {"_id": "$batchId", "n": {"$sum": 1}}}])
        if batch_ids is None:
            counts = {r["_id"].binary: r["n"] for r in await per_batch}
            return LedgerState(doc["version"], pending, FlyingCounts(counts), doc.get("nextDialAt"))
        # Those batches' counts and every batch's total at once (each its own index: batch_status_due, status_lease).
        rows, total = await asyncio.gather(per_batch, self.calls.count_documents(flying))
        counts = {r["_id"].binary: r["n"] for r in rows}
        return LedgerState(doc["version"], pending, FlyingCounts(counts, total, frozenset(b.binary for b in batch_ids)),
                           doc.get("nextDialAt"))

    @unavailable
    async def write(self, version: int, pending: list[dict], next_dial_at: dt.datetime | None) -> bool:
        result = await self.c.update_one(
            {"_id": ACCOUNT, "version": version},
            {"$set": {"pending": pending, "nextDialAt": next_dial_at}, "$unset": {"slots": "", "all": ""},
             "$inc": {"version": 1}})
        return result.matched_count == 1

    @unavailable
    async def release(self, call_ids: list[ObjectId], token: str) -> None:
        if not call_ids:
            return
        await self.c.update_one({"_id": ACCOUNT}, {"$pull": {"pending": {"callId": {"$in": list(call_ids)},
                                                                        "token": token}},
                                                   "$inc": {"version": 1}})


def _pending(doc: dict) -> list[dict]:
    """The reservations; a document written before the calls counted their own slots keeps its slot entries
    per batch instead, each taken as a reservation (dropped at the next look once its call shows its claim)."""
    if "pending" in doc or "slots" not in doc:
        return doc.get("pending") or []
    return [{**e, "batchId": ObjectId(batch)} for batch, entries in doc["slots"].items() for e in entries]


def _entry(entry: dict) -> dict:
    return {**entry, "at": aware(entry["at"])}
