"""Each workspace's do-not-call list in MongoDB: the DncRepo port (see dialer/ports/) on `dnc`.

A document per (workspace, number) under `_id` "<workspaceId>:<number>": `listed` is one `_id $in` lookup
(the primary index, on a real server and in mongomock alike), `add` an unordered insert whose duplicate-key
refusals are the numbers already listed. Index (indexes.py): `workspace_number` (unique) serves the pages
by number from a cursor and the prefix search, and holds the pair unique on its own.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from bson import ObjectId
from pymongo.errors import BulkWriteError

from dialer.store.mongo.documents import DUPLICATE_KEY, normalise, unavailable

INSERT_CHUNK = 10_000


def _id(workspace_id: ObjectId, number: str) -> str:
    return f"{workspace_id}:{number}"


def _entry(doc: dict | None) -> dict | None:
    if doc is None:
        return None
    doc = normalise(doc)
    doc.pop("_id", None)
    return doc


class MongoDnc:
    def __init__(self, collection: Any) -> None:
        self.c = collection

    @unavailable
    async def add(self, entries: list[dict]) -> int:
        added = 0
        for start in range(0, len(entries), INSERT_CHUNK):
            docs = [{"_id": _id(e["workspaceId"], e["number"]), **e} for e in entries[start:start + INSERT_CHUNK]]
            try:
                result = await self.c.insert_many(docs, ordered=False)
                added += len(result.inserted_ids)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                added += exc.details.get("nInserted", len(docs) - len(errors))
        return added

    @unavailable
    async def get(self, workspace_id: ObjectId, number: str) -> dict | None:
        return _entry(await self.c.find_one({"_id": _id(workspace_id, number)}))

    @unavailable
    async def remove(self, workspace_id: ObjectId, number: str) -> bool:
        return (await self.c.delete_one({"_id": _id(workspace_id, number)})).deleted_count == 1

    @unavailable
    async def page(self, workspace_id: ObjectId, prefix: str | None, after: str | None, limit: int) -> list[dict]:
        if limit <= 0:
            return []
        number: dict = {}
        if prefix:
            number["$regex"] = "^" + re.escape(prefix)
        if after is not None:
            number["$gt"] = after
        query = {"workspaceId": workspace_id, **({"number": number} if number else {})}
        docs = await self.c.find(query).sort("number", 1).limit(limit).to_list(None)
        return [_entry(d) for d in docs]

    @unavailable
    async def listed(self, keys: Iterable[tuple[ObjectId, str]]) -> dict[tuple[ObjectId, str], dict]:
        ids = list(dict.fromkeys(_id(w, n) for w, n in keys))
        found = {}
        for start in range(0, len(ids), INSERT_CHUNK):
            async for doc in self.c.find({"_id": {"$in": ids[start:start + INSERT_CHUNK]}}):
                entry = _entry(doc)
                found[(entry["workspaceId"], entry["number"])] = entry
        return found

    @unavailable
    async def count(self, workspace_id: ObjectId) -> int:
        return await self.c.count_documents({"workspaceId": workspace_id})
