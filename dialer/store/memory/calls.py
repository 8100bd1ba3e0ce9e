"""The calls of every batch, in memory: the CallRepo port (see dialer/ports.py).

Every method does its work synchronously (nothing is awaited inside), so each one is atomic on the
event loop: the compare-and-set conditions below hold without locks in one process.

Documents live in one dict by _id; the indexes each method uses are in call_index.py.
"""

from __future__ import annotations

import datetime as dt
import gc
import heapq
import itertools
from typing import Iterable

from bson import ObjectId
from sortedcontainers import SortedList

from dialer.core.machine import PROGRESS_MOVES
from dialer.core.records import PlannedCall
from dialer.core.statuses import ACTIVE_VALUES, IN_FLIGHT_VALUES, WAITING_VALUES, CallStatus
from dialer.ports import ChunkResult, Claim, Finish, PlacedRecord, Tally, active_key
from dialer.store.memory.calls_for_chains import ChainCalls
from dialer.store.memory.calls_for_operators import OperatorsCalls
from dialer.store.ids import NEW_IDS
from dialer.store.memory._common import clone, copy_call, copy_variables, new_doc, utc

QUEUED = CallStatus.QUEUED.value
DIALING = CallStatus.DIALING.value
IN_FLIGHT = frozenset(IN_FLIGHT_VALUES)
WAITING = frozenset(WAITING_VALUES)
ACTIVE = frozenset(ACTIVE_VALUES)
CLAIM_FIELDS = ("leaseUntil", "claimedBy", "dialAt", "uncertain")


