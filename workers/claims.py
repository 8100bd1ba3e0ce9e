"""Writing a claim: the caps reserved, then the slots reserved in the ledger and the calls claimed in one
store operation (CallRepo.claim with the ledger's compare-and-set, which also reads the batches and the
do-not-call lists after its write), and everything given back when a part of it fails (a lost race, a stall
past half the grace period, a store error mid-write), so a slot or a cap attempt is never kept for a call
that was not claimed.

The dispatcher (dispatcher.py) decides what to claim; this module only writes it, or undoes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets

from bson import ObjectId

from dialer.core.clock import Clock
from dialer.ports import CallRepo, Claim, ClaimResult, StoreUnavailable, line_key
from workers.compliance_gate import ComplianceGate
from dialer.logs import Outage
from workers.placer import Claimed, Placer
from workers.slots import DispatchState, Reservation, Slots

log = logging.getLogger("workers.dispatcher")


class ClaimWriter:
    def __init__(self, calls: CallRepo, slots: Slots, rules: ComplianceGate, placer: Placer, clock: Clock,
                 stats, name: str, lease: dt.timedelta, max_concurrent_calls: int, calls_per_second: float) -> None:
        self.calls = calls
        self.slots = slots
        self.rules = rules
        self.placer = placer
        self.clock = clock
        self.stats = stats
        self.name = name
        self.lease = lease
        self.max_concurrent_calls = max_concurrent_calls
        self.calls_per_second = calls_per_second
        self.outage = Outage(log, "claim write")

    async def write(self, grants: dict[ObjectId, list[dict]], by_id: dict[ObjectId, dict], state: DispatchState,
                    deferrals: list[tuple], now: dt.datetime, earliest: dt.datetime | None = None
                    ) -> tuple[list[Claimed], ClaimResult]:
        """Reserve the grants' caps, then their slots and their calls' claim with the deferrals and the placer's
        provider ids in one write, which reads after it the batches' stamps and the numbers' do-not-call entries:
        the calls won, each with its dial time (nothing when a race was lost), and what was read."""
        token = secrets.token_hex(6)
        reservation = ledger_write = None
        grants, lines = _one_per_callee(grants, by_id)
        if grants:
            grants, capped = await self.rules.reserve(grants, by_id, token, now)  # over their cap: deferred
            deferrals = deferrals + capped
        if grants:
            wanted = {b: (by_id[b]["concurrencyLimit"], [c["_id"] for c in calls]) for b, calls in grants.items()}
            reservation, ledger_write = self.slots.prepare(state, wanted, self.max_concurrent_calls,
                                                           self.calls_per_second, now, token, earliest)
        records = self.placer.take_records()
        claims: list[Claim] = []
        if reservation is not None:
            for calls in grants.values():
                for call in calls:
                    dial_at = reservation.dial_times[call["_id"]]
                    seen = (call["batchId"], call.get("outcome"), call.get("attempts", 0))
                    claims.append(Claim(call["_id"], token, self.name, dial_at, dial_at + self.lease, lines[call["_id"]],
                                        seen))
        claimed_ids = [c.call_id for c in claims]
        if not (claims or deferrals or records):
            return [], ClaimResult()
        # What the placer needs to know before it places the claims (Placer.admit), read after the write.
        batch_ids = list(grants) if claims else []
        numbers = {(by_id[b]["workspaceId"], c["phoneNumber"]) for b in batch_ids for c in grants[b]}
        try:
            looked = await self.calls.claim(claims, deferrals, records, now, batch_ids, numbers, ledger_write)
        except StoreUnavailable as exc:
            # Nothing or part was written: keep the provider ids for the next write, give the slots and the
            # caps back (a claim that did land is in flight under its token and keeps its slot anyway).
            self.outage.failed(exc, dispatcher=self.name)
            self.placer.unrecorded = records + self.placer.unrecorded
            if reservation is not None:
                with contextlib.suppress(StoreUnavailable):  # else the slots wait out the grace period
                    won = await self._keep_claimed(reservation, claimed_ids)
                    await self._give_back_caps(grants, token, won)
            return [], ClaimResult()
        self.outage.ok(dispatcher=self.name)
        if not looked.reserved:  # another dispatcher wrote the ledger first: nothing was written; next tick
            self.stats.lost_races += 1
            self.placer.unrecorded = records + self.placer.unrecorded
            await self._give_back_caps(grants, token, set())
            return [], ClaimResult()
        if reservation is None:
            return [], looked
        self.slots.settled.add(reservation.token)
        self.stats.reserved += 1
        won = looked.won
        if won and self.clock.now() > now + self.lease / 2:
            # The claim's write itself stalled past half the grace period: its slot entries may have been
            # harvested and reused meanwhile, so these calls would pass a limit. Hand them back unplaced.
            later = self.clock.now()
            for call_id in won:
                await self.calls.requeue_unplaced(call_id, token, later, {"at": later, "event": "claim_too_slow"})
            for batch_id, calls in grants.items():
                if any(c["_id"] in won for c in calls):
                    await self.placer.enqueued_or_withdrawn(batch_id, later)
            await self._give_back(reservation, set())
            await self._give_back_caps(grants, token, set())
            self.stats.lost_races += 1
            return [], ClaimResult()
        if len(won) < len(claimed_ids):
            # Some calls changed under us (another dispatcher, a cancel): give the others' slots back.
            await self._give_back(reservation, won)
            await self._give_back_caps(grants, token, won)
        out = []
        for batch_id, calls in grants.items():
            for call in calls:
                if call["_id"] in won:
                    out.append(Claimed(reservation.dial_times[call["_id"]], call, by_id[batch_id], token))
        self.stats.claimed += len(out)
        return out, looked

    async def _keep_claimed(self, reservation: Reservation, claimed_ids: list[ObjectId]) -> set[ObjectId]:
        """After a failed claim write: the calls this reservation's claim did win (the write may have
        partly landed); the slots of the others are given back."""
        holders = await self.calls.holders(claimed_ids)
        won = {cid for cid, (_, token) in holders.items() if token == reservation.token}
        await self._give_back(reservation, won)
        return won

    async def _give_back(self, reservation: Reservation, won: set[ObjectId]) -> None:
        await self.slots.release([i for ids in reservation.grants.values() for i in ids if i not in won],
                                 reservation.token)

    async def _give_back_caps(self, grants: dict[ObjectId, list[dict]], token: str, won: set[ObjectId]) -> None:
        """The attempts reserved against caps for the calls of this claim that it did not win."""
        await self.rules.release([c["_id"] for calls in grants.values() for c in calls if c["_id"] not in won], token)


def _one_per_callee(grants: dict[ObjectId, list[dict]], by_id: dict[ObjectId, dict]
                    ) -> tuple[dict[ObjectId, list[dict]], dict[ObjectId, str]]:
    """(the grants less any call whose callee another call of the grants already has, the same person in two
    batches of a workspace: it stays queued for a later claim and reserves neither a slot nor a cap now; each kept
    call's line_key)."""
    lines: dict[ObjectId, str] = {}
    seen: set[str] = set()
    out: dict[ObjectId, list[dict]] = {}
    for batch_id, calls in grants.items():
        workspace = by_id[batch_id]["workspaceId"]
        kept = []
        for call in calls:
            line = line_key(workspace, call["phoneNumber"], call.get("extension"))
            if line not in seen:
                seen.add(line)
                lines[call["_id"]] = line
                kept.append(call)
        if kept:
            out[batch_id] = kept
    return out, lines
