"""The simulation's full checks: the batches' kept counters against a recount of their calls, the calls stored
against what the answers accepted, where the calls not final are, and whether the run is finished (every record
sent, every call final)."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from bson import ObjectId

from dialer.core.statuses import ACTIVE_VALUES, IN_FLIGHT_VALUES, WAITING_VALUES

if TYPE_CHECKING:
    from sim.run import World

AUDIT_ROUNDS = 8  # every batch is recounted at least once in this many full checks (and all at the end)
AUDIT_GROUP = 20  # batches recounted in one read


class Recount:
    def __init__(self, world: "World") -> None:
        self.world = world
        self.audited: dict[ObjectId, tuple[list, list]] = {}  # batch -> (kept counters, recount) at its last recount
        self.audit_turn = 0  # where the next share of unchanged batches to recount starts

    async def check(self, everything: bool = False) -> None:
        """Counters against a recount, calls against what the answers accepted.

        A recount reads every call of a batch, so not every batch each time: those whose kept counters
        changed since their last recount, and in turn a share of the others (each at least every
        AUDIT_ROUNDS checks: a call changed without its counters would show there); `everything` (at the
        end) recounts every batch. A batch not recounted adds its last recount to the calls stored (its
        counters, equal then, have not moved since)."""
        w = self.world
        ids = list(w.batches)
        kept = await w.raw.calls.tallies_many(ids) if ids else {}
        share = -(-len(ids) // AUDIT_ROUNDS)
        turn = set(ids[self.audit_turn:self.audit_turn + share]) if ids else set()
        self.audit_turn = self.audit_turn + share if self.audit_turn + share < len(ids) else 0
        waiting = in_flight = total = 0
        chosen = [b for b in ids if everything or b in turn or b not in self.audited
                  or self.audited[b][0] != kept.get(b, [])]
        audits: dict = {}
        for i in range(0, len(chosen), AUDIT_GROUP):  # a bounded number of calls read at once
            audits.update(await w.raw.calls.audit_many(chosen[i:i + AUDIT_GROUP]))
        w.result.counts["recounts"] += len(chosen)
        for batch_id in ids:
            if batch_id in audits:
                actual, delta = audits[batch_id]
                if delta:
                    w.checker.fail(f"batch {batch_id}: counters differ from a recount by {delta}")
                self.audited[batch_id] = (kept.get(batch_id, []), actual)
            else:
                actual = self.audited[batch_id][1]
            for t in actual:
                total += t.calls
                if t.status in WAITING_VALUES:
                    waiting += t.calls
                elif t.status in IN_FLIGHT_VALUES:
                    in_flight += t.calls
        if total != w.accepted:
            w.checker.fail(f"{total} calls stored, {w.accepted} accepted by the answers")
        w.waiting = waiting + in_flight
        w.result.calls = total
        if w.config.progress:
            wall = time.perf_counter() - w.started
            w.config.progress(f"step {w.step:,}  {w.clock.now():%a %d %b %H:%M} UTC  calls {total:,}  "
                              f"placed {w.checker.placed:,}  waiting {waiting:,}  in flight {in_flight:,}  "
                              f"dispatchers {len(w.processes)}  requests {len(w.tasks)} sent {w.operators.sent:,}  "
                              f"violations {len(w.checker.violations)}  wall {wall:,.0f} s")

    async def left_behind(self) -> str:
        """Where the calls not final are: by their batch's status and their own (what a replay looks at first)."""
        w = self.world
        tallies = await w.raw.calls.tallies_many(list(w.batches))
        where: Counter = Counter()
        batches: dict[str, set] = {}
        for batch_id, ts in tallies.items():
            left = [t for t in ts if t.status in ACTIVE_VALUES and t.calls]
            if not left:
                continue
            batch = await w.raw.batches.get(batch_id) or {"status": "deleted"}
            due = await w.raw.calls.next_due_at(batch_id)
            for t in left:
                key = f"batch {batch['status']}, call {t.status}"
                where[key] += t.calls
                batches.setdefault(key, set()).add(f"{batch_id} (next due {due:%d %b %H:%M})" if due else str(batch_id))
        return "; ".join(f"{n:,} in {key} ({len(batches[key])} batches, e.g. {sorted(batches[key])[0]})"
                         for key, n in where.most_common()) or "none found by the kept counters"

    async def finished(self) -> bool:
        """Every record sent, every call final (by the kept counters), nothing left at the provider."""
        w = self.world
        if w.tasks or w.operators.sending or w.checker.alive_total:
            return False
        tallies = await w.raw.calls.tallies_many(list(w.batches))
        return not any(t.calls for ts in tallies.values() for t in ts if t.status in ACTIVE_VALUES)
