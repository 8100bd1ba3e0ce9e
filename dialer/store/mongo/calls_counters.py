"""The MongoDB calls' counters, for the CallRepo port: the tallies kept on each batch document by the calls'
transitions (counters.py: a transition and its increment are two writes, so they can drift after a crash), the
recounts the reconciliation compares them with (dialer/services/counters.py), and its corrections. Part of
MongoCalls (calls.py). A recount is one aggregate on the `batch_id` index, named as its hint.
"""

from __future__ import annotations

from typing import Any

import pymongo
from bson import ObjectId

from dialer.ports import Tally, difference
from dialer.store.mongo.counters import CounterBuffer, tallies_of, tally_key
from dialer.store.mongo.documents import aggregate, unavailable

RECOUNT_SECONDS = 600.0  # a recount reads every call of a batch: room for the largest, not a quarter lease


class CounterCalls:
    c: Any
    counters: CounterBuffer

    @unavailable
    async def tallies(self, batch_id: ObjectId) -> list[Tally]:
        """Kept on the batch document by the transitions (counters.py): one read."""
        await self.counters.flush()
        return tallies_of(await self.counters.batches.find_one({"_id": batch_id}, {"tallies": 1}))

    async def recount(self, batch_id: ObjectId) -> list[Tally]:
        return (await self._recount_many([batch_id]))[batch_id]

    @unavailable
    async def _recount_many(self, batch_ids: list[ObjectId]) -> dict[ObjectId, list[Tally]]:
        """A full pass over the batches' calls (the reconciliation's, every few minutes): one aggregate on
        the batch_id index by name, under a timeout for reading whole large batches rather than the client's."""
        with pymongo.timeout(RECOUNT_SECONDS):
            rows = await aggregate(self.c, [
                {"$match": {"batchId": {"$in": list(batch_ids)}}},
                {"$group": {"_id": {"batchId": "$batchId", "status": "$status", "outcome": "$outcome"},
                            "n": {"$sum": 1}, "dialled": {"$sum": {"$cond": [{"$gt": ["$attempts", 0]}, 1, 0]}},
                            "attempts": {"$sum": "$attempts"}}},
            ], hint="batch_id")
        found: dict[ObjectId, list[Tally]] = {b: [] for b in batch_ids}
        for r in rows:
            key = r["_id"]
            found.setdefault(key["batchId"], []).append(
                Tally(key["status"], key.get("outcome"), r["n"], r["dialled"], r["attempts"]))
        return found

    async def audit_many(self, batch_ids: list[ObjectId]) -> dict[ObjectId, tuple[list[Tally], list[Tally]]]:
        """The tallies (this process's increments flushed), one recount of every batch, the tallies again: a
        batch's difference is reported only if its tallies held still meanwhile (else a transition between
        the reads would look like drift). Increments buffered in other processes still show: the
        reconciliation waits for a difference to be seen twice. Three round trips, whatever the batches."""
        if not batch_ids:
            return {}
        before = await self.tallies_many(batch_ids)
        actual = await self._recount_many(batch_ids)
        after = await self.tallies_many(batch_ids)
        return {b: (actual[b], [] if set(after[b]) != set(before[b]) else difference(actual[b], before[b]))
                for b in batch_ids}

    async def correct(self, batch_id: ObjectId, delta: list[Tally]) -> None:
        increments: dict[str, int] = {}
        for t in delta:
            key = tally_key(t.status, t.outcome)
            increments.update({f"tallies.{key}.calls": t.calls, f"tallies.{key}.dialled": t.dialled,
                               f"tallies.{key}.attempts": t.attempts})
        self.counters.add(batch_id, increments)
        await self.counters.flush()

    @unavailable
    async def tallies_many(self, batch_ids: list[ObjectId]) -> dict[ObjectId, list[Tally]]:
        """One read for all of them: the tallies live on the batch documents."""
        await self.counters.flush()
        found = {d["_id"]: tallies_of(d) async for d in self.counters.batches.find(
            {"_id": {"$in": list(batch_ids)}}, {"tallies": 1})}
        return {batch_id: found.get(batch_id, []) for batch_id in batch_ids}
