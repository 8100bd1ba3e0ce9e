"""The SQLite calls' counters, for the CallRepo port: the tallies per batch (status, outcome), kept by triggers on
`calls` in the calls' own transaction (schema.py), so they cannot drift (`tallies_exact`), read for many batches
in one query; and the recounts the reconciliation compares them with (dialer/services/counters.py). Part of
SqliteCalls (calls.py). Indexes: the `tallies` table's key (batch, status, outcome); a recount walks
`calls_batch_id`.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

from bson import ObjectId

from dialer.ports import Tally, difference
from dialer.store.sqlite.documents import marks

AUDIT_QUERY = 500  # batches per recount statement (SQLite's bound on a statement's parameters)


def tallies_from(rows_: Iterable[tuple]) -> list[Tally]:
    return [Tally(status, outcome or None, calls, dialled, attempts)
            for status, outcome, calls, dialled, attempts in rows_ if calls]


class CounterCalls:
    db: object

    async def tallies(self, batch_id: ObjectId) -> list[Tally]:
        return (await self.tallies_many([batch_id]))[batch_id]

    async def tallies_many(self, batch_ids: list[ObjectId]) -> dict[ObjectId, list[Tally]]:
        return await self.db.read(_kept, batch_ids) if batch_ids else {}

    async def recount(self, batch_id: ObjectId) -> list[Tally]:
        return await self.db.read(_recount, batch_id)

    async def audit_many(self, batch_ids: list[ObjectId]) -> dict[ObjectId, tuple[list[Tally], list[Tally]]]:
        """One read transaction: the recounts and the kept tallies of one snapshot (read apart, a transition
        committed between the two reads would look like drift)."""
        def work(conn: sqlite3.Connection) -> dict[ObjectId, tuple[list[Tally], list[Tally]]]:
            out = {}
            for start in range(0, len(batch_ids), AUDIT_QUERY):
                part = batch_ids[start:start + AUDIT_QUERY]
                actual, kept = _recount_many(conn, part), _kept(conn, part)
                out.update((b, (actual[b], difference(actual[b], kept[b]))) for b in part)
            return out

        return await self.db.read(work) if batch_ids else {}

    async def correct(self, batch_id: ObjectId, delta: list[Tally]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO tallies (batch_id, status, outcome, calls, dialled, attempts) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (batch_id, status, outcome) DO UPDATE SET calls = calls + excluded.calls, "
                "dialled = dialled + excluded.dialled, attempts = attempts + excluded.attempts",
                [(batch_id.binary, t.status, t.outcome or "", t.calls, t.dialled, t.attempts) for t in delta])

        await self.db.write(work)


def _kept(conn: sqlite3.Connection, batch_ids: list[ObjectId]) -> dict[ObjectId, list[Tally]]:
    found: dict[bytes, list[tuple]] = {}
    ids = [b.binary for b in batch_ids]
    for row in conn.execute(f"SELECT batch_id, status, outcome, calls, dialled, attempts FROM tallies "
                            f"WHERE batch_id IN ({marks(ids)}) ORDER BY batch_id, status, outcome", ids):
        found.setdefault(row[0], []).append(row[1:])
    return {b: tallies_from(found.get(b.binary, ())) for b in batch_ids}


def _recount(conn: sqlite3.Connection, batch_id: ObjectId) -> list[Tally]:
    return _recount_many(conn, [batch_id])[batch_id]


def _recount_many(conn: sqlite3.Connection, batch_ids: list[ObjectId]) -> dict[ObjectId, list[Tally]]:
    found: dict[bytes, list[tuple]] = {}
    ids = [b.binary for b in batch_ids]
    for row in conn.execute(
            f"SELECT batch_id, status, coalesce(outcome, ''), count(*), sum(attempts > 0), sum(attempts) "
            f"FROM calls INDEXED BY calls_batch_id WHERE batch_id IN ({marks(ids)}) GROUP BY batch_id, status, outcome "
            f"ORDER BY batch_id, status, coalesce(outcome, '')", ids):
        found.setdefault(row[0], []).append(row[1:])
    return {b: tallies_from(found.get(b.binary, ())) for b in batch_ids}
