"""Reconciling batch counters with the calls: the repair of drift a crash can leave.

The counters are kept by the call transitions themselves (CallRepo.tallies); with MongoDB a
transition and its counter increment are two writes, so a crash between them leaves the counters off
by that transition. Periodically, for each running batch, the kept tallies are compared with a fresh
recount of the calls, read between two reads of the tallies: when those differ, a transition landed
meanwhile and the comparison says nothing. A difference seen once may be a transition caught between
its two writes; the same difference seen on the next run is drift, and is added as a correction (an
increment, never an overwrite, so transitions meanwhile are not lost).
"""

from __future__ import annotations

import logging
from collections import Counter

from bson import ObjectId

from dialer.core.clock import Clock
from dialer.ports import BatchRepo, CallRepo, Tally

log = logging.getLogger("dialer.counters")


def difference(actual: list[Tally], kept: list[Tally]) -> list[Tally]:
    """actual - kept, per (status, outcome); empty when they agree."""
    totals: Counter = Counter()
    for sign, tallies in ((1, actual), (-1, kept)):
        for t in tallies:
            for i, n in enumerate((t.calls, t.dialled, t.attempts)):
                totals[(t.status, t.outcome, i)] += sign * n
    pairs = sorted({(s, o) for s, o, _ in totals}, key=lambda p: (p[0], p[1] or ""))
    delta = [Tally(s, o, totals[(s, o, 0)], totals[(s, o, 1)], totals[(s, o, 2)]) for s, o in pairs]
    return [t for t in delta if (t.calls, t.dialled, t.attempts) != (0, 0, 0)]


class CounterReconciler:
    def __init__(self, batches: BatchRepo, calls: CallRepo, clock: Clock) -> None:
        self.batches = batches
        self.calls = calls
        self.clock = clock
        self._suspect: dict[ObjectId, list[Tally]] = {}  # batch -> the difference seen on the last run
        self.repaired = 0

    async def run(self) -> int:
        """One pass over the running batches; returns how many were repaired."""
        repaired = 0
        seen = set()
        for batch in await self.batches.runnable(self.clock.now()):
            batch_id = batch["_id"]
            seen.add(batch_id)
            if await self.check(batch_id):
                repaired += 1
        for batch_id in set(self._suspect) - seen:
            del self._suspect[batch_id]
        self.repaired += repaired
        return repaired

    async def check(self, batch_id: ObjectId) -> bool:
        kept = await self.calls.tallies(batch_id)
        actual = await self.calls.recount(batch_id)
        if await self.calls.tallies(batch_id) != kept:
            # A transition landed between the reads: their difference is no drift. On a busy batch the
            # same kind of transition (a call starting to ring) lands run after run, and its difference
            # would pass for drift seen twice.
            self._suspect.pop(batch_id, None)
            return False
        delta = difference(actual, kept)
        if not delta:
            self._suspect.pop(batch_id, None)
            return False
        if self._suspect.get(batch_id) != delta:
            self._suspect[batch_id] = delta  # maybe a transition between its two writes: look again later
            return False
        await self.calls.correct(batch_id, delta)
        del self._suspect[batch_id]
        log.warning("batch counters drifted from the calls: repaired", extra={
            "batchId": str(batch_id), "delta": [f"{t.status}:{t.outcome or ''}{t.calls:+d}" for t in delta]})
        return True
