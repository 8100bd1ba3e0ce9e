"""The `idempotency` collection, for the IdempotencyRepo port. Index: (expiresAt) for purge(); no TTL
index, since MongoDB's TTL monitor runs on the server's clock, not the engine's injected one."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo.errors import DuplicateKeyError

from dialer.store.mongo.documents import normalise, unavailable


class MongoIdempotency:
    def __init__(self, collection: Any) -> None:
        self.c = collection

    @unavailable
    async def insert(self, record: dict) -> bool:
        try:
            await self.c.insert_one(dict(record))
        except DuplicateKeyError:
            return False
        return True

    @unavailable
    async def get(self, record_id: str) -> dict | None:
        return normalise(await self.c.find_one({"_id": record_id}))

    @unavailable
    async def replace_if(self, record_id: str, expect: dict[str, Any], record: dict) -> bool:
        body = {k: v for k, v in record.items() if k != "_id"}
        result = await self.c.replace_one({"_id": record_id, **expect}, body)
        return result.modified_count == 1

    @unavailable
    async def finish(self, record_id: str, code: int, body: dict) -> None:
        await self.c.update_one({"_id": record_id}, {"$set": {"state": "done", "code": code, "body": body}})

    @unavailable
    async def release(self, record_id: str) -> None:
        await self.c.delete_one({"_id": record_id, "state": "running"})

    @unavailable
    async def purge(self, now: dt.datetime) -> int:
        return (await self.c.delete_many({"expiresAt": {"$lte": now}})).deleted_count
