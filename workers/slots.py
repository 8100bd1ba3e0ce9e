"""Concurrency slots and the dial-rate budget, shared by every dispatcher through the SlotLedger port.

The calls are the record of the slots: a call holds one of its batch's slots (and one of the account's)
while its status is in flight, and frees it by its own transition out of flight (its final status, a
hand-back unplaced, the reaper's settlement); nobody has to release it. What the calls cannot show yet is
a reservation made and not claimed: the ledger (one `dispatch` document in MongoDB, one row in SQLite)
keeps those as pending entries {callId, batchId, token, at}, and `nextDialAt`, the earliest instant the
next call may be placed (calls per second).

A reservation is one compare-and-set on the document's `version`: the dispatcher reads the document (with
each pending entry's call as it is now, then the calls in flight per batch), drops the entries whose claim
has landed (their calls count themselves from then on) or that are older than the grace period without a
claim (a dispatcher claims within half the grace or gives up), adds its own entries if every limit still
allows, and writes the pending list back only if nobody changed the document meanwhile. So invariant 1
holds with any number of dispatchers, and a crash can only keep a slot taken until the grace period ends,
never free one early. The work of a reservation follows the claims made since the last one, not the
calls in flight.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from bson import ObjectId

from dialer.ports import FlyingCounts, LedgerState, LedgerWrite, SlotLedger


@dataclass
class DispatchState:
    version: int
    flying: FlyingCounts  # calls in flight per batch
    pending: list[dict]  # reservations not seen claimed: {callId, batchId, token, at}
    next_dial_at: dt.datetime | None
    _reserved: Counter = field(default_factory=Counter, repr=False)
    _in_flight: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self._in_flight = self.flying.total
        self._count()

    def _count(self) -> None:
        self._reserved = Counter(e["batchId"] for e in self.pending)

    def used(self, batch_id: ObjectId) -> int:
        # Called for every batch a dispatcher looks at (thousands waiting on their slots): one dict probe by
        # the id's bytes (read once: `knows`, inlined); the reservations (by ObjectId, slower to hash) only
        # when there are any.
        key = batch_id.binary
        if self.flying.scope is not None and key not in self.flying.scope:
            raise LookupError(f"the slots of batch {batch_id} were not read")  # a 0 here could pass its limit
        n = self.flying.by_binary.get(key, 0)
        return n + self._reserved.get(batch_id, 0) if self._reserved else n

    def knows(self, batch_id: ObjectId) -> bool:
        """Whether this state counted the batch's calls in flight (see SlotLedger.read)."""
        return self.flying.scope is None or batch_id.binary in self.flying.scope

    def used_of(self, batch_ids: list[ObjectId]) -> list[int]:
        """`used` of each of these batches, in order (a look at thousands of waiting batches at once)."""
        if self.flying.scope is not None:
            return [self.used(b) for b in batch_ids]
        get = self.flying.by_binary.get
        out = [get(b.binary, 0) for b in batch_ids]
        if self._reserved:
            reserved = self._reserved.get
            out = [n + reserved(b, 0) for n, b in zip(out, batch_ids)]
        return out

    @property
    def total(self) -> int:
        return self._in_flight + len(self.pending)

    def per_batch(self) -> dict[str, int]:
        """Slots in use per batch (str id), for the gauges (a state read for every batch)."""
        if self.flying.scope is not None:
            raise LookupError("the slots of every batch were not read")
        out = {b.hex(): n for b, n in self.flying.by_binary.items()}  # as str(ObjectId(b)), without building it
        for batch_id, n in self._reserved.items():
            out[str(batch_id)] = out.get(str(batch_id), 0) + n
        return out


@dataclass
class Reservation:
    token: str
    grants: dict[ObjectId, list[ObjectId]] = field(default_factory=dict)  # batch -> call ids
    dial_times: dict[ObjectId, dt.datetime] = field(default_factory=dict)  # call id -> when to place it


