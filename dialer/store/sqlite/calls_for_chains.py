"""The SQLite calls' methods for contact chaining (the enrollment face): writing planned calls under their
own ids, reading a group, activating and skipping held calls, the agent's verdict. Part of SqliteCalls
(calls.py); each method one unit of work, every status change checked against the state machine.
Index: `calls_group` (batch, group key) serves `group` and `skip_held`; `calls_batch_status_due` serves
`held_groups`.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from bson import ObjectId

from dialer.core.records import PlannedCall
from dialer.core.statuses import CallStatus
from dialer.ports import active_key
from dialer.store.sqlite import call_rows as rows
from dialer.store.sqlite.call_rows import check, load, push
from dialer.store.sqlite.documents import decode, encode, stored

HELD = CallStatus.HELD.value
QUEUED = CallStatus.QUEUED.value
GROUP_FIELDS = ("_id", "status", "outcome", "duration", "answeredBy", "verdict", "finishedAt", "group",
                "nextAttemptAt")


class ChainCalls:
    db: object

    async def insert_new(self, batch: dict, chunk: list[PlannedCall], now: dt.datetime) -> int:
        from dialer.store.sqlite.calls import new_call, suppressed_call

        def work(conn: sqlite3.Connection) -> int:
            docs, keys = [], set()
            for call in chunk:
                if call.suppressed is not None:  # stopped by a rule: written final, holding no key
                    if conn.execute("SELECT 1 FROM calls WHERE id = ?", (call.call_id.binary,)).fetchone() is None:
                        docs.append(suppressed_call(batch, call, now))
                    continue
                key = active_key(batch["_id"], call.e164, call.extension) + call.key_suffix
                if key in keys or conn.execute("SELECT 1 FROM calls WHERE id = ? OR active_key = ?",
                                               (call.call_id.binary, key)).fetchone() is not None:
                    continue  # written by an earlier run of this intake (or the callee is already waiting)
                doc = new_call(batch, call, call.call_id, key, HELD if call.held else QUEUED, now)
                if call.group is not None:
                    doc["group"] = call.group
                docs.append(doc)
                keys.add(key)
            rows.insert(conn, docs)
            return len(docs)

        return await self.db.write(work) if chunk else 0

    async def group(self, batch_id: ObjectId, key: str) -> list[dict]:
        docs = await self.db.read(rows.load_where, "batch_id = ? AND group_key = ?", (batch_id.binary, key),
                                  "ORDER BY rowid")
        return [{name: doc[name] for name in GROUP_FIELDS if name in doc} for doc in docs]

    async def held_groups(self, batch_id: ObjectId, limit: int) -> list[str]:
        def work(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute(
                "SELECT DISTINCT group_key FROM calls WHERE batch_id = ? AND status = 'held' LIMIT ?",
                (batch_id.binary, int(limit)))]

        return await self.db.read(work)

    async def activate(self, call_id: ObjectId, now: dt.datetime, entry: dict) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            doc = load(conn, call_id)
            if doc is None or doc["status"] != HELD:
                return False
            when = stored(now)
            doc["status"] = check(doc, QUEUED)
            doc.update(nextAttemptAt=max(when, doc.get("nextAttemptAt") or when), updatedAt=when)
            push(doc, entry)
            rows.save(conn, doc)
            return True

        return await self.db.write(work)

    async def skip_held(self, batch_id: ObjectId, key: str, now: dt.datetime, entry: dict) -> int:
        def work(conn: sqlite3.Connection) -> int:
            docs = rows.load_where(conn, "batch_id = ? AND group_key = ? AND status = 'held'", (batch_id.binary, key))
            for doc in docs:
                rows.withdraw(doc, CallStatus.SKIPPED.value, stored(now), entry)
            rows.save_many(conn, docs)
            return len(docs)

        return await self.db.write(work)

    async def record_verdict(self, call_id: ObjectId, verdict: dict, now: dt.datetime) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            doc = load(conn, call_id)
            if doc is None:
                return None
            doc["verdict"] = verdict
            push(doc, {"at": stored(now), "event": "verdict", "successful": verdict.get("successful")})
            rows.save(conn, doc)
            return decode(encode(doc))  # as it reads back

        return await self.db.write(work)
