"""The SQLite calls' methods for the dispatcher's claims: the look before a claim (the slot ledger and the due
calls, in one transaction), the claim itself (with the slot ledger's compare-and-set and the reads the placer
places on, in its transaction), the provider ids of placed calls,
and a claim handed back unplaced or left uncertain. Part of SqliteCalls (calls.py); each method one unit of
work, every status change checked against the state machine (the tallies follow by trigger). Every query
names call ids (the primary key).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Iterable

from bson import ObjectId

from dialer.core.statuses import IN_FLIGHT_VALUES, CallStatus
from dialer.ports import BUSY_WAIT, Claim, ClaimResult, LedgerState, LedgerWrite, PlacedRecord, placed_entry
from dialer.store.sqlite import call_rows as rows
from dialer.store.sqlite.batches import runnable_stamps_in
from dialer.store.sqlite.call_rows import CLAIM_FIELDS, check, holders_of, load, push, save
from dialer.store.sqlite.database import Database
from dialer.store.sqlite.dnc import listed_in
from dialer.store.sqlite.documents import at, ms, stored
from dialer.store.sqlite.ledger import read_in, write_in

QUEUED, DIALING = CallStatus.QUEUED.value, CallStatus.DIALING.value
Due = dict[ObjectId, tuple[list[dict], dt.datetime | None]]


def due_in(conn: sqlite3.Connection, wanted: dict[ObjectId, int], now: dt.datetime) -> Due:
    """CallRepo.due_many in a unit of work (the index `calls_batch_status_due` walked from each batch's earliest
    queued call, up to its n)."""
    out = {}
    for batch_id, limit in wanted.items():
        due = rows.load_where(conn, "batch_id = ? AND status = 'queued' AND next_attempt_at <= ?",
                              (batch_id.binary, ms(now)), f"ORDER BY next_attempt_at, id LIMIT {int(limit)}")
        later = None
        if len(due) < limit:
            later = at(conn.execute("SELECT min(next_attempt_at) FROM calls WHERE batch_id = ? AND status = "
                                    "'queued' AND next_attempt_at > ?", (batch_id.binary, ms(now))).fetchone()[0])
        out[batch_id] = (due, later)
    return out


def _asked(wanted: dict[ObjectId, int]) -> dict[ObjectId, int]:
    return {b: n for b, n in wanted.items() if n > 0 and isinstance(b, ObjectId)}


class ClaimCalls:
    db: Database

    async def due_many(self, wanted: dict[ObjectId, int], now: dt.datetime) -> Due:
        wanted = _asked(wanted)
        return await self.db.read(due_in, wanted, now) if wanted else {}

    async def look(self, batch_ids: list[ObjectId] | None, wanted: dict[ObjectId, int], now: dt.datetime,
                   settled: frozenset[str] = frozenset()) -> tuple[LedgerState, Due]:
        wanted = _asked(wanted)

        def work(conn: sqlite3.Connection) -> tuple[LedgerState, Due]:
            return read_in(conn, batch_ids, settled), (due_in(conn, wanted, now) if wanted else {})

        return await self.db.read(work)

    async def holders(self, call_ids: Iterable[ObjectId]) -> dict[ObjectId, tuple[str, str | None]]:
        ids = [c for c in call_ids if isinstance(c, ObjectId)]
        return await self.db.read(holders_of, ids) if ids else {}

    async def claim(self, claims: list[Claim], deferrals: list[tuple], records: list[PlacedRecord], now: dt.datetime,
                    batch_ids: Iterable[ObjectId] = (), numbers: Iterable[tuple[ObjectId, str]] = (),
                    reservation: LedgerWrite | None = None) -> ClaimResult:
        batch_ids, numbers = list(batch_ids), list(numbers)
        if not (claims or deferrals or records or batch_ids or numbers or reservation):
            return ClaimResult()
        return await self.db.write(self._claim, claims, deferrals, records, now, batch_ids, numbers, reservation)

    @classmethod
    def _claim(cls, conn: sqlite3.Connection, claims: list[Claim], deferrals: list[tuple], records: list[PlacedRecord],
               now: dt.datetime, batch_ids: list[ObjectId], numbers: list[tuple[ObjectId, str]],
               reservation: LedgerWrite | None) -> ClaimResult:
        """The ledger's compare-and-set, the writes, then the reads after them (one transaction)."""
        if reservation is not None and not write_in(conn, reservation):
            return ClaimResult(reserved=False)
        won = cls._claim_writes(conn, claims, deferrals, records, now)
        return ClaimResult(won=won, running=runnable_stamps_in(conn, now, batch_ids) if batch_ids else {},
                           listed=listed_in(conn, numbers) if numbers else {})

    @staticmethod
    def _claim_writes(conn: sqlite3.Connection, claims: list[Claim], deferrals: list[tuple],
                      records: list[PlacedRecord], now: dt.datetime) -> set[ObjectId]:
        found = rows.by_ids(conn, [d[0] for d in deferrals] + [c.call_id for c in claims])
        changed: dict[ObjectId, dict] = {}
        for cid, when, *entry in deferrals:
            doc = found.get(cid)
            if doc is not None and doc["status"] == QUEUED:
                doc["nextAttemptAt"] = stored(when)
                if entry:
                    push(doc, {**entry[0], "at": stored(entry[0]["at"])})
                changed[cid] = doc
        won: set[ObjectId] = set()
        lines: set[str] = set()  # the callees this write claims
        for c in claims:
            doc = found.get(c.call_id)
            if doc is None or doc["status"] != QUEUED:
                continue
            line = rows.line_of(doc)
            if line in lines or conn.execute("SELECT 1 FROM calls WHERE line_key = ? LIMIT 1", (line,)).fetchone():
                # The callee is in another call of the workspace (another batch's): not now.
                doc["nextAttemptAt"] = stored(now + BUSY_WAIT)
                push(doc, {"at": stored(now), "event": "callee_busy"})
                changed[c.call_id] = doc
                continue
            lines.add(line)
            doc["status"] = check(doc, DIALING)
            doc.update(claimedBy=c.by, claimToken=c.token, dialAt=stored(c.dial_at), leaseUntil=stored(c.lease_until),
                       updatedAt=stored(now), attempts=doc["attempts"] + 1)
            changed[c.call_id] = doc
            won.add(c.call_id)
        rows.save_many(conn, changed.values())
        _record_placed(conn, records)
        return won

    async def record_placed(self, records: list[PlacedRecord]) -> None:
        if records:
            await self.db.write(_record_placed, records)

    async def requeue_unplaced(self, call_id: ObjectId, token: str | None, when: dt.datetime, entry: dict,
                               provider_error: bool = False) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            doc = load(conn, call_id)
            # {"claimToken": token}: with None, a call whose claimToken is None or absent.
            if doc is None or doc.get("claimToken") != token or doc["status"] != DIALING or "providerCallId" in doc:
                return False
            doc["status"] = check(doc, QUEUED)
            doc["nextAttemptAt"] = stored(when)
            doc["attempts"] -= 1
            if provider_error:
                doc["providerErrors"] = doc.get("providerErrors", 0) + 1
            for name in CLAIM_FIELDS:
                doc.pop(name, None)
            push(doc, entry)
            save(conn, doc)
            return True

        return await self.db.write(work)

    async def mark_uncertain(self, call_id: ObjectId, token: str, lease_until: dt.datetime, entry: dict) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            doc = load(conn, call_id)
            if doc is None or doc.get("claimToken") != token or doc["status"] != DIALING:
                return False
            doc.update(leaseUntil=stored(lease_until), uncertain=True)
            push(doc, entry)
            save(conn, doc)
            return True

        return await self.db.write(work)


def _record_placed(conn: sqlite3.Connection, records: list[PlacedRecord]) -> None:
    found = rows.by_ids(conn, [r.call_id for r in records])
    changed = {}
    for r in records:
        doc = found.get(r.call_id)
        if doc is None or doc.get("claimToken") != r.token or doc["status"] == QUEUED:
            continue
        if doc["status"] not in IN_FLIGHT_VALUES and doc.get("providerCallId") == r.provider_call_id:
            continue  # ended before this record: its end wrote the placement (CallRepo.finish)
        doc["providerCallId"] = r.provider_call_id
        lease = stored(r.lease_until)
        if doc.get("leaseUntil") is None or lease > doc["leaseUntil"]:
            doc["leaseUntil"] = lease
        push(doc, placed_entry(r.at, r.provider_call_id))
        changed[r.call_id] = doc
    rows.save_many(conn, changed.values())
