"""The frequency caps' attempts in SQLite: the CapLedger port (see dialer/ports/).

Table `cap_attempts` (schema V5): one row per counted attempt. `reserve` counts and inserts inside one
writer transaction, so it is exact between every dispatcher process sharing the file.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from bson import ObjectId

from dialer.ports import CapRequest
from dialer.store.sqlite.database import Database
from dialer.store.sqlite.documents import at as from_ms, marks, ms


class SqliteCaps:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def reserve(self, requests: list[CapRequest], token: str, at: dt.datetime,
                      window: dt.timedelta) -> dict[ObjectId, dt.datetime]:
        if not requests:
            return {}
        stamp, since = ms(at), ms(at - window)

        def work(conn: sqlite3.Connection) -> dict[ObjectId, dt.datetime]:
            refused: dict[ObjectId, dt.datetime] = {}
            seen: dict[tuple[bytes, str], list[int]] = {}
            for r in requests:
                key = (r.workspace_id.binary, r.number)
                if key not in seen:
                    conn.execute("DELETE FROM cap_attempts WHERE workspace_id = ? AND number = ? AND at <= ?",
                                 (*key, since))
                    seen[key] = [row[0] for row in conn.execute(
                        "SELECT at FROM cap_attempts WHERE workspace_id = ? AND number = ? ORDER BY at", key)]
                stamps = seen[key]
                if r.limit is not None and len(stamps) >= r.limit:
                    refused[r.call_id] = from_ms(stamps[len(stamps) - r.limit]) + window
                    continue
                conn.execute("INSERT INTO cap_attempts (workspace_id, number, at, call_id, token) VALUES (?, ?, ?, ?, ?)",
                             (*key, stamp, r.call_id.binary, token))
                stamps.append(stamp)
                stamps.sort()
            return refused

        return await self.db.write(work)

    async def release(self, call_ids: list[ObjectId], token: str) -> None:
        ids = [c.binary for c in call_ids]
        if not ids:
            return

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM cap_attempts WHERE token = ? AND call_id IN ({marks(ids)})", (token, *ids))

        await self.db.write(work)

    async def purge(self, before: dt.datetime) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM cap_attempts WHERE at <= ?", (ms(before),)).rowcount

        return await self.db.write(work)

    async def count(self, workspace_id: ObjectId, number: str, since: dt.datetime) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute("SELECT count(*) FROM cap_attempts WHERE workspace_id = ? AND number = ? AND at > ?",
                                (workspace_id.binary, number, ms(since))).fetchone()[0]

        return await self.db.read(work)
