"""Concurrency slots and the dial-rate budget, shared by every dispatcher through one MongoDB document.

The `dispatch` document of an account holds the slots in use per batch (`slots.<batchId>`) and for
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

from dialer.core.clock import as_utc
from dialer.core.statuses import IN_FLIGHT_VALUES
from dialer.store import Store

ACCOUNT = "account"


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


@dataclass
class Reservation:
    token: str
    grants: dict[ObjectId, list[ObjectId]] = field(default_factory=dict)  # batch -> call ids
    dial_times: dict[ObjectId, dt.datetime] = field(default_factory=dict)  # call id -> when to place it


class Slots:
    def __init__(self, store: Store, grace_seconds: float) -> None:
        self.store = store
        self.grace = dt.timedelta(seconds=grace_seconds)

    async def state(self, now: dt.datetime | None = None) -> DispatchState:
        """The document; with `now`, minus the entries whose call no longer holds its slot."""
        doc = await self.store.dispatch.find_one({"_id": ACCOUNT})
        if doc is None:
            await self.store.dispatch.update_one(
                {"_id": ACCOUNT}, {"$setOnInsert": {"version": 0, "slots": {}, "all": [], "nextDialAt": None}},
                upsert=True)
            doc = await self.store.dispatch.find_one({"_id": ACCOUNT})
        next_at = doc.get("nextDialAt")
        state = DispatchState(doc["version"], doc.get("slots", {}), doc.get("all", []),
                              None if next_at is None else as_utc(next_at))
        if now is not None:
            await self._harvest(state, now)
        return state

    async def _harvest(self, state: DispatchState, now: dt.datetime) -> None:
        ids = {e["callId"] for e in state.all} | {e["callId"] for entries in state.slots.values() for e in entries}
        if not ids:
            return
        calls = {c["_id"]: c async for c in self.store.calls.find(
            {"_id": {"$in": list(ids)}}, {"status": 1, "claimToken": 1})}
        young = now - self.grace

        def holds(entry: dict) -> bool:
            call = calls.get(entry["callId"])
            if call is not None and call.get("claimToken") == entry.get("token"):
                return call["status"] in IN_FLIGHT_VALUES  # claimed under this entry: held while in flight
            return as_utc(entry["at"]) > young  # the claim may still be on its way

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
        update = {"$set": {"slots": slots, "all": everything}, "$inc": {"version": 1}}
        if n:
            update["$set"]["nextDialAt"] = start + gap * n
        result = await self.store.dispatch.update_one({"_id": ACCOUNT, "version": state.version}, update)
        return reservation if result.matched_count == 1 else None

    async def release(self, batch_id: ObjectId, call_ids: Iterable[ObjectId], token: str) -> None:
        """Give back slots reserved under `token` whose claim did not happen (idempotent)."""
        ids = list(call_ids)
        if not ids:
            return
        cond = {"callId": {"$in": ids}, "token": token}
        await self.store.dispatch.update_one(
            {"_id": ACCOUNT}, {"$pull": {f"slots.{batch_id}": cond, "all": cond}, "$inc": {"version": 1}})

    async def compact(self, now: dt.datetime) -> int:
        """Drop the entries that no longer hold a slot (the reaper, when no dispatcher is ticking)."""
        for _ in range(3):
            state = await self.state()
            before = state.total + sum(map(len, state.slots.values()))
            await self._harvest(state, now)
            after = state.total + sum(map(len, state.slots.values()))
            if after == before:
                return 0
            result = await self.store.dispatch.update_one(
                {"_id": ACCOUNT, "version": state.version},
                {"$set": {"slots": state.slots, "all": state.all}, "$inc": {"version": 1}})
            if result.matched_count:
                return before - after
        return 0