class Slots:
    def __init__(self, ledger: SlotLedger, grace_seconds: float) -> None:
        self.ledger = ledger
        self.grace = dt.timedelta(seconds=grace_seconds)
        self.harvested_at: dt.datetime | None = None  # this process's last harvest (a reservation's look)
        # Tokens of this process's claims whose write has come back: whatever each of their calls is now, the
        # claim is no longer on its way, so their reservations are dropped without a look at their calls.
        self.settled: set[str] = set()

    async def state(self, now: dt.datetime | None = None, batch_ids: list[ObjectId] | None = None) -> DispatchState:
        """The slots in use; with `now`, minus the reservations whose claim landed or can no longer land;
        with `batch_ids`, those batches' only (and the account's total)."""
        return self.seen(await self.ledger.read(batch_ids, frozenset(self.settled)), now)

    def seen(self, read: LedgerState, now: dt.datetime | None = None) -> DispatchState:
        """`state` of a ledger read made elsewhere (with the due calls: CallRepo.look), asked with `settled`."""
        self.settled &= {e["token"] for e in read.pending}  # the others' reservations are gone for good
        state = DispatchState(read.version, read.flying, read.pending, read.next_dial_at)
        if now is not None:
            self._harvest(state, now)
            self.harvested_at = now
        return state

    def _harvest(self, state: DispatchState, now: dt.datetime) -> None:
        young = now - self.grace

        def waits(entry: dict) -> bool:
            if entry["token"] in self.settled:
                return False  # its claim's write came back here: its calls hold their slots themselves, if any
            holder = entry.get("holder")
            if holder is not None and holder[1] == entry["token"]:
                return False  # claimed: its call holds the slot itself while in flight (counted in `flying`)
            return entry["at"] > young  # the claim may still be on its way

        state.pending = [e for e in state.pending if waits(e)]
        state._count()

    def prepare(self, state: DispatchState, wanted: dict[ObjectId, tuple[int, list[ObjectId]]],
                max_total: int, cps: float, now: dt.datetime, token: str,
                earliest: dt.datetime | None = None) -> tuple[Reservation, LedgerWrite]:
        """A reservation of slots for `wanted` = {batch: (limit, call ids)} against a harvested `state`, their
        dial times 1/cps apart from the later of `earliest` (default: now) and the ledger's next dial time, and
        the ledger's compare-and-set that makes it (written with the calls' claim: CallRepo.claim)."""
        reservation = Reservation(token)
        count = sum(len(ids) for _, ids in wanted.values())
        if state.total + count > max_total:
            raise ValueError("the reservation would pass the account limit")
        earliest = earliest or now
        start = max(earliest, state.next_dial_at or earliest)
        gap = dt.timedelta(seconds=1.0 / cps)
        pending = _stored(state.pending)
        n = 0
        for batch_id, (limit, ids) in wanted.items():
            if state.used(batch_id) + len(ids) > limit:
                raise ValueError("the reservation would pass the batch limit")
            pending += [{"callId": cid, "batchId": batch_id, "token": token, "at": now} for cid in ids]
            reservation.grants[batch_id] = list(ids)
            for cid in ids:
                reservation.dial_times[cid] = start + gap * n
                n += 1
        next_dial_at = start + gap * n if n else state.next_dial_at
        return reservation, LedgerWrite(state.version, pending, next_dial_at)

    async def release(self, call_ids: Iterable[ObjectId], token: str) -> None:
        """Give back slots reserved under `token` whose claim did not happen (idempotent)."""
        ids = list(call_ids)
        if ids:
            await self.ledger.release(ids, token)

    async def compact(self, now: dt.datetime) -> int:
        """Drop the reservations that no longer hold a slot (the reaper, when no dispatcher is ticking: a
        reservation of this process within half the grace period did it)."""
        if self.harvested_at is not None and now - self.harvested_at < self.grace / 2:
            return 0
        for _ in range(3):
            state = await self.state()
            before = len(state.pending)
            self._harvest(state, now)
            if len(state.pending) == before:
                return 0
            if await self.ledger.write(state.version, _stored(state.pending), state.next_dial_at):
                return before - len(state.pending)
        return 0


def _stored(pending: list[dict]) -> list[dict]:
    """Reservations as the ledger keeps them (without the `holder` a read adds)."""
    return [{k: v for k, v in e.items() if k != "holder"} for e in pending]
