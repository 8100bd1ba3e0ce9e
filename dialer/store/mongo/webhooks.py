"""Partner webhooks in MongoDB: the WebhookRepo port (see dialer/ports/) on `webhook_endpoints` and
`webhook_messages`, and the relay of the outbox entries the other repositories push (outbox.py).

Indexes (indexes.py): `status_endpoint_due` serves `due_endpoints` and `lease`; `workspace_id` /
`endpoint_id` the log, newest first from a cursor. A lease is a compare-and-set per message on its
status and lease, as calls are claimed.

The retention (`purge_messages`, run by the reaper by the injected clock: no TTL index, whose monitor
follows the server's clock) is served by `status_settled_created` (status, settledAt, createdAt):
`{status: {$in: [delivered, failed]}, settledAt: {$lt: before}}` (settledAt: set when a message becomes
final, unset when it goes back to pending); and, for final messages an older version wrote without
settledAt (there is no migration step on MongoDB), `{status: {$in: [delivered, failed]}, settledAt: null,
createdAt: {$lt: before}, attempts: {$not: {$elemMatch: {at: {$gte: before}}}}}` (created and last
attempted before the cutoff). The ids found (oldest first, at most `limit`) are deleted under the same
filter: a message sent again in between stays.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne

from dialer.ports import OutboxEvent
from dialer.store.mongo.documents import aware, normalise, unavailable
from dialer.store.mongo.outbox import drop_events, pending_events


FINAL = ["delivered", "failed"]


def _free(now: dt.datetime) -> dict:
    return {"$or": [{"acquiredUntil": None}, {"acquiredUntil": {"$lte": now}}]}


class MongoWebhooks:
    def __init__(self, db: Any) -> None:
        self.db = db
        self.endpoints = db["webhook_endpoints"]
        self.messages = db["webhook_messages"]

    # ---- endpoints -------------------------------------------------------------------------------
    @unavailable
    async def insert_endpoint(self, endpoint: dict) -> None:
        await self.endpoints.insert_one(dict(endpoint))

    @unavailable
    async def get_endpoint(self, endpoint_id: ObjectId) -> dict | None:
        if not isinstance(endpoint_id, ObjectId):
            return None
        return normalise(await self.endpoints.find_one({"_id": endpoint_id}))

    @unavailable
    async def list_endpoints(self, workspace_id: ObjectId) -> list[dict]:
        return [normalise(d) for d in await self.endpoints.find({"workspaceId": workspace_id}).sort("_id", 1).to_list(None)]

    @unavailable
    async def update_endpoint(self, endpoint_id: ObjectId, set_fields: dict[str, Any],
                              unset: tuple[str, ...] = ()) -> dict | None:
        if not isinstance(endpoint_id, ObjectId):
            return None
        update: dict = {"$set": dict(set_fields)} if set_fields else {}
        if unset:
            update["$unset"] = {name: "" for name in unset}
        if not update:
            return await self.get_endpoint(endpoint_id)
        return normalise(await self.endpoints.find_one_and_update({"_id": endpoint_id}, update,
                                                                  return_document=ReturnDocument.AFTER))

    @unavailable
    async def delete_endpoint(self, endpoint_id: ObjectId) -> bool:
        if not isinstance(endpoint_id, ObjectId):
            return False
        deleted = (await self.endpoints.delete_one({"_id": endpoint_id})).deleted_count == 1
        await self.messages.delete_many({"endpointId": endpoint_id})
        return deleted

    @unavailable
    async def note_result(self, endpoint_id: ObjectId, ok: bool, now: dt.datetime) -> dict | None:
        if ok:
            return await self.update_endpoint(endpoint_id, {}, ("failingSince",))
        await self.endpoints.update_one({"_id": endpoint_id, "failingSince": None}, {"$set": {"failingSince": now}})
        return await self.get_endpoint(endpoint_id)

    # ---- the outbox ------------------------------------------------------------------------------
    @unavailable
    async def outbox(self, limit: int) -> list[OutboxEvent]:
        return await pending_events(self.db, limit)

    @unavailable
    async def relay(self, events: list[OutboxEvent], messages: list[dict]) -> None:
        if messages:
            await self.messages.bulk_write([UpdateOne({"_id": m["_id"]}, {"$setOnInsert": m}, upsert=True)
                                            for m in messages], ordered=False)
        await drop_events(self.db, events)

    # ---- messages --------------------------------------------------------------------------------
    @unavailable
    async def due_endpoints(self, now: dt.datetime, limit: int) -> list[ObjectId]:
        found = await self.messages.distinct("endpointId", {"status": "pending", "nextAttemptAt": {"$lte": now},
                                                            **_free(now)})
        return sorted(found)[:limit]

    @unavailable
    async def lease(self, endpoint_id: ObjectId, now: dt.datetime, by: str, until: dt.datetime,
                    limit: int) -> list[dict]:
        due = {"status": "pending", "endpointId": endpoint_id, "nextAttemptAt": {"$lte": now}, **_free(now)}
        leased = []
        for doc in await self.messages.find(due, {"_id": 1}).sort([("nextAttemptAt", 1), ("_id", 1)]).limit(limit).to_list(None):
            taken = await self.messages.find_one_and_update(
                {**due, "_id": doc["_id"]}, {"$set": {"acquiredBy": by, "acquiredUntil": until}},
                return_document=ReturnDocument.AFTER)
            if taken is not None:
                leased.append(normalise(taken))
        return leased

    @unavailable
    async def record_attempt(self, message_id: str, by: str, attempt: dict, status: str, step: int,
                             next_attempt_at: dt.datetime | None) -> bool:
        fields = {"status": status, "step": step, "nextAttemptAt": next_attempt_at}
        unset = {"acquiredBy": "", "acquiredUntil": ""}
        if status in FINAL:
            fields["settledAt"] = attempt.get("at")
        else:
            unset["settledAt"] = ""
        result = await self.messages.update_one({"_id": message_id, "acquiredBy": by},
                                                {"$push": {"attempts": attempt}, "$set": fields, "$unset": unset})
        return result.modified_count == 1

    @unavailable
    async def get_message(self, message_id: str) -> dict | None:
        return _message(await self.messages.find_one({"_id": str(message_id)}))

    @unavailable
    async def list_messages(self, workspace_id: ObjectId, endpoint_id: ObjectId | None, status: str | None,
                            type_: str | None, before: str | None, limit: int) -> list[dict]:
        flt: dict[str, Any] = {"workspaceId": workspace_id}
        for name, value in (("endpointId", endpoint_id), ("status", status), ("type", type_)):
            if value is not None:
                flt[name] = value
        if before is not None:
            flt["_id"] = {"$lt": before}
        return [_message(d) for d in await self.messages.find(flt).sort("_id", -1).limit(limit).to_list(None)]

    @unavailable
    async def requeue(self, message_id: str, now: dt.datetime, step: int) -> dict | None:
        return _message(await self.messages.find_one_and_update(
            {"_id": str(message_id)}, {"$set": {"status": "pending", "step": step, "nextAttemptAt": now},
                                       "$unset": {"settledAt": ""}},
            return_document=ReturnDocument.AFTER))

    @unavailable
    async def recover(self, endpoint_id: ObjectId, since: dt.datetime, now: dt.datetime, step: int) -> int:
        result = await self.messages.update_many(
            {"endpointId": endpoint_id, "status": "failed", "createdAt": {"$gte": since}},
            {"$set": {"status": "pending", "step": step, "nextAttemptAt": now}, "$unset": {"settledAt": ""}})
        return result.modified_count

    @unavailable
    async def oldest_pending(self) -> dt.datetime | None:
        found = await self.messages.find({"status": "pending"}, {"createdAt": 1}).sort("createdAt", 1).limit(1).to_list(None)
        return aware(found[0]["createdAt"]) if found else None

    @unavailable
    async def purge_messages(self, before: dt.datetime, limit: int) -> int:
        deleted = 0
        for flt, order in (({"status": {"$in": FINAL}, "settledAt": {"$lt": before}}, "settledAt"),
                           ({"status": {"$in": FINAL}, "settledAt": None, "createdAt": {"$lt": before},
                             "attempts": {"$not": {"$elemMatch": {"at": {"$gte": before}}}}}, "createdAt")):
            if deleted >= limit:
                break
            found = await self.messages.find(flt, {"_id": 1}).sort(order, 1).limit(limit - deleted).to_list(None)
            if found:
                result = await self.messages.delete_many({**flt, "_id": {"$in": [d["_id"] for d in found]}})
                deleted += result.deleted_count
        return deleted


def _message(doc: dict | None) -> dict | None:
    """A message with its datetimes aware, those of its attempts too."""
    doc = normalise(doc)
    if doc is not None:
        doc["attempts"] = [{**a, "at": aware(a.get("at"))} for a in doc.get("attempts", ())]
    return doc
