"""The slot ledger in SQLite: the SlotLedger port (see dialer/ports.py).

One row (`ledger`, id "account"): the version and a document with the slots per batch, the account's
slots and the next dial time. `write` is a compare-and-set on the version inside one writer transaction,
so it holds between every dispatcher process sharing the file.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from bson import ObjectId

from dialer.ports import LedgerState
from dialer.store.sqlite.database import Database
from dialer.store.sqlite.documents import decode, encode

ACCOUNT = "account"
EMPTY = encode({"slots": {}, "all": [], "nextDialAt": None})


def _row(conn: sqlite3.Connection) -> tuple[int, dict]:
    row = conn.execute("SELECT version, doc FROM ledger WHERE id = ?", (ACCOUNT,)).fetchone()
    return (0, decode(EMPTY)) if row is None else (row[0], decode(row[1]))


def _put(conn: sqlite3.Connection, version: int, doc: dict) -> None:
    conn.execute("INSERT INTO ledger (id, version, doc) VALUES (?, ?, ?) "
                 "ON CONFLICT (id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
                 (ACCOUNT, version, encode(doc)))


class SqliteLedger:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def read(self) -> LedgerState:
        version, doc = await self.db.read(_row)
        return LedgerState(version, doc.get("slots") or {}, doc.get("all") or [], doc.get("nextDialAt"))

    async def write(self, version: int, slots: dict[str, list[dict]], all_: list[dict],
                    next_dial_at: dt.datetime | None) -> bool:
        doc = {"slots": {str(b): e for b, e in slots.items()}, "all": all_, "nextDialAt": next_dial_at}

        def work(conn: sqlite3.Connection) -> bool:
            if _row(conn)[0] != version:
                return False
            _put(conn, version + 1, doc)
            return True

        return await self.db.write(work)

    async def release(self, batch_id: ObjectId, call_ids: list[ObjectId], token: str) -> None:
        ids = set(call_ids)
        if not ids:
            return

        def kept(entries: list[dict]) -> list[dict]:
            return [e for e in entries if not (e.get("callId") in ids and e.get("token") == token)]

        def work(conn: sqlite3.Connection) -> None:
            version, doc = _row(conn)
            slots = doc.get("slots") or {}
            if str(batch_id) in slots:
                slots[str(batch_id)] = kept(slots[str(batch_id)])
            _put(conn, version + 1, {**doc, "slots": slots, "all": kept(doc.get("all") or [])})

        await self.db.write(work)
