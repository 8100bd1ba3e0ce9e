"""The SQLite calls' methods for operators (the batch lifecycle): claims not yet placed, withdrawing,
retrying and deleting a batch's calls. Part of SqliteCalls (calls.py); the same rules hold: each method
one unit of work, every status change checked against the state machine. Index: `calls_batch_status_due`
serves every batch-and-status filter here, `calls_batch_id` the deletion.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from bson import ObjectId

from dialer.core.statuses import IN_FLIGHT_VALUES, TERMINAL, WAITING_VALUES, CallStatus
from dialer.ports import active_key
from dialer.store.sqlite import call_rows as rows
from dialer.store.sqlite.call_rows import check, push
from dialer.store.sqlite.documents import marks, ms, stored

QUEUED = CallStatus.QUEUED.value
TERMINAL_VALUES = sorted(s.value for s in TERMINAL)
# What an operator's retry forgets of the last attempt: it was placed and ended (the outcome stays).
RETRY_FORGETS = ("finishedAt", "providerCallId", "answeredBy", "duration", "uncertain")
BRING_FORWARD_CHUNK = 1000


class OperatorsCalls:
    db: object
    _retry_walks: dict  # batch -> (the retry request (now, outcomes), the last call id it looked at)

    async def unplaced(self, batch_id: ObjectId) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute("SELECT count(*) FROM calls WHERE batch_id = ? AND status = 'dialing' "
                                "AND provider_call_id IS NULL AND uncertain = 0", (batch_id.binary,)).fetchone()[0]

        return await self.db.read(work)

    async def unplaced_numbers(self, batch_ids: list[ObjectId]) -> set[str]:
        def work(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(batch_ids), 500):
                part = [b.binary for b in batch_ids[start:start + 500]]
                found |= {doc["phoneNumber"] for doc in rows.load_where(
                    conn, f"batch_id IN ({marks(part)}) AND status = 'dialing' AND provider_call_id IS NULL "
                          "AND uncertain = 0", tuple(part))}
            return found

        return await self.db.read(work) if batch_ids else set()

    async def withdraw(self, batch_id: ObjectId, now: dt.datetime, entry: dict, limit: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            docs = rows.load_where(conn, f"batch_id = ? AND status IN ({marks(WAITING_VALUES)})",
                                   (batch_id.binary, *WAITING_VALUES), f"LIMIT {int(limit)}")
            for doc in docs:
                rows.withdraw(doc, CallStatus.CANCELLED.value, stored(now), entry)
            rows.save_many(conn, docs)
            return len(docs)

        return await self.db.write(work) if limit > 0 else 0

    async def suppress_queued(self, call_id: ObjectId, now: dt.datetime, entry: dict) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            doc = rows.load(conn, call_id)
            if doc is None or doc["status"] != QUEUED:
                return False
            rows.withdraw(doc, CallStatus.SKIPPED.value, stored(now), {**entry, "at": stored(entry["at"])})
            doc["outcome"] = "suppressed"
            rows.save(conn, doc)
            return True

        return await self.db.write(work)

    async def in_flight(self, batch_id: ObjectId) -> list[dict]:
        return await self.db.read(rows.load_where, f"batch_id = ? AND status IN ({marks(IN_FLIGHT_VALUES)})",
                                  (batch_id.binary, *IN_FLIGHT_VALUES))

    async def retry_finished(self, batch_id: ObjectId, outcomes: list[str], now: dt.datetime, entry: dict,
                             limit: int) -> tuple[int, int]:
        """Each pass resumes after the last call the previous pass of the same request (batch, now,
        outcomes) looked at, so a retry of a million calls reads each once; without the resume point (another
        process, a restart) the walk starts over and `retriedAt` skips what was already looked at."""
        if not outcomes or limit <= 0:
            return 0, 0
        asked = (ms(now), frozenset(outcomes))
        walks = self._retry_walks
        walked, after = walks.get(batch_id, (None, b""))
        after = after if walked == asked else b""

        def work(conn: sqlite3.Connection) -> tuple[int, int, bytes]:
            when = stored(now)
            docs = rows.load_where(
                conn, f"batch_id = ? AND id > ? AND status IN ({marks(TERMINAL_VALUES)}) "
                      f"AND outcome IN ({marks(outcomes)}) AND retried_at IS NOT ? "
                      "AND group_key IS NULL",  # a chained contact's group ran its course: not redialled
                (batch_id.binary, after, *TERMINAL_VALUES, *outcomes, ms(now)), f"ORDER BY id LIMIT {int(limit)}")
            retried = busy = 0
            for doc in docs:
                key = active_key(doc["batchId"], doc["phoneNumber"], doc.get("extension"))
                doc["retriedAt"] = when  # looked at once per retry request
                if conn.execute("SELECT 1 FROM calls WHERE active_key = ?", (key,)).fetchone() is not None:
                    busy += 1  # the callee has a newer call waiting or in flight
                else:
                    doc["status"] = check(doc, QUEUED)
                    doc.update(nextAttemptAt=when, updatedAt=when, activeKey=key)
                    for name in RETRY_FORGETS:  # the next attempt is a new provider call
                        doc.pop(name, None)
                    push(doc, entry)
                    retried += 1
                rows.save(conn, doc)
            return retried, busy, (docs[-1]["_id"].binary if docs else after)

        retried, busy, last = await self.db.write(work)
        if retried or busy:
            walks[batch_id] = (asked, last)
        else:
            walks.pop(batch_id, None)
        return retried, busy

    async def bring_forward(self, batch_id: ObjectId, now: dt.datetime) -> int:
        """A thousand calls a transaction, so other writers (and processes) get the lock in between; a
        start cut short is completed by the next (the calls moved no longer match)."""
        def work(conn: sqlite3.Connection) -> int:
            docs = rows.load_where(conn, "batch_id = ? AND status = 'queued' AND next_attempt_at > ?",
                                   (batch_id.binary, ms(now)), f"LIMIT {BRING_FORWARD_CHUNK}")
            for doc in docs:
                doc["nextAttemptAt"] = stored(now)
            rows.save_many(conn, docs)
            return len(docs)

        moved = 0
        while True:
            chunk = await self.db.write(work)
            moved += chunk
            if chunk < BRING_FORWARD_CHUNK:
                return moved

    async def delete_calls(self, batch_id: ObjectId, limit: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            deleted = conn.execute("DELETE FROM calls WHERE id IN (SELECT id FROM calls INDEXED BY calls_batch_id "
                                   "WHERE batch_id = ? LIMIT ?)", (batch_id.binary, int(limit))).rowcount
            conn.execute("DELETE FROM tallies WHERE batch_id = ? AND calls = 0 AND dialled = 0 AND attempts = 0",
                         (batch_id.binary,))
            return deleted

        return await self.db.write(work) if limit > 0 else 0
