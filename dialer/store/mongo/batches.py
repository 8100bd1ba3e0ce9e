"""The `batches` collection, for the BatchRepo port. Indexes: (status) for the dispatcher's running
batches and the reaper's scheduled starts; (workspaceId, createdAt) for listing a workspace's batches."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId

from dialer.core.machine import BatchMove
from dialer.core.statuses import BatchStatus
from dialer.store.mongo.documents import normalise, unavailable


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
    async def runnable(self, now: dt.datetime) -> list[dict]:
        docs = await self.c.find({"status": BatchStatus.RUNNING.value,
                                  "$or": [{"scheduledAt": None}, {"scheduledAt": {"$lte": now}}]}
                                 ).sort("_id", 1).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def scheduled_due(self, now: dt.datetime) -> list[dict]:
        docs = await self.c.find({"status": BatchStatus.PENDING.value, "scheduledAt": {"$ne": None, "$lte": now}}
                                 ).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def move(self, batch_id: ObjectId, move: BatchMove, now: dt.datetime,
                   set_fields: dict[str, Any] | None = None, unset: tuple[str, ...] = ()) -> bool:
        update: dict = {"$set": {"status": move.target.value, "updatedAt": now, **(set_fields or {})}}
        if unset:
            update["$unset"] = {name: "" for name in unset}
        result = await self.c.update_one({"_id": batch_id, "status": {"$in": move.source_values}}, update)
        return result.modified_count == 1

    @unavailable
    async def note_enqueued(self, batch_id: ObjectId, now: dt.datetime) -> None:
        await self.c.update_one({"_id": batch_id}, {"$set": {"enqueuedAt": now}})
