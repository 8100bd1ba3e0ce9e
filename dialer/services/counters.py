"""Reconciling batch counters with the calls: the repair of drift a crash can leave.

The counters are kept by the call transitions themselves (CallRepo.tallies); with MongoDB a
transition and its counter increment are two writes, so a crash between them leaves the counters off
by that transition (and a counter write that timed out is not repeated, lest it count twice).
Periodically, for each running batch, the kept tallies are compared with a fresh recount of the calls
(CallRepo.audit_many: from one consistent view where the backend has one, as SQLite does; many small
batches in one audit, so a pass costs a read per few hundred batches, not one per batch).
A difference seen once may be a transition caught between its two writes; the same difference seen on
the next run is drift, and is added as a correction (an increment, never an overwrite, so transitions
meanwhile are not lost).

Where the store keeps the tallies in the same transaction as the calls (SQLite's triggers:
CallRepo.tallies_exact), nothing can drift and nothing is recounted: only the cancelled batches are looked
at, for the cut-short cancels below (so the reaper's cost does not grow with the running batches).

Batches changed in the last RECENTLY before this pass, or before the last pass if the clock jumped since
(paused, completed, cancelled: by the injected clock, read from the store) are looked at too: their last
calls end after the batch stops, and a crash can lose those calls' increments. Such a batch is looked at
until its counters are found right with no call in flight, and again only if it changes. A cancelled batch
found with calls still waiting is a cancel cut short (its process died between the move and the withdrawal,
and no retry came): its waiting calls are withdrawn here.
"""

from __future__ import annotations

import datetime as dt
import logging

from bson import ObjectId

from dialer.core.clock import Clock
from dialer.core.statuses import IN_FLIGHT_VALUES, WAITING_VALUES, BatchStatus
from dialer.ports import BatchRepo, CallRepo, Tally
from dialer.services.calls import withdraw_all

log = logging.getLogger("dialer.counters")
RECENTLY = dt.timedelta(days=1)  # how long after its last change a batch that is not running is looked at
AUDIT_BATCHES = 200  # batches recounted in one audit (one port call)...
AUDIT_CALLS = 200_000  # ...holding at most this many calls between them (a larger batch alone)
RUNNING = BatchStatus.RUNNING.value
CANCELLED = BatchStatus.CANCELLED.value


class CounterReconciler:
    def __init__(self, batches: BatchRepo, calls: CallRepo, clock: Clock) -> None:
        self.batches = batches
        self.calls = calls
        self.clock = clock
        self._suspect: dict[ObjectId, list[Tally]] = {}  # batch -> the difference seen on the last run
        self._settled: dict[ObjectId, dt.datetime] = {}  # batch not running -> its updatedAt when found right
        self.repaired = 0
        self._passed: dt.datetime | None = None  # when the last whole pass began

    async def run(self) -> int:
        """One pass over the running batches and those changed lately; returns how many were repaired."""
        now = self.clock.now()
        # Back from this pass, or from the last one if it was longer ago (the clock may have jumped: a simulation
        # over quiet days, a machine asleep), so a batch changed between two passes is always looked at.
        since = min(now, self._passed or now) - RECENTLY
        exact = getattr(self.calls, "tallies_exact", False)
        if exact:  # nothing can drift: only a cancel cut short is left to find
            batches = {b["_id"]: b for b in await self.batches.updated_since(since, [CANCELLED])}
        else:
            batches = {b["_id"]: b for b in await self.batches.updated_since(since)}
            batches.update((b["_id"], b) for b in await self.batches.runnable(now))
        looked = [b for batch_id, b in batches.items()
                  # right, with nothing in flight, and unchanged since: its calls no longer move
                  if b["status"] == RUNNING or self._settled.get(batch_id) != b.get("updatedAt")]
        repaired = 0
        if exact:  # the kept tallies are the recount
            kept = await self.calls.tallies_many([b["_id"] for b in looked]) if looked else {}
            for batch in looked:
                await self.check(batch, kept.get(batch["_id"], []), [])
        else:
            for group in await self._groups(looked):
                audits = await self.calls.audit_many([b["_id"] for b in group])
                for batch in group:
                    if await self.check(batch, *audits[batch["_id"]]):
                        repaired += 1
        for memo in (self._suspect, self._settled):
            for batch_id in set(memo) - set(batches):
                del memo[batch_id]
        self.repaired += repaired
        self._passed = now
        return repaired

    async def _groups(self, batches: list[dict]) -> list[list[dict]]:
        """The batches in groups of at most AUDIT_BATCHES batches and AUDIT_CALLS calls (as the kept tallies
        count them, one read for all): one audit each, so many small batches cost a few reads, and a large
        batch is recounted alone."""
        if not batches:
            return []
        sizes = await self.calls.tallies_many([b["_id"] for b in batches])
        groups: list[list[dict]] = [[]]
        calls = 0
        for batch in batches:
            size = sum(t.calls for t in sizes.get(batch["_id"], []))
            if groups[-1] and (len(groups[-1]) >= AUDIT_BATCHES or calls + size > AUDIT_CALLS):
                groups.append([])
                calls = 0
            groups[-1].append(batch)
            calls += size
        return groups

    async def check(self, batch: dict, actual: list[Tally], delta: list[Tally]) -> bool:
        """One batch's audit (the recount, and its difference from the kept tallies): True if repaired."""
        batch_id = batch["_id"]
        if batch["status"] == CANCELLED and any(t.status in WAITING_VALUES and t.calls > 0 for t in actual):
            withdrawn = await withdraw_all(self.calls, batch_id, self.clock.now())
            log.warning("a cancel cut short had left calls waiting: withdrawn",
                        extra={"batchId": str(batch_id), "calls": withdrawn})
            return False  # the counters are looked at again on the next run
        if not delta:
            self._suspect.pop(batch_id, None)
            if batch["status"] != RUNNING and not any(t.status in IN_FLIGHT_VALUES for t in actual):
                self._settled[batch_id] = batch.get("updatedAt")
            return False
        if self._suspect.get(batch_id) != delta:
            self._suspect[batch_id] = delta  # maybe a transition between its two writes: look again later
            return False
        await self.calls.correct(batch_id, delta)
        del self._suspect[batch_id]
        log.warning("batch counters drifted from the calls: repaired", extra={
            "batchId": str(batch_id), "delta": [f"{t.status}:{t.outcome or ''}{t.calls:+d}" for t in delta]})
        return True
