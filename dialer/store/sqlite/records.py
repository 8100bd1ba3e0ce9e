"""Idempotency records and enrollment intakes in SQLite: the IdempotencyRepo and IntakeRepo ports.

Both expire by the caller's clock (purge with `now`), never by the database's. Indexes (schema.py):
`idempotency_expiry` and `intakes_expiry` serve the purges; `intakes_pending` (state, rowid) serves
`unfinished`, oldest first. Compare-and-set (replace_if, take) runs inside one writer transaction.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from dialer.store.sqlite.database import Database
from dialer.store.sqlite.documents import encode, ms, one, stored

PENDING, DONE = "pending", "done"


class SqliteIdempotency:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _put(conn: sqlite3.Connection, doc: dict, verb: str = "INSERT") -> None:
        conn.execute(f"{verb} INTO idempotency (id, state, expires_at, doc) VALUES (?, ?, ?, ?)",
                     (doc["_id"], doc.get("state"), ms(doc.get("expiresAt")), encode(doc)))

    async def insert(self, record: dict) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            try:
                self._put(conn, record)
            except sqlite3.IntegrityError:
                return False
            return True

        return await self.db.write(work)

    async def get(self, record_id: str) -> dict | None:
        return await self.db.read(one, "SELECT doc FROM idempotency WHERE id = ?", (record_id,))

    async def replace_if(self, record_id: str, expect: dict[str, Any], record: dict) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            doc = one(conn, "SELECT doc FROM idempotency WHERE id = ?", (record_id,))
            if doc is None or any(doc.get(name) != stored(value) for name, value in expect.items()):
                return False
            self._put(conn, {**record, "_id": record_id}, "REPLACE")
            return True

        return await self.db.write(work)

    async def finish(self, record_id: str, code: int, body: dict) -> None:
        def work(conn: sqlite3.Connection) -> None:
            doc = one(conn, "SELECT doc FROM idempotency WHERE id = ?", (record_id,))
            if doc is not None:
                self._put(conn, {**doc, "state": "done", "code": code, "body": body}, "REPLACE")

        await self.db.write(work)

    async def release(self, record_id: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM idempotency WHERE id = ? AND state = 'running'", (record_id,))

        await self.db.write(work)

    async def purge(self, now: dt.datetime) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (ms(now),)).rowcount

        return await self.db.write(work)


class SqliteIntakes:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _put(conn: sqlite3.Connection, doc: dict, verb: str = "INSERT") -> None:
        conn.execute(f"{verb} INTO intakes (id, state, lease_until, expires_at, doc) VALUES (?, ?, ?, ?, ?)",
                     (doc["_id"], doc["state"], ms(doc.get("leaseUntil")), ms(doc.get("expiresAt")), encode(doc)))

    @staticmethod
    def _get(conn: sqlite3.Connection, intake_id: str) -> dict | None:
        return one(conn, "SELECT doc FROM intakes WHERE id = ?", (intake_id,))

    @staticmethod
    def _update(conn: sqlite3.Connection, doc: dict) -> None:
        conn.execute("UPDATE intakes SET state = ?, lease_until = ?, expires_at = ?, doc = ? WHERE id = ?",
                     (doc["state"], ms(doc.get("leaseUntil")), ms(doc.get("expiresAt")), encode(doc), doc["_id"]))

    async def insert(self, intake: dict) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            found = self._get(conn, intake["_id"])
            if found is not None:
                return found
            self._put(conn, intake)
            return None

        return await self.db.write(work)

    async def get(self, intake_id: str) -> dict | None:
        return await self.db.read(self._get, intake_id)

    async def take(self, intake_id: str, by: str, until: dt.datetime, now: dt.datetime) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            doc = self._get(conn, intake_id)
            if doc is None or doc["state"] != PENDING or (doc.get("leaseUntil") and doc["leaseUntil"] > stored(now)):
                return None
            doc.update(leaseUntil=stored(until), takenBy=by)
            self._update(conn, doc)
            return doc

        return await self.db.write(work)

    async def unfinished(self, now: dt.datetime, limit: int) -> list[str]:
        def work(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute(
                "SELECT id FROM intakes WHERE state = 'pending' AND (lease_until IS NULL OR lease_until <= ?) "
                "ORDER BY rowid LIMIT ?", (ms(now), int(limit)))]

        return await self.db.read(work)

    async def claim_settlement(self, intake_id: str, note_by: str | None) -> tuple[bool, str | None]:
        def work(conn: sqlite3.Connection) -> tuple[bool, str | None]:
            doc = self._get(conn, intake_id)
            if doc is None or doc.get("creditsSettled"):
                return False, (doc or {}).get("creditsSettledBy")
            doc.update(creditsSettled=True, creditsSettledBy=note_by)
            self._update(conn, doc)
            return True, note_by

        return await self.db.write(work)

    async def finish(self, intake_id: str, now: dt.datetime) -> None:
        def work(conn: sqlite3.Connection) -> None:
            doc = self._get(conn, intake_id)
            if doc is None or doc["state"] == DONE:
                return
            doc.pop("calls", None)
            doc.pop("batch", None)
            doc.update(state=DONE, finishedAt=stored(now))
            self._update(conn, doc)

        await self.db.write(work)

    async def remove_expired(self, intake_id: str, now: dt.datetime) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM intakes WHERE id = ? AND state = 'done' AND expires_at <= ?",
                                (intake_id, ms(now))).rowcount == 1

        return await self.db.write(work)

    async def purge(self, now: dt.datetime) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM intakes WHERE state = 'done' AND expires_at <= ?", (ms(now),)).rowcount

        return await self.db.write(work)
