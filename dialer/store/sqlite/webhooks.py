"""Partner webhooks in SQLite: the WebhookRepo port (see dialer/ports/).

The outbox rows are written by triggers in the transaction of each change (schema.py, version 3); here
they are read (typed by dialer.core.webhook_events) and relayed: the messages inserted (`INSERT OR
IGNORE`: a relay repeated after a crash writes nothing twice) and the rows deleted, in one transaction.
Indexes: `webhook_messages_due` (status, endpoint, due) serves the senders' `due_endpoints` and `lease`,
`webhook_messages_workspace` / `_endpoint` the log, newest first from a cursor; `webhook_messages_settled`
(settled_at, partial: final messages only; schema version 10) the reaper's `purge_messages`, oldest first.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from bson import ObjectId

from dialer.core.webhook_events import batch_event, call_event
from dialer.ports import OutboxEvent
from dialer.store.sqlite.database import Database
from dialer.store.sqlite.documents import at, decode, docs, encode, marks, ms, one, stored

MESSAGE_COLUMNS = ("id, workspace_id, endpoint_id, type, status, next_attempt_at, acquired_until, created_at, "
                   "settled_at, doc")
FINAL = ("delivered", "failed")
# The oldest final messages settled before a time (purge_messages): the partial index named, since without
# statistics the planner would rather read all the final messages by `webhook_messages_due` and sort them.
PURGE_SELECT = ("SELECT id FROM webhook_messages INDEXED BY webhook_messages_settled "
                "WHERE status IN ('delivered', 'failed') AND settled_at < ? ORDER BY settled_at LIMIT ?")


def _message_row(doc: dict) -> tuple:
    return (doc["_id"], doc["workspaceId"].binary, doc["endpointId"].binary, doc["type"], doc["status"],
            ms(doc.get("nextAttemptAt")), ms(doc.get("acquiredUntil")), ms(doc.get("createdAt")),
            ms(doc.get("settledAt")), encode(doc))


def _save_message(conn: sqlite3.Connection, doc: dict) -> None:
    conn.execute(f"REPLACE INTO webhook_messages ({MESSAGE_COLUMNS}) VALUES ({marks(range(10))})", _message_row(doc))


def _unsettle(doc: dict, status: str) -> None:
    if status not in FINAL:
        doc.pop("settledAt", None)


def _event(row: tuple) -> OutboxEvent:
    event_id, kind, before, after, blob = row
    doc = decode(blob)
    if kind == "call":
        type_, when = call_event(before, after, doc.get("outcome")), doc.get("updatedAt")
    elif kind == "batch":
        type_, when = batch_event(after), doc.get("updatedAt")
    else:
        type_, when = "enrollment.accepted", doc.get("finishedAt")
    return OutboxEvent(event_id, kind, type_, when or at(0), doc)


class SqliteWebhooks:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- endpoints -------------------------------------------------------------------------------
    async def insert_endpoint(self, endpoint: dict) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO webhook_endpoints (id, workspace_id, doc) VALUES (?, ?, ?)",
                         (endpoint["_id"].binary, endpoint["workspaceId"].binary, encode(endpoint)))

        await self.db.write(work)

    async def get_endpoint(self, endpoint_id: ObjectId) -> dict | None:
        if not isinstance(endpoint_id, ObjectId):
            return None
        return await self.db.read(one, "SELECT doc FROM webhook_endpoints WHERE id = ?", (endpoint_id.binary,))

    async def list_endpoints(self, workspace_id: ObjectId) -> list[dict]:
        def work(conn: sqlite3.Connection) -> list[dict]:
            return docs(conn.execute("SELECT doc FROM webhook_endpoints WHERE workspace_id = ? ORDER BY id",
                                     (workspace_id.binary,)))

        return await self.db.read(work)

    async def update_endpoint(self, endpoint_id: ObjectId, set_fields: dict[str, Any],
                              unset: tuple[str, ...] = ()) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            doc = one(conn, "SELECT doc FROM webhook_endpoints WHERE id = ?", (endpoint_id.binary,))
            if doc is None:
                return None
            for name in unset:
                doc.pop(name, None)
            doc.update({k: stored(v) for k, v in set_fields.items()})
            conn.execute("UPDATE webhook_endpoints SET doc = ? WHERE id = ?", (encode(doc), endpoint_id.binary))
            return doc

        return await self.db.write(work) if isinstance(endpoint_id, ObjectId) else None

    async def delete_endpoint(self, endpoint_id: ObjectId) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM webhook_messages WHERE endpoint_id = ?", (endpoint_id.binary,))
            return conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id.binary,)).rowcount == 1

        return await self.db.write(work) if isinstance(endpoint_id, ObjectId) else False

    async def note_result(self, endpoint_id: ObjectId, ok: bool, now: dt.datetime) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            doc = one(conn, "SELECT doc FROM webhook_endpoints WHERE id = ?", (endpoint_id.binary,))
            if doc is None:
                return None
            if ok:
                doc.pop("failingSince", None)
            elif doc.get("failingSince") is None:
                doc["failingSince"] = stored(now)
            conn.execute("UPDATE webhook_endpoints SET doc = ? WHERE id = ?", (encode(doc), endpoint_id.binary))
            return doc

        return await self.db.write(work)

    # ---- the outbox ------------------------------------------------------------------------------
    async def outbox(self, limit: int) -> list[OutboxEvent]:
        def work(conn: sqlite3.Connection) -> list[OutboxEvent]:
            return [_event(row) for row in conn.execute(
                f"SELECT id, kind, before, after, doc FROM outbox ORDER BY rowid LIMIT {int(limit)}")]

        return await self.db.read(work)

    async def relay(self, events: list[OutboxEvent], messages: list[dict]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(f"INSERT OR IGNORE INTO webhook_messages ({MESSAGE_COLUMNS}) VALUES ({marks(range(10))})",
                             [_message_row({**m, "nextAttemptAt": stored(m.get("nextAttemptAt")),
                                            "createdAt": stored(m.get("createdAt"))}) for m in messages])
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(e.id,) for e in events])

        await self.db.write(work)

    # ---- messages --------------------------------------------------------------------------------
    async def due_endpoints(self, now: dt.datetime, limit: int) -> list[ObjectId]:
        def work(conn: sqlite3.Connection) -> list[ObjectId]:
            return [ObjectId(r[0]) for r in conn.execute(
                "SELECT DISTINCT endpoint_id FROM webhook_messages WHERE status = 'pending' AND next_attempt_at <= ? "
                f"AND (acquired_until IS NULL OR acquired_until <= ?) LIMIT {int(limit)}", (ms(now), ms(now)))]

        return await self.db.read(work)

    async def lease(self, endpoint_id: ObjectId, now: dt.datetime, by: str, until: dt.datetime,
                    limit: int) -> list[dict]:
        def work(conn: sqlite3.Connection) -> list[dict]:
            found = docs(conn.execute(
                "SELECT doc FROM webhook_messages WHERE status = 'pending' AND endpoint_id = ? AND next_attempt_at <= ? "
                f"AND (acquired_until IS NULL OR acquired_until <= ?) ORDER BY next_attempt_at, id LIMIT {int(limit)}",
                (endpoint_id.binary, ms(now), ms(now))))
            for doc in found:
                doc.update(acquiredBy=by, acquiredUntil=stored(until))
                _save_message(conn, doc)
            return found

        return await self.db.write(work) if limit > 0 else []

    async def record_attempt(self, message_id: str, by: str, attempt: dict, status: str, step: int,
                             next_attempt_at: dt.datetime | None) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            doc = one(conn, "SELECT doc FROM webhook_messages WHERE id = ?", (message_id,))
            if doc is None or doc.get("acquiredBy") != by:
                return False
            doc["attempts"] = [*doc.get("attempts", ()), attempt]
            doc.update(status=status, step=step, nextAttemptAt=stored(next_attempt_at))
            if status in FINAL:
                doc["settledAt"] = stored(attempt.get("at"))
            _unsettle(doc, status)
            doc.pop("acquiredBy", None)
            doc.pop("acquiredUntil", None)
            _save_message(conn, doc)
            return True

        return await self.db.write(work)

    async def get_message(self, message_id: str) -> dict | None:
        return await self.db.read(one, "SELECT doc FROM webhook_messages WHERE id = ?", (str(message_id),))

    async def list_messages(self, workspace_id: ObjectId, endpoint_id: ObjectId | None, status: str | None,
                            type_: str | None, before: str | None, limit: int) -> list[dict]:
        where, params = "workspace_id = ?", [workspace_id.binary]
        for column, value in (("endpoint_id", endpoint_id.binary if endpoint_id else None), ("status", status),
                              ("type", type_)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        if before is not None:
            where += " AND id < ?"
            params.append(before)

        def work(conn: sqlite3.Connection) -> list[dict]:
            return docs(conn.execute(f"SELECT doc FROM webhook_messages WHERE {where} ORDER BY id DESC "
                                     f"LIMIT {int(limit)}", params))

        return await self.db.read(work)

    async def requeue(self, message_id: str, now: dt.datetime, step: int) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            doc = one(conn, "SELECT doc FROM webhook_messages WHERE id = ?", (str(message_id),))
            if doc is None:
                return None
            doc.update(status="pending", step=step, nextAttemptAt=stored(now))
            _unsettle(doc, "pending")
            _save_message(conn, doc)
            return doc

        return await self.db.write(work)

    async def recover(self, endpoint_id: ObjectId, since: dt.datetime, now: dt.datetime, step: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            found = docs(conn.execute("SELECT doc FROM webhook_messages WHERE endpoint_id = ? AND status = 'failed' "
                                      "AND created_at >= ?", (endpoint_id.binary, ms(since))))
            for doc in found:
                doc.update(status="pending", step=step, nextAttemptAt=stored(now))
                _unsettle(doc, "pending")
                _save_message(conn, doc)
            return len(found)

        return await self.db.write(work)

    async def oldest_pending(self) -> dt.datetime | None:
        def work(conn: sqlite3.Connection) -> dt.datetime | None:
            return at(conn.execute("SELECT min(created_at) FROM webhook_messages WHERE status = 'pending'").fetchone()[0])

        return await self.db.read(work)

    async def purge_messages(self, before: dt.datetime, limit: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(f"DELETE FROM webhook_messages WHERE id IN ({PURGE_SELECT})",
                                (ms(before), int(limit))).rowcount

        return await self.db.write(work) if limit > 0 else 0
