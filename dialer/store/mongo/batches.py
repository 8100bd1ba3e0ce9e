"""The `batches` collection, for the BatchRepo port. Indexes: (status) for the dispatcher's running
batches and the reaper's scheduled starts; (workspaceId, _id) for listing a workspace's batches
(newest first, from a cursor); (publicId, unique, sparse) for `by_public_id`; (updatedAt) for
`updated_since`, with (enqueuedAt) for `changed_since`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne

from dialer.core.machine import BatchMove
from dialer.core.statuses import BatchStatus
from dialer.core.webhook_events import batch_event
from dialer.store.mongo.documents import aware, normalise, unavailable, unordered
from dialer.store.mongo.outbox import outbox


class MongoBatches:
    def __init__(self, collection: Any) -> None:
        self.c = collection

    @unavailable
    async def insert(self, batch: dict) -> None:
        await self.c.insert_one(dict(batch))

    @unavailable
    async def get(self, batch_id: ObjectId) -> dict | None:
        return normalise(await self.c.find_one({"_id": batch_id}))

    @unavailable
    async def by_public_id(self, public_id: str) -> dict | None:
        return normalise(await self.c.find_one({"publicId": public_id}))

    @unavailable
    async def runnable(self, now: dt.datetime) -> list[dict]:
        docs = await self.c.find({"status": BatchStatus.RUNNING.value,
                                  "$or": [{"scheduledAt": None}, {"scheduledAt": {"$lte": now}}]}
                                 ).sort("_id", 1).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def runnable_stamps(self, now: dt.datetime, among: list[ObjectId] | None = None
                              ) -> dict[ObjectId, tuple[dt.datetime | None, dt.datetime | None]]:
        if among is not None and not among:
            return {}
        query = {"status": BatchStatus.RUNNING.value, "$or": [{"scheduledAt": None}, {"scheduledAt": {"$lte": now}}]}
        if among is not None:
            query["_id"] = {"$in": list(among)}
        docs = await self.c.find(query, {"updatedAt": 1, "enqueuedAt": 1}).to_list(None)
        return {d["_id"]: (aware(d.get("updatedAt")), aware(d.get("enqueuedAt"))) for d in docs}

    @unavailable
    async def runnable_among(self, batch_ids: list[ObjectId], now: dt.datetime) -> list[dict]:
        if not batch_ids:
            return []
        docs = await self.c.find({"_id": {"$in": list(batch_ids)}, "status": BatchStatus.RUNNING.value,
                                  "$or": [{"scheduledAt": None}, {"scheduledAt": {"$lte": now}}]}
                                 ).sort("_id", 1).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def scheduled_due(self, now: dt.datetime) -> list[dict]:
        docs = await self.c.find({"status": BatchStatus.PENDING.value, "scheduledAt": {"$ne": None, "$lte": now}}
                                 ).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def updated_since(self, since: dt.datetime, statuses: list[str] | None = None) -> list[dict]:
        query: dict = {"updatedAt": {"$gte": since}}
        if statuses:
            query["status"] = {"$in": list(statuses)}
        docs = await self.c.find(query).sort("_id", 1).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def changed_since(self, since: dt.datetime) -> list[dict]:
        docs = await self.c.find({"$or": [{"updatedAt": {"$gte": since}}, {"enqueuedAt": {"$gte": since}}]},
                                 {"status": 1, "updatedAt": 1, "enqueuedAt": 1, "scheduledAt": 1}
                                 ).sort("_id", 1).to_list(None)
        return [{"_id": d["_id"], "status": d["status"], "updatedAt": aware(d.get("updatedAt")),
                 "enqueuedAt": aware(d.get("enqueuedAt")), "scheduledAt": aware(d.get("scheduledAt"))} for d in docs]

    @unavailable
    async def move(self, batch_id: ObjectId, move: BatchMove, now: dt.datetime,
                   set_fields: dict[str, Any] | None = None, unset: tuple[str, ...] = ()) -> bool:
        update: dict = {"$set": {"status": move.target.value, "updatedAt": now, **(set_fields or {})}}
        if unset:
            update["$unset"] = {name: "" for name in unset}
        if event := outbox(batch_event(move.target.value), now):
            update["$push"] = event
        result = await self.c.update_one({"_id": batch_id, "status": {"$in": move.source_values}}, update)
        return result.modified_count == 1

    @unavailable
    async def move_many(self, batch_ids: list[ObjectId], move: BatchMove, now: dt.datetime,
                        set_fields: dict[str, Any] | None = None) -> set[ObjectId]:
        """One unordered bulk write of compare-and-sets, then one read of which batches are in the target
        status as of this move (updatedAt = now)."""
        if not batch_ids:
            return set()
        ops = []
        for batch_id in batch_ids:
            update: dict = {"$set": {"status": move.target.value, "updatedAt": now, **(set_fields or {})}}
            if event := outbox(batch_event(move.target.value), now):
                update["$push"] = event
            ops.append(UpdateOne({"_id": batch_id, "status": {"$in": move.source_values}}, update))
        failed = await unordered(self.c, ops)
        if failed is not None:
            raise failed  # part may have landed: the caller's next look sees which
        return {d["_id"] async for d in self.c.find({"_id": {"$in": list(batch_ids)}, "status": move.target.value,
                                                     "updatedAt": now}, {"_id": 1})}

    @unavailable
    async def note_enqueued(self, batch_id: ObjectId, now: dt.datetime) -> str | None:
        doc = await self.c.find_one_and_update({"_id": batch_id}, {"$set": {"enqueuedAt": now}}, {"status": 1})
        return None if doc is None else doc["status"]

    @unavailable
    async def list(self, workspace_id: ObjectId, statuses: list[str] | None, agent_id: ObjectId | None,
                   before: ObjectId | None, limit: int) -> list[dict]:
        flt: dict = {"workspaceId": workspace_id}
        if statuses:
            flt["status"] = {"$in": statuses}
        if agent_id is not None:
            flt["agentId"] = agent_id
        if before is not None:
            flt["_id"] = {"$lt": before}
        docs = await self.c.find(flt).sort("_id", -1).limit(limit).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def update(self, batch_id: ObjectId, statuses: list[str], set_fields: dict[str, Any],
                     now: dt.datetime) -> dict | None:
        doc = await self.c.find_one_and_update({"_id": batch_id, "status": {"$in": statuses}},
                                               {"$set": {**set_fields, "updatedAt": now}},
                                               return_document=ReturnDocument.AFTER)
        return normalise(doc)

    @unavailable
    async def delete(self, batch_id: ObjectId) -> bool:
        return (await self.c.delete_one({"_id": batch_id})).deleted_count == 1
