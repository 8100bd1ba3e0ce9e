"""Enrollment intakes in memory: the IntakeRepo port (see dialer/ports.py).

Documents live in one dict by _id. Indexes: the ids of pending intakes in insertion order
(`unfinished`), and a sorted list of (expiresAt, _id) of the done ones (`purge`). Expiry is the
caller's clock. Every method is synchronous inside, hence atomic on the event loop.
"""

from __future__ import annotations

import datetime as dt

from sortedcontainers import SortedList

from dialer.store.memory._common import clone, normalised, utc

PENDING, DONE = "pending", "done"


class MemoryIntakes:
    def __init__(self) -> None:
        self._docs: dict[str, dict] = {}
        self._pending: dict[str, None] = {}  # insertion order = oldest first
        self._done_expiry: SortedList = SortedList()  # (expiresAt, _id)

    async def insert(self, intake: dict) -> dict | None:
        found = self._docs.get(intake["_id"])
        if found is not None:
            return clone(found)
        doc = normalised(intake)
        self._docs[doc["_id"]] = doc
        if doc["state"] == PENDING:
            self._pending[doc["_id"]] = None
        return None

    async def get(self, intake_id: str) -> dict | None:
        doc = self._docs.get(intake_id)
        return None if doc is None else clone(doc)

    async def take(self, intake_id: str, by: str, until: dt.datetime, now: dt.datetime) -> dict | None:
        doc = self._docs.get(intake_id)
        if doc is None or doc["state"] != PENDING or (doc.get("leaseUntil") and doc["leaseUntil"] > utc(now)):
            return None
        doc["leaseUntil"], doc["takenBy"] = utc(until), by
        return clone(doc)

    async def unfinished(self, now: dt.datetime, limit: int) -> list[str]:
        now = utc(now)
        out = []
        for intake_id in self._pending:
            lease = self._docs[intake_id].get("leaseUntil")
            if lease is None or lease <= now:
                out.append(intake_id)
                if len(out) >= limit:
                    break
        return out

    async def finish(self, intake_id: str, now: dt.datetime) -> None:
        doc = self._docs.get(intake_id)
        if doc is None or doc["state"] == DONE:
            return
        doc["state"] = DONE
        doc.pop("calls", None)
        doc.pop("batch", None)
        doc["finishedAt"] = utc(now)
        self._pending.pop(intake_id, None)
        self._done_expiry.add((doc["expiresAt"], intake_id))

    async def remove_expired(self, intake_id: str, now: dt.datetime) -> bool:
        doc = self._docs.get(intake_id)
        if doc is None or doc["state"] != DONE or doc["expiresAt"] > utc(now):
            return False
        self._done_expiry.remove((doc["expiresAt"], intake_id))
        del self._docs[intake_id]
        return True

    async def purge(self, now: dt.datetime) -> int:
        now = utc(now)
        gone = 0
        while self._done_expiry and self._done_expiry[0][0] <= now:
            _, intake_id = self._done_expiry.pop(0)
            del self._docs[intake_id]
            gone += 1
        return gone
