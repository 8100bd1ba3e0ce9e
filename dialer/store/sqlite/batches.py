"""Batches in SQLite: the BatchRepo port (see dialer/ports/).

Queries and their indexes (schema.py): `batches_status` (status, id) serves `runnable` and
`scheduled_due`; `batches_updated` (updatedAt, id) serves `updated_since`, with `batches_enqueued`
(enqueuedAt) `changed_since`; `batches_workspace`
(workspace, id) serves `list`, newest first from a cursor; the
unique `public_id` column serves `by_public_id`. A status change is a compare-and-set inside one writer
transaction (the document read and written under the file's write lock).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from bson import ObjectId

from dialer.core.machine import BatchMove
from dialer.store.sqlite.database import Database
from dialer.store.sqlite.documents import at, decode, docs, encode, marks, ms, one, stored

SAVE = ("UPDATE batches SET status = ?, scheduled_at = ?, updated_at = ?, enqueued_at = ?, agent_id = ?, public_id = ?, "
        "doc = ? WHERE id = ?")


def runnable_stamps_in(conn: sqlite3.Connection, now: dt.datetime, among: list[ObjectId] | None
                       ) -> dict[ObjectId, tuple[dt.datetime | None, dt.datetime | None]]:
    """`runnable_stamps` in a unit of work of its own or another's (a claim's, SqliteCalls.claim)."""
    ids = None if among is None else [b.binary for b in among]
    if ids == []:
        return {}
    return {ObjectId(i): (at(u), at(e)) for i, u, e in conn.execute(
        "SELECT id, updated_at, enqueued_at FROM batches WHERE status = 'running' "
        "AND (scheduled_at IS NULL OR scheduled_at <= ?)" + ("" if ids is None else f" AND id IN ({marks(ids)})"),
        (ms(now), *(ids or ())))}


def _save(conn: sqlite3.Connection, doc: dict) -> None:
    conn.execute(SAVE, (doc["status"], ms(doc.get("scheduledAt")), ms(doc.get("updatedAt")), ms(doc.get("enqueuedAt")),
                        _binary(doc.get("agentId")), doc.get("publicId") or None, encode(doc), doc["_id"].binary))


def _binary(value: Any) -> bytes | None:
    return value.binary if isinstance(value, ObjectId) else None


def _load(conn: sqlite3.Connection, batch_id: Any) -> dict | None:
    if not isinstance(batch_id, ObjectId):
        return None
    return one(conn, "SELECT doc FROM batches WHERE id = ?", (batch_id.binary,))


class SqliteBatches:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, batch: dict) -> None:
        doc = {**batch, "status": str(batch["status"])}

        def work(conn: sqlite3.Connection) -> None:
            try:
                conn.execute("INSERT INTO batches (id, workspace_id, agent_id, status, scheduled_at, updated_at, "
                             "enqueued_at, public_id, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (doc["_id"].binary, doc["workspaceId"].binary, _binary(doc.get("agentId")), doc["status"],
                              ms(doc.get("scheduledAt")), ms(doc.get("updatedAt")), ms(doc.get("enqueuedAt")),
                              doc.get("publicId") or None, encode(doc)))
            except sqlite3.IntegrityError:
                raise ValueError(f"batch {doc['_id']} exists") from None

        await self.db.write(work)

    async def get(self, batch_id: ObjectId) -> dict | None:
        return await self.db.read(_load, batch_id)

    async def by_public_id(self, public_id: str) -> dict | None:
        return await self.db.read(one, "SELECT doc FROM batches WHERE public_id = ?", (public_id,))

    async def runnable(self, now: dt.datetime) -> list[dict]:
        return await self.db.read(_docs, "SELECT doc FROM batches WHERE status = 'running' "
                                         "AND (scheduled_at IS NULL OR scheduled_at <= ?) ORDER BY id", (ms(now),))

    async def runnable_stamps(self, now: dt.datetime, among: list[ObjectId] | None = None
                              ) -> dict[ObjectId, tuple[dt.datetime | None, dt.datetime | None]]:
        if among is not None and not among:
            return {}
        return await self.db.read(runnable_stamps_in, now, among)

    async def runnable_among(self, batch_ids: list[ObjectId], now: dt.datetime) -> list[dict]:
        ids = [b.binary for b in batch_ids if isinstance(b, ObjectId)]
        if not ids:
            return []
        return await self.db.read(_docs, f"SELECT doc FROM batches WHERE id IN ({marks(ids)}) AND status = 'running' "
                                         "AND (scheduled_at IS NULL OR scheduled_at <= ?) ORDER BY id", (*ids, ms(now)))

    async def scheduled_due(self, now: dt.datetime) -> list[dict]:
        return await self.db.read(_docs, "SELECT doc FROM batches WHERE status = 'pending' "
                                         "AND scheduled_at <= ? ORDER BY id", (ms(now),))

    async def updated_since(self, since: dt.datetime, statuses: list[str] | None = None) -> list[dict]:
        among = f" AND status IN ({marks(statuses)})" if statuses else ""
        return await self.db.read(_docs, f"SELECT doc FROM batches WHERE id IN (SELECT id FROM batches "
                                         f"WHERE updated_at >= ?){among} ORDER BY id", (ms(since), *(statuses or ())))

    async def changed_since(self, since: dt.datetime) -> list[dict]:
        def work(conn: sqlite3.Connection) -> list[dict]:
            return [{"_id": ObjectId(i), "status": status, "updatedAt": at(u), "enqueuedAt": at(e), "scheduledAt": at(sa)}
                    for i, status, u, e, sa in conn.execute(
                        "SELECT id, status, updated_at, enqueued_at, scheduled_at FROM batches WHERE id IN "
                        "(SELECT id FROM batches WHERE updated_at >= ? UNION SELECT id FROM batches WHERE enqueued_at >= ?) "
                        "ORDER BY id", (ms(since), ms(since)))]

        return await self.db.read(work)

    async def move(self, batch_id: ObjectId, move: BatchMove, now: dt.datetime,
                   set_fields: dict[str, Any] | None = None, unset: tuple[str, ...] = ()) -> bool:
        sources = {s.value for s in move.sources}

        def work(conn: sqlite3.Connection) -> bool:
            doc = _load(conn, batch_id)
            if doc is None or doc["status"] not in sources:
                return False
            for name in unset:
                doc.pop(name, None)
            doc.update(set_fields or {})
            doc.update(status=move.target.value, updatedAt=stored(now))
            _save(conn, doc)
            return True

        return await self.db.write(work)

    async def move_many(self, batch_ids: list[ObjectId], move: BatchMove, now: dt.datetime,
                        set_fields: dict[str, Any] | None = None) -> set[ObjectId]:
        sources = {s.value for s in move.sources}

        def work(conn: sqlite3.Connection) -> set[ObjectId]:
            moved = set()
            for batch_id in batch_ids:
                doc = _load(conn, batch_id)
                if doc is None or doc["status"] not in sources:
                    continue
                doc.update(set_fields or {})
                doc.update(status=move.target.value, updatedAt=stored(now))
                _save(conn, doc)
                moved.add(batch_id)
            return moved

        return await self.db.write(work) if batch_ids else set()

    async def note_enqueued(self, batch_id: ObjectId, now: dt.datetime) -> str | None:
        def work(conn: sqlite3.Connection) -> str | None:
            doc = _load(conn, batch_id)
            if doc is None:
                return None
            doc["enqueuedAt"] = stored(now)
            _save(conn, doc)
            return doc["status"]

        return await self.db.write(work)

    async def list(self, workspace_id: ObjectId, statuses: list[str] | None, agent_id: ObjectId | None,
                   before: ObjectId | None, limit: int) -> list[dict]:
        where, params = "workspace_id = ?", [workspace_id.binary]
        if statuses:
            where += f" AND status IN ({marks(statuses)})"
            params += [str(s) for s in statuses]
        if agent_id is not None:
            where += " AND agent_id = ?"
            params.append(agent_id.binary)
        if before is not None:
            where += " AND id < ?"
            params.append(before.binary)
        return await self.db.read(_docs, f"SELECT doc FROM batches WHERE {where} ORDER BY id DESC LIMIT {int(limit)}",
                                  tuple(params))

    async def update(self, batch_id: ObjectId, statuses: list[str], set_fields: dict[str, Any],
                     now: dt.datetime) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            doc = _load(conn, batch_id)
            if doc is None or doc["status"] not in statuses:
                return None
            doc.update(set_fields)
            doc["updatedAt"] = stored(now)
            _save(conn, doc)
            return decode(encode(doc))  # as it reads back

        return await self.db.write(work)

    async def delete(self, batch_id: ObjectId) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM batches WHERE id = ?", (batch_id.binary,)).rowcount == 1

        return await self.db.write(work) if isinstance(batch_id, ObjectId) else False


def _docs(conn: sqlite3.Connection, sql: str, params: tuple = ()) -> list[dict]:
    return docs(conn.execute(sql, params))