class MemoryCalls(OperatorsCalls, ChainCalls):
    @staticmethod
    def _matches(doc: dict, token: str | None, provider_call_id: str | None) -> bool:
        """An event's match: this attempt (when a token is given), and this provider call or none
        recorded yet (when a provider id is given)."""
        if token and doc.get("claimToken") != token:
            return False
        if provider_call_id and "providerCallId" in doc and doc["providerCallId"] != provider_call_id:
            return False
        return True

    # ---- ingestion and reading back ----------------------------------------------------------
    async def enqueue(self, batch: dict, chunk: list[PlannedCall], now: dt.datetime) -> ChunkResult:
        result = self._enqueue(batch, chunk, now)
        # Stored calls live long: exempt them from the cyclic collector, whose full collections walk
        # every tracked object (300 ms with 100,000 calls stored, in the middle of a request).
        # gc.freeze() is O(1); frozen objects are still freed by reference counting when dropped.
        if result.inserted:
            gc.freeze()
        return result

    def _enqueue(self, batch: dict, chunk: list[PlannedCall], now: dt.datetime) -> ChunkResult:
        result = ChunkResult()
        batch_id, workspace_id = batch["_id"], batch["workspaceId"]
        b = self._batch(batch_id)
        now = utc(now)
        new_ids = iter(NEW_IDS.many(len(chunk)))
        docs, active, queued_ids, queued = self._docs, self._active, b.by_status.get(QUEUED), b.queued
        if queued_ids is None:
            queued_ids = b.by_status[QUEUED] = SortedList()
        for call in chunk:
            key = active_key(batch_id, call.e164, call.extension)
            earliest = utc(call.earliest)
            found = active.get(key)
            if found is None:
                cid = call.call_id or next(new_ids)
                bid = cid.binary
                docs[bid] = new_doc(batch_id, workspace_id, call, cid, key, QUEUED, earliest, now)
                # The indexes of a new queued call (what _index does, inlined: this is the hot path).
                queued_ids.add(bid)
                if earliest is not None:
                    queued.add((earliest, bid))
                active[key] = bid
                result.inserted += 1
                result.call_ids.append(str(cid))
                continue
            doc = docs[found]
            found_id = doc["_id"]
            if doc["status"] not in WAITING:
                result.in_flight.append({"phoneNumber": call.e164, "callId": str(found_id), "status": doc["status"]})
                continue
            doc["variables"] = copy_variables(call.variables)
            doc["input"] = {**doc["input"], "phoneNumber": call.raw_phone}
            doc["extension"] = call.extension
            doc["timezones"] = tuple(call.zones)
            doc["zoneSource"] = call.zone_source
            doc["updatedAt"] = now
            if call.meta is not None:
                doc["meta"] = clone(call.meta)
            stored = doc.get("nextAttemptAt")
            if earliest is not None and (stored is None or earliest > stored):
                # Only the due index depends on nextAttemptAt (and only while queued).
                if doc["status"] == QUEUED:
                    if stored is not None:
                        queued.remove((stored, found))
                    queued.add((earliest, found))
                doc["nextAttemptAt"] = earliest
            result.updated += 1
            result.call_ids.append(str(found_id))
        if result.inserted:
            counts = b.tally.setdefault((QUEUED, None), [0, 0, 0])
            counts[0] += result.inserted
        return result

    async def get(self, call_id: ObjectId) -> dict | None:
        doc = self._doc(call_id)
        return None if doc is None else copy_call(doc)

    async def page(self, batch_id: ObjectId, statuses: list[str] | None, after: ObjectId | None,
                   limit: int) -> list[dict]:
        b = self._batches.get(batch_id)
        if b is None or limit <= 0:
            return []

        def after_cursor(ids: SortedList):
            start = 0 if after is None else ids.bisect_right(after.binary)
            return ids.islice(start, start + limit)

        # The ids of each status wanted (every status without a filter) merged in _id order, lazily.
        wanted = {str(s) for s in statuses} if statuses else b.by_status.keys()
        lists = [b.by_status[s] for s in wanted if b.by_status.get(s)]
        ids = itertools.islice(heapq.merge(*(after_cursor(sl) for sl in lists)), limit)
        return [copy_call(self._docs[cid]) for cid in ids]

    async def tallies(self, batch_id: ObjectId) -> list[Tally]:
        b = self._batches.get(batch_id)
        if b is None:
            return []
        return [Tally(status, outcome, *counts)
                for (status, outcome), counts in sorted(b.tally.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]

    async def recount(self, batch_id: ObjectId) -> list[Tally]:
        """The tallies are changed by the same atomic method that changes a call, in one process:
        nothing can drift, so the recount is the tallies themselves (no scan of the batch's calls)."""
        return await self.tallies(batch_id)

    async def correct(self, batch_id: ObjectId, delta: list[Tally]) -> None:
        b = self._batch(batch_id)
        for t in delta:
            counts = b.tally.setdefault((t.status, t.outcome), [0, 0, 0])
            counts[0] += t.calls
            counts[1] += t.dialled
            counts[2] += t.attempts
            if counts == [0, 0, 0]:
                del b.tally[(t.status, t.outcome)]

    # ---- the dispatcher ------------------------------------------------------------------------
    async def due(self, batch_id: ObjectId, now: dt.datetime, limit: int) -> list[dict]:
        b = self._batches.get(batch_id)
        if b is None or limit <= 0:
            return []
        now = utc(now)
        out = []
        for at, cid in b.queued.islice(0, limit):
            if at > now:
                break
            out.append(copy_call(self._docs[cid]))
        return out

    async def next_due_at(self, batch_id: ObjectId) -> dt.datetime | None:
        b = self._batches.get(batch_id)
        return b.queued[0][0] if b is not None and b.queued else None

    async def has_active(self, batch_id: ObjectId) -> bool:
        b = self._batches.get(batch_id)
        return b is not None and any(b.by_status.get(s) for s in ACTIVE)

    async def has_waiting(self, batch_id: ObjectId) -> bool:
        b = self._batches.get(batch_id)
        return b is not None and any(b.by_status.get(s) for s in WAITING)

    async def holders(self, call_ids: Iterable[ObjectId]) -> dict[ObjectId, tuple[str, str | None]]:
        out = {}
        for cid in call_ids:
            doc = self._doc(cid)
            if doc is not None:
                out[cid] = (doc["status"], doc.get("claimToken"))
        return out

    async def claim(self, claims: list[Claim], deferrals: list[tuple[ObjectId, dt.datetime]],
                    records: list[PlacedRecord], now: dt.datetime) -> set[ObjectId]:
        now = utc(now)
        for cid, when in deferrals:
            doc = self._doc(cid)
            if doc is not None and doc["status"] == QUEUED:
                self._unindex(doc)
                doc["nextAttemptAt"] = utc(when)
                self._index(doc)
        self._record_placed(records)
        won: set[ObjectId] = set()
        for c in claims:
            doc = self._doc(c.call_id)
            if doc is None or doc["status"] != QUEUED:
                continue
            doc_status = self._check(doc, DIALING)
            self._unindex(doc)
            doc["status"] = doc_status
            doc["claimedBy"] = c.by
            doc["claimToken"] = c.token
            doc["dialAt"] = utc(c.dial_at)
            doc["leaseUntil"] = utc(c.lease_until)
            doc["updatedAt"] = now
            doc["attempts"] += 1
            self._index(doc)
            won.add(c.call_id)
        return won

    async def record_placed(self, records: list[PlacedRecord]) -> None:
        self._record_placed(records)

    def _record_placed(self, records: list[PlacedRecord]) -> None:
        for r in records:
            doc = self._doc(r.call_id)
            if doc is None or doc.get("claimToken") != r.token or doc["status"] == QUEUED:
                continue
            self._unindex(doc)
            doc["providerCallId"] = r.provider_call_id
            lease = utc(r.lease_until)
            if doc.get("leaseUntil") is None or lease > doc["leaseUntil"]:
                doc["leaseUntil"] = lease
            self._push(doc, {"at": utc(r.at), "event": "placed", "providerCallId": r.provider_call_id})
            self._index(doc)

    async def requeue_unplaced(self, call_id: ObjectId, token: str | None, when: dt.datetime, entry: dict,
                               provider_error: bool = False) -> bool:
        doc = self._doc(call_id)
        # {"claimToken": token}: with None, a call whose claimToken is None or absent.
        if (doc is None or doc.get("claimToken") != token or doc["status"] != DIALING
                or "providerCallId" in doc):
            return False
        target = self._check(doc, QUEUED)
        self._unindex(doc)
        doc["status"] = target
        doc["nextAttemptAt"] = utc(when)
        doc["attempts"] -= 1
        if provider_error:
            doc["providerErrors"] = doc.get("providerErrors", 0) + 1
        for name in CLAIM_FIELDS:
            doc.pop(name, None)
        self._push(doc, entry)
        self._index(doc)
        return True

    async def mark_uncertain(self, call_id: ObjectId, token: str, lease_until: dt.datetime, entry: dict) -> bool:
        doc = self._doc(call_id)
        if doc is None or doc.get("claimToken") != token or doc["status"] != DIALING:
            return False
        self._unindex(doc)
        doc["leaseUntil"] = utc(lease_until)
        doc["uncertain"] = True
        self._push(doc, entry)
        self._index(doc)
        return True

    async def progress(self, call_id: ObjectId, token: str | None, provider_call_id: str | None, to: str,
                       lease_until: dt.datetime, entry: dict, answered_by: str | None, now: dt.datetime) -> bool:
        move = PROGRESS_MOVES[CallStatus(to)]  # ringing or in_progress; anything else is a bug
        doc = self._doc(call_id)
        if doc is None or doc["status"] not in move.sources or not self._matches(doc, token, provider_call_id):
            return False
        target = self._check(doc, CallStatus(to).value)
        self._unindex(doc)
        doc["status"] = target
        doc["updatedAt"] = utc(now)
        doc["leaseUntil"] = utc(lease_until)
        if provider_call_id:
            doc["providerCallId"] = provider_call_id
        if answered_by:
            doc["answeredBy"] = answered_by
        self._push(doc, entry)
        self._index(doc)
        return True

    async def record_provider_id(self, call_id: ObjectId, token: str | None, provider_call_id: str,
                                 entry: dict | None) -> bool:
        doc = self._doc(call_id)
        if (doc is None or "providerCallId" in doc or doc["status"] not in IN_FLIGHT
                or (token and doc.get("claimToken") != token)):
            return False
        doc["providerCallId"] = provider_call_id  # not indexed: no re-index needed
        if entry is not None:
            self._push(doc, entry)
        return True

    async def finish(self, call_id: ObjectId, token: str | None, provider_call_id: str | None, finish: Finish,
                     now: dt.datetime) -> tuple[str, ObjectId] | None:
        doc = self._doc(call_id)
        if doc is None or doc["status"] not in IN_FLIGHT or not self._matches(doc, token, provider_call_id):
            return None
        now = utc(now)
        retry = finish.retry_at is not None and doc["attempts"] < finish.max_attempts
        target = self._check(doc, QUEUED if retry else str(finish.final))
        self._unindex(doc)
        doc["status"] = target
        if retry:
            doc["outcome"] = finish.outcome
            doc["updatedAt"] = now
            doc["nextAttemptAt"] = utc(finish.retry_at)
            for name in (*CLAIM_FIELDS, "providerCallId", "answeredBy"):  # the next attempt is a new provider call
                doc.pop(name, None)
            self._push(doc, {**finish.entry, "result": "retry"})
            kind = "retry"
        else:
            doc["outcome"] = finish.outcome
            doc["updatedAt"] = now
            doc["finishedAt"] = now
            if finish.provider_call_id:
                doc["providerCallId"] = finish.provider_call_id
            if finish.duration is not None:
                doc["duration"] = finish.duration
            for name in (*CLAIM_FIELDS, "activeKey"):
                doc.pop(name, None)
            self._push(doc, {**finish.entry, "result": finish.outcome})
            kind = "final"
        self._index(doc)
        return kind, doc["batchId"], clone(doc.get("group"))

    # ---- the reaper ----------------------------------------------------------------------------
    async def expired(self, now: dt.datetime, limit: int) -> list[dict]:
        if limit <= 0:
            return []
        now = utc(now)
        out = []
        for lease, cid in self._leases.islice(0, limit):
            if lease >= now:
                break
            out.append(copy_call(self._docs[cid]))
        return out

    async def take_for_reconciliation(self, call: dict, lease_until: dt.datetime, by: str) -> dict | None:
        doc = self._doc(call["_id"])
        seen = call.get("leaseUntil")
        if (doc is None or doc["status"] != call.get("status")
                or doc.get("leaseUntil") != (None if seen is None else utc(seen))):
            return None
        self._unindex(doc)
        doc["leaseUntil"] = utc(lease_until)
        doc["claimedBy"] = by
        self._index(doc)
        return copy_call(doc)
