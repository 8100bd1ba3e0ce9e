"""Concurrency slots and the dial-rate budget, shared by every dispatcher through one MongoDB document.

The `dispatch` document of an account holds the set of calls in flight per batch (`slots.<batchId>`)
and for the whole account (`all`), plus `nextDialAt`, the earliest instant the next call may be
placed (calls per second). A dispatcher reserves slots for the calls it is about to claim with ONE
conditional update: `slots.<b>.<limit-k>` must not exist (fewer than limit-k entries) and the
version must be the one it read (so the rate budget is not spent twice). A slot is an entry
{callId, at}; releasing it is an idempotent `$pull`, so a slot can never be freed twice, and a
crash can only leave a slot taken (never free one too many): invariant 1 holds whatever dies when.
The reaper frees slots whose call is no longer in flight (see heal()).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from bson import ObjectId

from .clock import as_utc
from .store import Store

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
    grants: dict[ObjectId, list[ObjectId]] = field(default_factory=dict)  # batch -> call ids
    dial_times: dict[ObjectId, dt.datetime] = field(default_factory=dict)  # call id -> when to place it


class Slots:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def state(self) -> DispatchState:
        doc = await self.store.dispatch.find_one({"_id": ACCOUNT})
        if doc is None:
            await self.store.dispatch.update_one(
                {"_id": ACCOUNT},
                {"$setOnInsert": {"version": 0, "slots": {}, "all": [], "nextDialAt": None}},
                upsert=True,
            )
            doc = await self.store.dispatch.find_one({"_id": ACCOUNT})
        next_at = doc.get("nextDialAt")
        return DispatchState(doc["version"], doc.get("slots", {}), doc.get("all", []),
                             None if next_at is None else as_utc(next_at))

    async def reserve(self, state: DispatchState, wanted: dict[ObjectId, tuple[int, list[ObjectId]]],
                      max_total: int, cps: float, now: dt.datetime) -> Reservation | None:
        """Reserve slots for `wanted` = {batch: (limit, call ids)} in one conditional update.

        Returns None when another dispatcher changed the document first (try again next tick)."""
        count = sum(len(ids) for _, ids in wanted.values())
        if count == 0:
            return Reservation()
        if count > max_total:
            raise ValueError("cannot reserve more slots than the account limit")
        flt: dict = {"_id": ACCOUNT, "version": state.version, f"all.{max_total - count}": {"$exists": False}}
        push: dict = {}
        entries_all = []
        reservation = Reservation()
        start = max(now, state.next_dial_at or now)
        gap = dt.timedelta(seconds=1.0 / cps)
        n = 0
        for batch_id, (limit, ids) in wanted.items():
            if not ids:
                continue
            flt[f"slots.{batch_id}.{limit - len(ids)}"] = {"$exists": False}
            entries = [{"callId": cid, "at": now} for cid in ids]
            push[f"slots.{batch_id}"] = {"$each": entries}
            entries_all += entries
            reservation.grants[batch_id] = list(ids)
            for cid in ids:
                reservation.dial_times[cid] = start + gap * n
                n += 1
        push["all"] = {"$each": entries_all}
        result = await self.store.dispatch.update_one(
            flt, {"$push": push, "$inc": {"version": 1}, "$set": {"nextDialAt": start + gap * n}}
        )
        return reservation if result.matched_count == 1 else None

    async def release(self, batch_id: ObjectId, call_ids: list[ObjectId]) -> None:
        """Free the slots of calls that left flight (idempotent)."""
        if not call_ids:
            return
        cond = {"callId": {"$in": call_ids}}
        await self.store.dispatch.update_one(
            {"_id": ACCOUNT}, {"$pull": {f"slots.{batch_id}": cond, "all": cond}}
        )

    async def taken(self) -> list[tuple[str, dict]]:
        state = await self.state()
        return [(batch, entry) for batch, entries in state.slots.items() for entry in entries]
