"""The frequency caps' attempts in MongoDB: the CapLedger port (see dialer/ports/).

Collection `caps`: one document per (workspace, number), `_id: "<workspaceId>:<number>"`, with its
counted attempts `[{at, callId, token}]` and a `version`. `reserve` reads the numbers' documents in one
query and writes each number by compare-and-set on its version (an insert for a number seen first),
again from a fresh read when another writer came first: exact between any number of dispatchers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from dialer.ports import CapRequest, StoreUnavailable
from dialer.store.mongo.documents import aware, unavailable

ROUNDS = 20  # compare-and-set attempts per number before the store is called unavailable


def _key(workspace_id: ObjectId, number: str) -> str:
    return f"{workspace_id}:{number}"


class MongoCaps:
    def __init__(self, collection: Any) -> None:
        self.c = collection

    @unavailable
    async def reserve(self, requests: list[CapRequest], token: str, at: dt.datetime,
                      window: dt.timedelta) -> dict[ObjectId, dt.datetime]:
        if not requests:
            return {}
        since = at - window
        by_key: dict[str, list[CapRequest]] = {}
        for r in requests:
            by_key.setdefault(_key(r.workspace_id, r.number), []).append(r)
        docs = {d["_id"]: d async for d in self.c.find({"_id": {"$in": list(by_key)}})}
        refused: dict[ObjectId, dt.datetime] = {}
        for key, wanted in by_key.items():
            for _ in range(ROUNDS):
                doc = docs.get(key)
                entries = [e for e in (doc or {}).get("attempts", []) if aware(e["at"]) > since]
                stamps = sorted(aware(e["at"]) for e in entries)
                out: dict[ObjectId, dt.datetime] = {}
                for r in wanted:
                    if r.limit is not None and len(stamps) >= r.limit:
                        out[r.call_id] = stamps[len(stamps) - r.limit] + window
                        continue
                    entries.append({"at": at, "callId": r.call_id, "token": token})
                    stamps = sorted([*stamps, at])
                if await self._put(key, doc, entries):
                    refused.update(out)
                    break
                docs[key] = await self.c.find_one({"_id": key})
            else:
                raise StoreUnavailable("caps: too many concurrent writers")
        return refused

    async def _put(self, key: str, doc: dict | None, entries: list[dict]) -> bool:
        if doc is None:
            try:
                await self.c.insert_one({"_id": key, "version": 1, "attempts": entries})
                return True
            except DuplicateKeyError:
                return False
        result = await self.c.update_one({"_id": key, "version": doc["version"]},
                                         {"$set": {"attempts": entries}, "$inc": {"version": 1}})
        return result.matched_count == 1

    @unavailable
    async def release(self, call_ids: list[ObjectId], token: str) -> None:
        if call_ids:
            await self.c.update_many({"attempts.callId": {"$in": list(call_ids)}},
                                     {"$pull": {"attempts": {"callId": {"$in": list(call_ids)}, "token": token}},
                                      "$inc": {"version": 1}})

    @unavailable
    async def purge(self, before: dt.datetime) -> int:
        old = {"at": {"$lte": before}}
        result = await self.c.update_many({"attempts": {"$elemMatch": old}},
                                          {"$pull": {"attempts": old}, "$inc": {"version": 1}})
        await self.c.delete_many({"attempts": {"$size": 0}})
        return result.modified_count

    @unavailable
    async def count(self, workspace_id: ObjectId, number: str, since: dt.datetime) -> int:
        doc = await self.c.find_one({"_id": _key(workspace_id, number)})
        return sum(1 for e in (doc or {}).get("attempts", []) if aware(e["at"]) > since)
