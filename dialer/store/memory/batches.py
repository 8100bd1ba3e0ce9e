"""Batches in memory: the BatchRepo port (see dialer/ports.py).

Documents live in one dict by _id. Indexes: the set of running batch ids (`runnable`) and the set of
pending batch ids (`scheduled_due`), both small, sorted when read; per workspace, the sorted ids of its
batches (`list`, newest first, from a cursor); publicId -> _id (`by_public_id`); (updatedAt, _id)
sorted (`updated_since`).
Every method is synchronous inside (nothing awaited), hence atomic on the event loop.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from sortedcontainers import SortedList

from dialer.core.machine import BatchMove
from dialer.core.statuses import BatchStatus
from dialer.store.memory._common import clone, normalised, utc

RUNNING = BatchStatus.RUNNING.value
PENDING = BatchStatus.PENDING.value


class MemoryBatches:
    def __init__(self) -> None:
        self._docs: dict[ObjectId, dict] = {}
        self._by_status: dict[str, set[ObjectId]] = {RUNNING: set(), PENDING: set()}
        self._of_workspace: dict[ObjectId, SortedList] = {}
        self._by_public_id: dict[str, ObjectId] = {}
        self._by_update = SortedList()  # (updatedAt, _id)

    def _index(self, doc: dict) -> None:
        ids = self._by_status.get(doc.get("status"))
        if ids is not None:
            ids.add(doc["_id"])
        if doc.get("updatedAt") is not None:
            self._by_update.add((doc["updatedAt"], doc["_id"]))

    def _unindex(self, doc: dict) -> None:
        ids = self._by_status.get(doc.get("status"))
        if ids is not None:
            ids.discard(doc["_id"])
        if doc.get("updatedAt") is not None:
            self._by_update.discard((doc["updatedAt"], doc["_id"]))

    async def insert(self, batch: dict) -> None:
        if batch["_id"] in self._docs:
            raise ValueError(f"batch {batch['_id']} exists")
        doc = {k: normalised(v) for k, v in batch.items()}
        doc["status"] = str(doc["status"])
        self._docs[doc["_id"]] = doc
        self._index(doc)
        self._of_workspace.setdefault(doc["workspaceId"], SortedList()).add(doc["_id"])
        if doc.get("publicId"):
            self._by_public_id[doc["publicId"]] = doc["_id"]

    async def get(self, batch_id: ObjectId) -> dict | None:
        doc = self._docs.get(batch_id)
        return None if doc is None else clone(doc)

    async def by_public_id(self, public_id: str) -> dict | None:
        batch_id = self._by_public_id.get(public_id)
        return None if batch_id is None else await self.get(batch_id)

    async def runnable(self, now: dt.datetime) -> list[dict]:
        now = utc(now)
        return [clone(self._docs[i]) for i in sorted(self._by_status[RUNNING])
                if self._docs[i].get("scheduledAt") is None or self._docs[i]["scheduledAt"] <= now]

    async def scheduled_due(self, now: dt.datetime) -> list[dict]:
        now = utc(now)
        return [clone(self._docs[i]) for i in sorted(self._by_status[PENDING])
                if self._docs[i].get("scheduledAt") is not None and self._docs[i]["scheduledAt"] <= now]

    async def updated_since(self, since: dt.datetime) -> list[dict]:
        ids = sorted(batch_id for _, batch_id in self._by_update.irange((utc(since),), None))
        return [clone(self._docs[i]) for i in ids]

    async def move(self, batch_id: ObjectId, move: BatchMove, now: dt.datetime,
                   set_fields: dict[str, Any] | None = None, unset: tuple[str, ...] = ()) -> bool:
        doc = self._docs.get(batch_id)
        if doc is None or doc["status"] not in {s.value for s in move.sources}:
            return False
        self._unindex(doc)
        for name in unset:
            doc.pop(name, None)
        for name, value in (set_fields or {}).items():
            doc[name] = normalised(value)
        doc["status"] = move.target.value
        doc["updatedAt"] = utc(now)
        self._index(doc)
        return True

    async def note_enqueued(self, batch_id: ObjectId, now: dt.datetime) -> None:
        doc = self._docs.get(batch_id)
        if doc is not None:
            doc["enqueuedAt"] = utc(now)

    async def list(self, workspace_id: ObjectId, statuses: list[str] | None, agent_id: ObjectId | None,
                   before: ObjectId | None, limit: int) -> list[dict]:
        ids = self._of_workspace.get(workspace_id)
        if not ids:
            return []
        wanted = set(statuses) if statuses else None
        end = ids.bisect_left(before) if before is not None else len(ids)
        out = []
        for i in range(end - 1, -1, -1):  # newest first; filters walk at most the workspace's batches
            doc = self._docs[ids[i]]
            if (wanted is None or doc["status"] in wanted) and (agent_id is None or doc["agentId"] == agent_id):
                out.append(clone(doc))
                if len(out) == limit:
                    break
        return out

    async def update(self, batch_id: ObjectId, statuses: list[str], set_fields: dict[str, Any],
                     now: dt.datetime) -> dict | None:
        doc = self._docs.get(batch_id)
        if doc is None or doc["status"] not in statuses:
            return None
        self._unindex(doc)
        for name, value in set_fields.items():
            doc[name] = normalised(value)
        doc["updatedAt"] = utc(now)
        self._index(doc)
        return clone(doc)

    async def delete(self, batch_id: ObjectId) -> bool:
        doc = self._docs.pop(batch_id, None)
        if doc is None:
            return False
        self._unindex(doc)
        self._of_workspace[doc["workspaceId"]].discard(batch_id)
        self._by_public_id.pop(doc.get("publicId"), None)
        return True
