"""Concurrency slots and the dial-rate budget, shared by every dispatcher through one ledger document.

The ledger (the SlotLedger port: one `dispatch` document in MongoDB) holds the slots in use per batch (`slots.<batchId>`) and for
the whole account (`all`), and `nextDialAt`, the earliest instant the next call may be placed (calls
per second). A slot is an entry {callId, token, at}: `token` is the claim token the dispatcher then
writes onto the call, `at` when the slot was reserved.

Slots are never released one by one when calls end (that would be a write per call). Instead every
reservation is one compare-and-set on the document's `version`: the dispatcher reads the document,
reads the statuses of the calls holding slots, drops the entries that no longer hold a call, adds
its new entries if every limit still allows, and writes the lists back only if nobody changed the
document meanwhile. An entry whose call carries its token holds the slot while that call is in
flight; an entry whose claim has not landed (yet) holds it while younger than the grace period (a
dispatcher claims within half the grace or gives up). So invariant 1 holds with any number of
dispatchers, and a crash can only keep a slot taken until the grace period ends, never free one early.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable

from bson import ObjectId

from dialer.core.statuses import IN_FLIGHT_VALUES
from dialer.ports import CallRepo, LedgerState, SlotLedger


@dataclass
class DispatchState:
    version: int
    slots: dict[str, list[dict]]
    all: list[dict]
    next_dial_at: dt.datetime | None

    def used(self, batch_id: ObjectId) -> int:
        return len(self.slots.get(str(batch_id), []))

    @property
    def total(self) -> int:
        return len(self.all)

    @classmethod
    def of(cls, state: LedgerState) -> "DispatchState":
        return cls(state.version, state.slots, state.all, state.next_dial_at)


@dataclass
class Reservation:
    token: str
    grants: dict[ObjectId, list[ObjectId]] = field(default_factory=dict)  # batch -> call ids
    dial_times: dict[ObjectId, dt.datetime] = field(default_factory=dict)  # call id -> when to place it


class Slots:
    def __init__(self, ledger: SlotLedger, calls: CallRepo, grace_seconds: float) -> None:
        self.ledger = ledger
        self.calls = calls
        self.grace = dt.timedelta(seconds=grace_seconds)
        self.harvested_at: dt.datetime | None = None  # this process's last harvest (a reservation's look)

    async def state(self, now: dt.datetime | None = None) -> DispatchState:
        """The document; with `now`, minus the entries whose call no longer holds its slot."""
        state = DispatchState.of(await self.ledger.read())
        if now is not None:
            await self._harvest(state, now)
            self.harvested_at = now
        return state

    async def _harvest(self, state: DispatchState, now: dt.datetime) -> None:
        ids = {e["callId"] for e in state.all} | {e["callId"] for entries in state.slots.values() for e in entries}
        if not ids:
            return
        calls = await self.calls.holders(ids)
        young = now - self.grace

        def holds(entry: dict) -> bool:
            held = calls.get(entry["callId"])
            if held is not None and held[1] == entry.get("token"):
                return held[0] in IN_FLIGHT_VALUES  # claimed under this entry: held while in flight
            return entry["at"] > young  # the claim may still be on its way

        state.slots = {b: kept for b, entries in state.slots.items() if (kept := [e for e in entries if holds(e)])}
        state.all = [e for e in state.all if holds(e)]

    async def reserve(self, state: DispatchState, wanted: dict[ObjectId, tuple[int, list[ObjectId]]],
                      max_total: int, cps: float, now: dt.datetime, token: str) -> Reservation | None:
        """Reserve slots for `wanted` = {batch: (limit, call ids)} against a harvested `state`.

        One compare-and-set; None when another dispatcher changed the document first."""
        reservation = Reservation(token)
        count = sum(len(ids) for _, ids in wanted.values())
        if state.total + count > max_total:
            raise ValueError("the reservation would pass the account limit")
        start = max(now, state.next_dial_at or now)
        gap = dt.timedelta(seconds=1.0 / cps)
        slots = {b: list(entries) for b, entries in state.slots.items()}
        everything = list(state.all)
        n = 0
        for batch_id, (limit, ids) in wanted.items():
            key = str(batch_id)
            if len(slots.get(key, [])) + len(ids) > limit:
                raise ValueError("the reservation would pass the batch limit")
            entries = [{"callId": cid, "token": token, "at": now} for cid in ids]
            slots.setdefault(key, []).extend(entries)
            everything += entries
            reservation.grants[batch_id] = list(ids)
            for cid in ids:
                reservation.dial_times[cid] = start + gap * n
                n += 1
        next_dial_at = start + gap * n if n else state.next_dial_at
        written = await self.ledger.write(state.version, slots, everything, next_dial_at)
        return reservation if written else None

    async def release(self, batch_id: ObjectId, call_ids: Iterable[ObjectId], token: str) -> None:
        """Give back slots reserved under `token` whose claim did not happen (idempotent)."""
        await self.ledger.release(batch_id, list(call_ids), token)

    async def compact(self, now: dt.datetime) -> int:
        """Drop the entries that no longer hold a slot (the reaper, when no dispatcher is ticking: a
        reservation of this process within half the grace period did it)."""
        if self.harvested_at is not None and now - self.harvested_at < self.grace / 2:
            return 0
        for _ in range(3):
            state = await self.state()
            before = state.total + sum(map(len, state.slots.values()))
            await self._harvest(state, now)
            after = state.total + sum(map(len, state.slots.values()))
            if after == before:
                return 0
            if await self.ledger.write(state.version, state.slots, state.all, state.next_dial_at):
                return before - after
        return 0
