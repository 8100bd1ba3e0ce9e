"""Each workspace's do-not-call list in SQLite: the DncRepo port (see dialer/ports/).

One row per (workspace, number) in the `dnc` table (schema.py, version 4), whose primary key serves every
query: `listed` and `get` are key probes (a batch of numbers is one `IN` list per workspace), `page` walks
the key from a cursor, a prefix search is a range on it. `add` is `INSERT OR IGNORE`: the first listing of
a number stands.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

from bson import ObjectId

from dialer.store.sqlite.database import Database
from dialer.store.sqlite.documents import at, marks, ms

COLUMNS = "workspace_id, number, listed_at, source, reason, call_id"
LOOKUP_CHUNK = 10_000  # numbers per IN list (SQLite allows 32,766 parameters)


def _entry(row: tuple) -> dict:
    workspace_id, number, listed_at, source, reason, call_id = row
    entry = {"workspaceId": ObjectId(workspace_id), "number": number, "listedAt": at(listed_at), "source": source}
    if reason is not None:
        entry["reason"] = reason
    if call_id is not None:
        entry["callId"] = ObjectId(call_id)
    return entry


def listed_in(conn: sqlite3.Connection, keys: Iterable[tuple[ObjectId, str]]) -> dict[tuple[ObjectId, str], dict]:
    """`listed` in a unit of work of its own or another's (a claim's, SqliteCalls.claim)."""
    by_workspace: dict[ObjectId, list[str]] = {}
    for workspace_id, number in keys:
        by_workspace.setdefault(workspace_id, []).append(number)
    found = {}
    for workspace_id, numbers in by_workspace.items():
        numbers = list(dict.fromkeys(numbers))
        for start in range(0, len(numbers), LOOKUP_CHUNK):
            part = numbers[start:start + LOOKUP_CHUNK]
            for row in conn.execute(f"SELECT {COLUMNS} FROM dnc WHERE workspace_id = ? AND number IN "
                                    f"({marks(part)})", (workspace_id.binary, *part)):
                found[(workspace_id, row[1])] = _entry(row)
    return found


def _row(entry: dict) -> tuple:
    call_id = entry.get("callId")
    return (entry["workspaceId"].binary, entry["number"], ms(entry["listedAt"]), entry["source"], entry.get("reason"),
            call_id.binary if isinstance(call_id, ObjectId) else None)


def _prefix_end(prefix: str) -> str:
    """The first string after every string that starts with `prefix` (numbers are ASCII)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class SqliteDnc:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, entries: list[dict]) -> int:
        def work(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            # In key order: each page of the table's B-tree is visited once per chunk, not once per number.
            conn.executemany(f"INSERT OR IGNORE INTO dnc ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                             sorted(_row(e) for e in entries))
            return conn.total_changes - before

        return await self.db.write(work) if entries else 0

    async def get(self, workspace_id: ObjectId, number: str) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            row = conn.execute(f"SELECT {COLUMNS} FROM dnc WHERE workspace_id = ? AND number = ?",
                               (workspace_id.binary, number)).fetchone()
            return None if row is None else _entry(row)

        return await self.db.read(work)

    async def remove(self, workspace_id: ObjectId, number: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM dnc WHERE workspace_id = ? AND number = ?",
                                (workspace_id.binary, number)).rowcount == 1

        return await self.db.write(work)

    async def page(self, workspace_id: ObjectId, prefix: str | None, after: str | None, limit: int) -> list[dict]:
        where, params = "workspace_id = ?", [workspace_id.binary]
        if prefix:
            where += " AND number >= ? AND number < ?"
            params += [prefix, _prefix_end(prefix)]
        if after is not None:
            where += " AND number > ?"
            params.append(after)

        def work(conn: sqlite3.Connection) -> list[dict]:
            return [_entry(r) for r in conn.execute(
                f"SELECT {COLUMNS} FROM dnc WHERE {where} ORDER BY number LIMIT ?", (*params, int(limit)))]

        return await self.db.read(work) if limit > 0 else []

    async def listed(self, keys: Iterable[tuple[ObjectId, str]]) -> dict[tuple[ObjectId, str], dict]:
        keys = list(keys)
        return await self.db.read(listed_in, keys) if keys else {}

    async def count(self, workspace_id: ObjectId) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute("SELECT count(*) FROM dnc WHERE workspace_id = ?", (workspace_id.binary,)).fetchone()[0]

        return await self.db.read(work)

