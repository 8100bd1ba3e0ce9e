"""The `calls` collection's queries for the dispatcher's claims: the look before one (the slot ledger's read and
the due calls' (calls.py), at once), the claim itself (with the slot ledger's
compare-and-set before it and the reads the placer places on after it), the provider ids of placed calls,
and a claim handed back unplaced or left uncertain. Part of MongoCalls (calls.py), whose counter bookkeeping
(`counters`) they share. Every query names call ids (the `_id` index).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Iterable

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from dialer.core.statuses import IN_FLIGHT_VALUES, CallStatus
from dialer.ports import BUSY_WAIT, Claim, ClaimResult, LedgerWrite, PlacedRecord, placed_entry
from dialer.store.mongo.documents import DUPLICATE_KEY, applied, refused, unavailable, unordered

log = logging.getLogger("dialer.store.calls")
BEFORE_FIELDS = {"batchId": 1, "status": 1, "outcome": 1, "attempts": 1}  # what the counters need to know
# What a claim sets and every move out of flight unsets. `busyLine` is the callee's line_key while the call is in
# flight: a unique index on it (indexes.py) refuses a second call in flight for one callee, whichever dispatcher
# claims it (invariant 3 across batches).
CLAIM_FIELDS = {"leaseUntil": "", "claimedBy": "", "dialAt": "", "uncertain": "", "busyLine": ""}


async def holders_of(calls: Any, ids: list[ObjectId]) -> dict[ObjectId, tuple[str, str | None]]:
    """(status, claimToken) of each of these calls that exists (CallRepo.holders, and the slot ledger's read)."""
    if not ids:
        return {}
    return {d["_id"]: (d["status"], d.get("claimToken"))
            async for d in calls.find({"_id": {"$in": ids}}, {"status": 1, "claimToken": 1})}


async def _empty(value: Any) -> Any:
    return value


def _deferral(call_id: ObjectId, when: dt.datetime, entry: dict | None) -> UpdateOne:
    return UpdateOne({"_id": call_id, "status": CallStatus.QUEUED.value},
                     {"$set": {"nextAttemptAt": when}, **({"$push": {"history": entry}} if entry else {})})


def _busy_entry(now: dt.datetime) -> dict:
    return {"at": now, "event": "callee_busy"}


def _one_per_line(claims: list[Claim]) -> tuple[list[Claim], list[Claim]]:
    """(the first claim of each callee in this write, the later ones): the index would refuse them anyway, but
    which of two ops of an unordered write it refuses is the server's choice."""
    seen: set[str] = set()
    first, later = [], []
    for c in claims:
        if c.line and c.line in seen:
            later.append(c)
        else:
            first.append(c)
            if c.line:
                seen.add(c.line)
    return first, later


def _line_taken(error: Any, first_claim: int) -> set[int]:
    """The indexes of the claim ops (from `first_claim`) refused by the busy-line unique index."""
    if not isinstance(error, BulkWriteError):
        return set()
    return {e["index"] for e in error.details.get("writeErrors", [])
            if e["index"] >= first_claim and e.get("code") == DUPLICATE_KEY}


def _without(error: Any, indexes: set[int]) -> Any:
    """`error` less the write errors at `indexes`; None when nothing else went wrong."""
    rest = [e for e in error.details.get("writeErrors", []) if e["index"] not in indexes]
    if not rest and not error.details.get("writeConcernErrors"):
        return None
    return BulkWriteError({**error.details, "writeErrors": rest})


class ClaimCalls:
    c: Any
    counters: Any
    _batches: Any  # MongoBatches and MongoDnc: what a claim reads after its write
    _dnc: Any
    _ledger: Any  # MongoLedger: the reservation written before it

    @unavailable
    async def holders(self, call_ids: Iterable[ObjectId]) -> dict[ObjectId, tuple[str, str | None]]:
        return await holders_of(self.c, list(call_ids))

    @unavailable
    async def look(self, batch_ids: list[ObjectId] | None, wanted: dict[ObjectId, int], now: dt.datetime,
                   settled: frozenset[str] = frozenset()) -> tuple:
        """The ledger's read and the due calls' at once (their round trips overlap)."""
        ledger, due = await asyncio.gather(self._ledger.read(batch_ids, settled), self.due_many(wanted, now))
        return ledger, due

    @unavailable
    async def claim(self, claims: list[Claim], deferrals: list[tuple], records: list[PlacedRecord], now: dt.datetime,
                    batch_ids: Iterable[ObjectId] = (), numbers: Iterable[tuple[ObjectId, str]] = (),
                    reservation: LedgerWrite | None = None) -> ClaimResult:
        """The ledger's compare-and-set (if asked), the write, then, once it is acknowledged, the reads at once:
        which claims landed (unless every op of the write matched), the batches' stamps, the do-not-call entries."""
        if reservation is not None and not await self._ledger.write(
                reservation.version, reservation.pending, reservation.next_dial_at):
            return ClaimResult(reserved=False)
        claims, busy = _one_per_line(claims)
        ops = [_deferral(cid, when, entry[0] if entry else None) for cid, when, *entry in deferrals]
        ops += [_deferral(c.call_id, now + BUSY_WAIT, _busy_entry(now)) for c in busy]
        ops += [self._placed_op(r) for r in records]
        first_claim = len(ops)
        ops += [UpdateOne({"_id": c.call_id, "status": CallStatus.QUEUED.value,
                           **({"outcome": c.seen[1], "attempts": c.seen[2]} if c.seen else {})},
                          {"$set": {"status": CallStatus.DIALING.value, "claimedBy": c.by, "claimToken": c.token,
                                    "dialAt": c.dial_at, "leaseUntil": c.lease_until, "updatedAt": now,
                                    **({"busyLine": c.line} if c.line else {})},
                           "$inc": {"attempts": 1}}) for c in claims]
        matched, error = await applied(self.c, ops) if ops else (0, None)
        # Every op found its call as the due read saw it: every claim landed, and the counters' change is known
        # without reading the calls back. Otherwise one read of the claimed calls says which landed.
        as_seen = bool(claims) and matched == len(ops) and all(c.seen for c in claims)
        won = self._won_as_seen(claims) if as_seen else set()
        taken = _line_taken(error, first_claim)
        if taken:
            # Callees in a call of another batch (the unique index said so): they wait, as a busy line does. Were
            # this write lost, they would stay due and meet the index again at the next claim.
            error = _without(error, taken)
            await unordered(self.c, [_deferral(claims[i - first_claim].call_id, now + BUSY_WAIT, _busy_entry(now))
                                     for i in sorted(taken)])
        batch_ids, numbers = list(batch_ids), list(numbers)
        landed, running, listed = await asyncio.gather(
            self._landed(claims) if claims and not as_seen else _empty(set()),
            self._batches.runnable_stamps(now, batch_ids) if batch_ids else _empty({}),
            self._dnc.listed(numbers) if numbers else _empty({}))
        won |= landed
        if error is not None:
            # Part of it may have landed: each claim that did is in `won`, to be placed rather than left
            # dialing until its lease ends; the placed records that did not are written again.
            log.warning("claim write failed part-way: what landed was read back",
                        extra={"claims": len(claims), "won": len(won), "error": type(error).__name__})
            await self._record_again(records, refused(error), first_claim - len(records))
        return ClaimResult(won=won, running=running, listed=listed)

    def _claimed(self, batch_id: ObjectId, outcome: str | None, attempts: int) -> None:
        """The batch's counters after a claim of a call that was queued with this outcome and these attempts."""
        self.counters.change(batch_id, (CallStatus.QUEUED.value, outcome, attempts),
                             (CallStatus.DIALING.value, outcome, attempts + 1))

    def _won_as_seen(self, claims: list[Claim]) -> set[ObjectId]:
        for c in claims:
            self._claimed(*c.seen)
        return {c.call_id for c in claims}

    async def _landed(self, claims: list[Claim]) -> set[ObjectId]:
        """Which claims landed (some calls may have changed under us: another dispatcher, a cancel), and
        what they were before, for the batch counters: one read of the claimed calls."""
        tokens = {c.call_id: c.token for c in claims}
        won = set()
        async for d in self.c.find({"_id": {"$in": list(tokens)}}, {"claimToken": 1, "batchId": 1, "attempts": 1,
                                                                     "outcome": 1, "status": 1}):
            if d.get("claimToken") == tokens[d["_id"]] and d["status"] == CallStatus.DIALING.value:
                won.add(d["_id"])
                self._claimed(d["batchId"], d.get("outcome"), d.get("attempts", 1) - 1)
        return won

    async def _record_again(self, records: list[PlacedRecord], failed: set[int] | None, first: int) -> None:
        """The placed records of a claim write that failed part-way (theirs are its ops from `first`) that
        did not land, written again: those the error names, or, when it cannot say, those whose call does
        not carry the provider's id."""
        if not records:
            return
        if failed is not None:
            again = [r for i, r in enumerate(records) if first + i in failed]
        else:
            ids = {d["_id"]: d.get("providerCallId")
                   async for d in self.c.find({"_id": {"$in": [r.call_id for r in records]}}, {"providerCallId": 1})}
            again = [r for r in records if r.call_id in ids and ids[r.call_id] != r.provider_call_id]
        if again:
            await self.c.bulk_write([self._placed_op(r) for r in again], ordered=False)

    @staticmethod
    def _placed_op(r: PlacedRecord) -> UpdateOne:
        # Not onto a call put back in the queue, nor one whose end came first and wrote the placement (finish).
        return UpdateOne({"_id": r.call_id, "claimToken": r.token, "status": {"$ne": CallStatus.QUEUED.value},
                          "$or": [{"status": {"$in": IN_FLIGHT_VALUES}},
                                  {"providerCallId": {"$ne": r.provider_call_id}}]},
                         {"$set": {"providerCallId": r.provider_call_id}, "$max": {"leaseUntil": r.lease_until},
                          "$push": {"history": placed_entry(r.at, r.provider_call_id)}})

    @unavailable
    async def record_placed(self, records: list[PlacedRecord]) -> None:
        if records:
            await self.c.bulk_write([self._placed_op(r) for r in records], ordered=False)

    @unavailable
    async def requeue_unplaced(self, call_id: ObjectId, token: str | None, when: dt.datetime, entry: dict,
                               provider_error: bool = False) -> bool:
        before = await self.c.find_one_and_update(
            {"_id": call_id, "claimToken": token, "status": CallStatus.DIALING.value,
             "providerCallId": {"$exists": False}},
            {"$set": {"status": CallStatus.QUEUED.value, "nextAttemptAt": when},
             "$inc": {"attempts": -1, **({"providerErrors": 1} if provider_error else {})},
             "$unset": CLAIM_FIELDS, "$push": {"history": entry}}, projection=BEFORE_FIELDS)
        if before is None:
            return False
        outcome, attempts = before.get("outcome"), before.get("attempts", 0)
        self.counters.change(before["batchId"], (before["status"], outcome, attempts),
                             (CallStatus.QUEUED.value, outcome, attempts - 1))
        return True

    @unavailable
    async def mark_uncertain(self, call_id: ObjectId, token: str, lease_until: dt.datetime, entry: dict) -> bool:
        result = await self.c.update_one({"_id": call_id, "claimToken": token, "status": CallStatus.DIALING.value},
                                         {"$set": {"leaseUntil": lease_until, "uncertain": True},
                                          "$push": {"history": entry}})
        return result.modified_count == 1
