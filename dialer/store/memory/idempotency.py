"""Idempotency records in memory: the IdempotencyRepo port (see dialer/ports.py).

Records live in one dict by _id ("<workspaceId>:<key>"). Index: a sorted list of (expiresAt, _id)
so `purge(now)` walks only the records that have expired. Expiry is the caller's clock: nothing
here deletes on its own. Every method is synchronous inside, hence atomic on the event loop.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sortedcontainers import SortedList

from dialer.store.memory._common import clone, normalised, utc


class MemoryIdempotency:
    def __init__(self) -> None:
        self._docs: dict[str, dict] = {}
        self._expiry: SortedList = SortedList()  # (expiresAt, _id)

    def _index(self, doc: dict) -> None:
        if doc.get("expiresAt") is not None:
            self._expiry.add((doc["expiresAt"], doc["_id"]))

    def _unindex(self, doc: dict) -> None:
        if doc.get("expiresAt") is not None:
            self._expiry.remove((doc["expiresAt"], doc["_id"]))

    async def insert(self, record: dict) -> bool:
        if record["_id"] in self._docs:
            return False
        doc = normalised(record)
        self._docs[doc["_id"]] = doc
        self._index(doc)
        return True

    async def get(self, record_id: str) -> dict | None:
        doc = self._docs.get(record_id)
        return None if doc is None else clone(doc)

    async def replace_if(self, record_id: str, expect: dict[str, Any], record: dict) -> bool:
        doc = self._docs.get(record_id)
        if doc is None:
            return False
        for name, value in expect.items():
            if doc.get(name) != (utc(value) if isinstance(value, dt.datetime) else value):
                return False
        new = normalised(record)
        new["_id"] = record_id
        self._unindex(doc)
        self._docs[record_id] = new
        self._index(new)
        return True

    async def finish(self, record_id: str, code: int, body: dict) -> None:
        doc = self._docs.get(record_id)
        if doc is not None:
            doc.update(state="done", code=code, body=normalised(body))

    async def release(self, record_id: str) -> None:
        doc = self._docs.get(record_id)
        if doc is not None and doc.get("state") == "running":
            self._unindex(doc)
            del self._docs[record_id]

    async def purge(self, now: dt.datetime) -> int:
        now = utc(now)
        gone = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, record_id = self._expiry.pop(0)
            del self._docs[record_id]
            gone += 1
        return gone
