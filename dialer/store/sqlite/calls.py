"""The calls of every batch in SQLite: the CallRepo port (see dialer/ports/).

Each method is one unit of work on the store's threads (database.py): writes are one immediate
transaction, so each compare-and-set below holds across processes sharing the file. Documents and
columns: call_rows.py; tables, indexes and the counters' triggers: schema.py. The queries and the
indexes that serve them:
- enqueue: `active_key` (unique) finds the callee's waiting or in-flight call;
- due / next_due_at / has_waiting / has_active: `calls_batch_status_due` (batch, status, due, id): the
  walk starts at the batch's earliest queued call and stops at `limit` or the first one not yet due;
- page: `calls_batch_id` (the counters' reads and recounts: calls_counters.py);
- expired: `calls_lease` (partial: in-flight calls only);
- held_provider_ids: `calls_provider_call` (partial: calls with a provider id only).
The dispatcher's looks (due_many, look), claims and their hand-backs: calls_for_claims.py; operators', chains', the do-not-call
list's and the counters' queries: the other calls_*.py modules, all mixed into SqliteCalls.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Iterable

from bson import ObjectId

from dialer.core.machine import PROGRESS_MOVES
from dialer.core.records import PlannedCall
from dialer.core.statuses import ACTIVE_VALUES, IN_FLIGHT_VALUES, WAITING_VALUES, CallStatus
from dialer.ports import ChunkResult, Finish, StoreUnavailable, active_key, placed_entry
from dialer.store.ids import NEW_IDS
from dialer.store.sqlite import call_rows as rows
from dialer.store.sqlite.call_rows import CLAIM_FIELDS, check, load, push, save
from dialer.store.sqlite.calls_for_chains import ChainCalls
from dialer.store.sqlite.calls_for_claims import ClaimCalls
from dialer.store.sqlite.calls_counters import CounterCalls
from dialer.store.sqlite.calls_for_dnc import DncCalls
from dialer.store.sqlite.calls_for_operators import OperatorsCalls
from dialer.store.sqlite.database import Database
from dialer.store.sqlite.documents import at, decode, marks, ms, stored

QUEUED = CallStatus.QUEUED.value
DIALING = CallStatus.DIALING.value
IN_FLIGHT = frozenset(IN_FLIGHT_VALUES)
WAITING = frozenset(WAITING_VALUES)
IN_FLIGHT_SQL = "('dialing', 'ringing', 'in_progress')"


def new_call(batch: dict, call: PlannedCall, call_id: ObjectId, key: str, status: str, now: dt.datetime) -> dict:
    """A new call document from a planned call, as enqueue and insert_new write it."""
    doc = {
        "_id": call_id, "batchId": batch["_id"], "workspaceId": batch["workspaceId"], "phoneNumber": call.e164,
        "extension": call.extension, "input": {"phoneNumber": call.raw_phone}, "variables": call.variables,
        "timezones": list(call.zones), "zoneSource": call.zone_source, "status": status, "activeKey": key,
        "attempts": 0, "nextAttemptAt": stored(call.earliest), "createdAt": stored(now), "updatedAt": stored(now),
        "history": [],
    }
    if call.meta is not None:
        doc["meta"] = call.meta
    return doc


def suppressed_call(batch: dict, call: PlannedCall, now: dt.datetime) -> dict:
    """A planned call a rule stopped before it was queued (`call.suppressed`: its history entry): final."""
    doc = new_call(batch, call, call.call_id, None, CallStatus.SKIPPED.value, now)
    del doc["activeKey"]
    doc.update(outcome="suppressed", finishedAt=stored(now), nextAttemptAt=None,
               history=[{**call.suppressed, "result": "suppressed"}])
    return doc


def matches(doc: dict, token: str | None, provider_call_id: str | None) -> bool:
    """An event's match: this attempt (when a token is given), and this provider call or none recorded
    yet (when a provider id is given)."""
    if token and doc.get("claimToken") != token:
        return False
    if provider_call_id and "providerCallId" in doc and doc["providerCallId"] != provider_call_id:
        return False
    return True


class SqliteCalls(ClaimCalls, OperatorsCalls, ChainCalls, DncCalls, CounterCalls):
    tallies_exact = True  # kept by triggers on `calls` in the same transaction (schema.py)

    def __init__(self, db: Database) -> None:
        self.db = db
        self._retry_walks = {}

    # ---- ingestion and reading back ----------------------------------------------------------
    async def enqueue(self, batch: dict, chunk: list[PlannedCall], now: dt.datetime) -> ChunkResult:
        """One transaction per chunk: it is written whole, or not at all and reported as an error."""
        try:
            return await self.db.write(self._enqueue, batch, chunk, now)
        except StoreUnavailable as exc:
            return ChunkResult(error=str(exc))
        except (OverflowError, ValueError) as exc:  # validation should have caught it
            return ChunkResult(error=f"a record cannot be stored: {type(exc).__name__}")

    @staticmethod
    def _enqueue(conn: sqlite3.Connection, batch: dict, chunk: list[PlannedCall], now: dt.datetime) -> ChunkResult:
        result = ChunkResult()
        batch_id = batch["_id"]
        keys = [active_key(batch_id, c.e164, c.extension) for c in chunk]
        existing = {}
        for start in range(0, len(keys), 10_000):
            part = keys[start:start + 10_000]
            for key, blob in conn.execute(f"SELECT active_key, doc FROM calls WHERE active_key IN ({marks(part)})", part):
                existing[key] = decode(blob)
        new_ids = iter(NEW_IDS.many(len(chunk)))
        inserts, updates, fresh = [], {}, set()
        for call, key in zip(chunk, keys):
            doc = existing.get(key)
            if doc is None:
                doc = existing[key] = new_call(batch, call, call.call_id or next(new_ids), key, QUEUED, now)
                inserts.append(doc)  # a later record of the callee in this chunk updates it, as in MongoDB
                fresh.add(key)
                result.inserted += 1
            elif doc["status"] not in WAITING:
                result.in_flight.append({"phoneNumber": call.e164, "callId": str(doc["_id"]), "status": doc["status"]})
                continue
            else:
                doc.update(variables=call.variables, extension=call.extension, timezones=list(call.zones),
                           zoneSource=call.zone_source, updatedAt=stored(now))
                doc["input"] = {**doc.get("input", {}), "phoneNumber": call.raw_phone}
                if call.meta is not None:
                    doc["meta"] = call.meta
                earliest = stored(call.earliest)
                if earliest is not None and (doc.get("nextAttemptAt") is None or earliest > doc["nextAttemptAt"]):
                    doc["nextAttemptAt"] = earliest  # never earlier than it was
                if key not in fresh:
                    updates[doc["_id"]] = doc
                result.updated += 1
            result.call_ids.append(str(doc["_id"]))
        rows.insert(conn, inserts)
        rows.save_many(conn, updates.values())
        return result

    async def get(self, call_id: ObjectId) -> dict | None:
        return await self.db.read(load, call_id)

    async def page(self, batch_id: ObjectId, statuses: list[str] | None, after: ObjectId | None,
                   limit: int) -> list[dict]:
        if limit <= 0:
            return []
        where, params = "batch_id = ?", [batch_id.binary]
        if statuses:
            where += f" AND status IN ({marks(statuses)})"
            params += [str(s) for s in statuses]
        if after is not None:
            where += " AND id > ?"
            params.append(after.binary)
        return await self.db.read(rows.load_where, where, tuple(params), f"ORDER BY id LIMIT {int(limit)}")

    # ---- the dispatcher ------------------------------------------------------------------------
    async def due(self, batch_id: ObjectId, now: dt.datetime, limit: int) -> list[dict]:
        if limit <= 0:
            return []
        return await self.db.read(rows.load_where, "batch_id = ? AND status = 'queued' AND next_attempt_at <= ?",
                                  (batch_id.binary, ms(now)), f"ORDER BY next_attempt_at, id LIMIT {int(limit)}")

    async def next_due_at(self, batch_id: ObjectId) -> dt.datetime | None:
        def work(conn: sqlite3.Connection) -> dt.datetime | None:
            row = conn.execute("SELECT min(next_attempt_at) FROM calls WHERE batch_id = ? AND status = 'queued'",
                               (batch_id.binary,)).fetchone()
            return at(row[0])

        return await self.db.read(work)

    async def has_active(self, batch_id: ObjectId) -> bool:
        return await self.db.read(_any_of, batch_id, ACTIVE_VALUES)

    async def active_among(self, batch_ids: list[ObjectId]) -> set[ObjectId]:
        ids = [b.binary for b in batch_ids if isinstance(b, ObjectId)]

        def work(conn: sqlite3.Connection) -> set[ObjectId]:
            return {ObjectId(row[0]) for row in conn.execute(
                f"SELECT DISTINCT batch_id FROM calls WHERE batch_id IN ({marks(ids)}) "
                f"AND status IN ({marks(ACTIVE_VALUES)})", (*ids, *ACTIVE_VALUES))}

        return await self.db.read(work) if ids else set()

    async def has_waiting(self, batch_id: ObjectId) -> bool:
        return await self.db.read(_any_of, batch_id, WAITING_VALUES)

    async def progress(self, call_id: ObjectId, token: str | None, provider_call_id: str | None, to: str,
                       lease_until: dt.datetime, entry: dict, answered_by: str | None, now: dt.datetime) -> bool:
        move = PROGRESS_MOVES[CallStatus(to)]  # ringing or in_progress; anything else is a bug

        def work(conn: sqlite3.Connection) -> bool:
            doc = load(conn, call_id)
            if doc is None or doc["status"] not in move.source_values or not matches(doc, token, provider_call_id):
                return False
            doc["status"] = check(doc, CallStatus(to).value)
            doc.update(updatedAt=stored(now), leaseUntil=stored(lease_until))
            if provider_call_id:
                doc["providerCallId"] = provider_call_id
            if answered_by:
                doc["answeredBy"] = answered_by
            push(doc, entry)
            save(conn, doc)
            return True

        return await self.db.write(work)

    async def record_provider_id(self, call_id: ObjectId, token: str | None, provider_call_id: str,
                                 entry: dict | None) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            doc = load(conn, call_id)
            if (doc is None or "providerCallId" in doc or doc["status"] not in IN_FLIGHT
                    or (token and doc.get("claimToken") != token)):
                return False
            doc["providerCallId"] = provider_call_id
            if entry is not None:
                push(doc, entry)
            save(conn, doc)
            return True

        return await self.db.write(work)

    async def finish(self, call_id: ObjectId, token: str | None, provider_call_id: str | None, finish: Finish,
                     now: dt.datetime) -> tuple[str, ObjectId, dict | None] | None:
        return await self.db.write(_finish, call_id, token, provider_call_id, finish, now)

    # ---- the reaper ----------------------------------------------------------------------------
    async def expired(self, now: dt.datetime, limit: int) -> list[dict]:
        if limit <= 0:
            return []
        return await self.db.read(rows.load_where, f"status IN {IN_FLIGHT_SQL} AND lease_until < ?", (ms(now),),
                                  f"ORDER BY lease_until LIMIT {int(limit)}")

    async def take_for_reconciliation(self, call: dict, lease_until: dt.datetime, by: str) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            doc = load(conn, call["_id"])
            if doc is None or doc["status"] != call.get("status") or doc.get("leaseUntil") != stored(call.get("leaseUntil")):
                return None
            doc.update(leaseUntil=stored(lease_until), claimedBy=by)
            save(conn, doc)
            return doc

        return await self.db.write(work)

    async def held_provider_ids(self, provider_call_ids: Iterable[str]) -> set[str]:
        sids = sorted(set(provider_call_ids))
        if not sids:
            return set()

        def work(conn: sqlite3.Connection) -> set[str]:
            return {sid for sid, in conn.execute(
                f"SELECT provider_call_id FROM calls INDEXED BY calls_provider_call "
                f"WHERE provider_call_id IN ({marks(sids)})", sids)}

        return await self.db.read(work)


def _any_of(conn: sqlite3.Connection, batch_id: ObjectId, statuses: list[str]) -> bool:
    return conn.execute(f"SELECT 1 FROM calls WHERE batch_id = ? AND status IN ({marks(statuses)}) LIMIT 1",
                        (batch_id.binary, *statuses)).fetchone() is not None


def _finish(conn: sqlite3.Connection, call_id: ObjectId, token: str | None, provider_call_id: str | None,
            finish: Finish, now: dt.datetime) -> tuple[str, ObjectId, dict | None] | None:
    doc = load(conn, call_id)
    if doc is None or doc["status"] not in IN_FLIGHT or not matches(doc, token, provider_call_id):
        return None
    now = stored(now)
    if provider_call_id and "providerCallId" not in doc:
        # Ended before the dispatcher recorded its placement (a busy line answers in seconds; the record waits
        # for its claim's other calls): the placement goes in the history first, or a retry would lose it.
        push(doc, placed_entry(now, provider_call_id))
    retry = finish.retry_at is not None and doc["attempts"] < finish.max_attempts
    doc["status"] = check(doc, QUEUED if retry else str(finish.final))
    doc.update(outcome=finish.outcome, updatedAt=now)
    if retry:
        doc["nextAttemptAt"] = stored(finish.retry_at)
        for name in (*CLAIM_FIELDS, "providerCallId", "answeredBy"):  # the next attempt is a new provider call
            doc.pop(name, None)
        push(doc, {**finish.entry, "result": "retry"})
    else:
        doc["finishedAt"] = now
        if finish.provider_call_id:
            doc["providerCallId"] = finish.provider_call_id
        if finish.duration is not None:
            doc["duration"] = finish.duration
        for name in (*CLAIM_FIELDS, "activeKey"):
            doc.pop(name, None)
        push(doc, {**finish.entry, "result": finish.outcome})
    save(conn, doc)
    return ("retry" if retry else "final"), doc["batchId"], doc.get("group")
