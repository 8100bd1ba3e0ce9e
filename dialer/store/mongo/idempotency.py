"""The `idempotency` collection, for the IdempotencyRepo port. Index: (expiresAt) for purge(); no TTL
index, since MongoDB's TTL monitor runs on the server's clock, not the engine's injected one.

`convert_legacy_records`, a start-up upgrade (indexes.py runs it at every start): records of the first
format (named by their Idempotency-Key, the answer in plain: no `format` field) are rewritten in the
current one (dialer/core/sealed_answers.py), the new record inserted, then the old deleted if it did not
change meanwhile. It runs at every start, so in a rolling upgrade the last new process to start converts
what the old ones wrote until they stopped. Finding them scans the collection on the server (ids only):
a day of records, DIALER_IDEMPOTENCY_TTL; the step can go in a release made a TTL after this one.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pymongo.errors import DuplicateKeyError

from dialer.core.sealed_answers import from_legacy
from dialer.store.mongo.documents import normalise, unavailable

log = logging.getLogger("dialer.store.idempotency")
LEGACY = {"format": {"$exists": False}}


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


async def convert_legacy_records(collection: Any, attempts: int = 3) -> int:
    """Rewrite the records of the first format in the current one; how many were converted (dropped: those
    that cannot be, a finished record without a readable answer, whose key then runs anew)."""
    converted = dropped = 0
    for old_id in [doc["_id"] for doc in await collection.find(LEGACY, {"_id": 1}).to_list(None)]:
        for _ in range(attempts):  # an old process still running may change the record meanwhile: read again
            old = await collection.find_one({"_id": old_id, **LEGACY})
            if old is None:
                break
            new = from_legacy(old)
            inserted = False
            if new is not None:
                try:
                    await collection.insert_one(new)
                    inserted = True
                except DuplicateKeyError:  # converted by another process starting now, or claimed anew by its key
                    pass
            unchanged = {name: old.get(name) for name in ("state", "claimedUntil", "expiresAt", "code")}
            if (await collection.delete_one({"_id": old_id, **LEGACY, **unchanged})).deleted_count == 1:
                converted, dropped = converted + (new is not None), dropped + (new is None)
                break
            if inserted:
                await collection.delete_one({"_id": new["_id"]})
    if converted or dropped:
        log.info("idempotency records of the first format converted (named by the key's hash, answers sealed)",
                 extra={"converted": converted, "dropped": dropped})
    return converted
