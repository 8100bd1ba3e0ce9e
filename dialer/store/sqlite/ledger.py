"""The slot ledger in SQLite: the SlotLedger port (see dialer/ports/).

One row (`ledger`, id "account"): the version and a document with the reservations not seen claimed yet
(`pending`) and the next dial time. `read` takes that row, the pending calls' holders and the calls in
flight per batch (the partial index `calls_flying`) in one snapshot; `write` is a compare-and-set on the
version inside one writer transaction, so it holds between every dispatcher process sharing the file.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from bson import ObjectId

from dialer.ports import FlyingCounts, LedgerState, LedgerWrite
from dialer.store.sqlite.database import Database
from dialer.store.sqlite.call_rows import holders_of
from dialer.store.sqlite.documents import decode, encode, marks

ACCOUNT = "account"
EMPTY = encode({"pending": [], "nextDialAt": None})
# The same condition as the partial index calls_flying (schema V7), so the count reads the index alone.
IN_FLIGHT = "status IN ('dialing', 'ringing', 'in_progress')"
FLYING = f"SELECT batch_id, COUNT(*) FROM calls INDEXED BY calls_flying WHERE {IN_FLIGHT} GROUP BY batch_id"
FLYING_AMONG = ("SELECT batch_id, COUNT(*) FROM calls INDEXED BY calls_flying WHERE batch_id IN ({}) AND " + IN_FLIGHT
                + " GROUP BY batch_id")
FLYING_TOTAL = f"SELECT COUNT(*) FROM calls INDEXED BY calls_flying WHERE {IN_FLIGHT}"


def _row(conn: sqlite3.Connection) -> tuple[int, dict]:
    row = conn.execute("SELECT version, doc FROM ledger WHERE id = ?", (ACCOUNT,)).fetchone()
    return (0, decode(EMPTY)) if row is None else (row[0], decode(row[1]))


def _put(conn: sqlite3.Connection, version: int, doc: dict) -> None:
    conn.execute("INSERT INTO ledger (id, version, doc) VALUES (?, ?, ?) "
                 "ON CONFLICT (id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
                 (ACCOUNT, version, encode(doc)))


def read_in(conn: sqlite3.Connection, batch_ids: list[ObjectId] | None = None,
            settled: frozenset[str] = frozenset()) -> LedgerState:
    """`SqliteLedger.read` in a unit of work of its own or another's (the dispatcher's look, SqliteCalls.look)."""
    version, doc = _row(conn)
    pending = doc.get("pending") or []
    unsettled = [e for e in pending if e.get("token") not in settled]
    if unsettled:
        holders = holders_of(conn, [e["callId"] for e in unsettled])
        for entry in unsettled:
            entry["holder"] = holders.get(entry["callId"])
    if batch_ids is None:
        flying = FlyingCounts(dict(conn.execute(FLYING)))
    else:
        ids = [b.binary for b in batch_ids]
        counts = dict(conn.execute(FLYING_AMONG.format(marks(ids)), ids)) if ids else {}
        flying = FlyingCounts(counts, conn.execute(FLYING_TOTAL).fetchone()[0], frozenset(ids))
    return LedgerState(version, pending, flying, doc.get("nextDialAt"))


def write_in(conn: sqlite3.Connection, write: LedgerWrite) -> bool:
    """`SqliteLedger.write` in a unit of work of its own or another's (a claim's, SqliteCalls.claim)."""
    if _row(conn)[0] != write.version:
        return False
    _put(conn, write.version + 1, {"pending": write.pending, "nextDialAt": write.next_dial_at})
    return True


class SqliteLedger:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def read(self, batch_ids: list[ObjectId] | None = None, settled: frozenset[str] = frozenset()) -> LedgerState:
        return await self.db.read(read_in, batch_ids, settled)

    async def write(self, version: int, pending: list[dict], next_dial_at: dt.datetime | None) -> bool:
        return await self.db.write(write_in, LedgerWrite(version, pending, next_dial_at))

    async def release(self, call_ids: list[ObjectId], token: str) -> None:
        ids = set(call_ids)
        if not ids:
            return

        def work(conn: sqlite3.Connection) -> None:
            version, doc = _row(conn)
            pending = [e for e in doc.get("pending") or [] if not (e.get("callId") in ids and e.get("token") == token)]
            _put(conn, version + 1, {**doc, "pending": pending})

        await self.db.write(work)
