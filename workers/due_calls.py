"""Reading a claim's due calls: the due calls of the batches a claim's budget reaches (sharing.py shares it),
each decided against its callee's window and its compliance profile (ready now; deferred to the next instant
both allow, with the rule why; suppressed when its profile never allows it), and the batches found with
nothing due left quiet until their next call is due. The dispatcher (dispatcher.py) reads the slots first,
with the due calls of the batches it will likely serve (CallRepo.look): those answer here when they cover a
batch's share, so a claim in the steady state costs one read before its write.
"""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

from dialer.core.compliance import HORIZON
from dialer.ports import CallRepo
from workers.book import Book
from workers.compliance_gate import ComplianceGate
from workers.sharing import spread


def _covered(early: dict, asked: dict[ObjectId, int], wanted: dict[ObjectId, int]) -> dict:
    """Of the due calls read with the slots, those that answer `wanted` as `due_many(wanted)` would: read with
    as many asked, or fewer found than asked (all there are); cut to what is wanted."""
    out = {}
    for batch_id, n in wanted.items():
        if batch_id not in early:
            continue
        due, later = early[batch_id]
        if asked[batch_id] >= n or len(due) < asked[batch_id]:
            out[batch_id] = (due[:n], None) if len(due) >= n else (due, later)
    return out


class DueCalls:
    def __init__(self, calls: CallRepo, rules: ComplianceGate, book: Book, quiet_cap: dt.timedelta) -> None:
        self.calls = calls
        self.rules = rules
        self.book = book
        self._quiet_cap = quiet_cap

    async def gather(self, room: dict[ObjectId, list[int]], state, total: int, now: dt.datetime,
                     early: dict, asked: dict[ObjectId, int]):
        """The due calls of the batches the shared budget reaches: (ready calls per batch, deferrals,
        batches with nothing left, batches whose due calls were all read: {batch: when to look again}).
        At most two reads, each of every batch at once, each asking one call more than the share (so a batch
        read to its end is known to be): what a batch could not use goes round once more to the batches that
        had more due than their share. The first read is skipped for the batches whose due calls were read
        with the slots (`early`, as many as `asked`), when that covers their share."""
        candidates: dict[ObjectId, list[dict]] = {}
        seen: dict[ObjectId, set[ObjectId]] = {}  # batch -> its due calls read so far (ready or deferred)
        deferrals: list[tuple[ObjectId, dt.datetime]] = []
        idle: list[dict] = []
        drained: dict[ObjectId, dt.datetime] = {}
        shares = {b: entry[0] for b, entry in room.items()}
        for _ in range(2):
            if not shares:
                break
            wanted = {b: len(seen.get(b, ())) + n + 1 for b, n in shares.items()}
            found = _covered(early, asked, wanted) if not seen else {}
            if rest := {b: n for b, n in wanted.items() if b not in found}:
                found.update(await self.calls.due_many(rest, now))
            full = []
            for batch_id, share in shares.items():
                read = seen.setdefault(batch_id, set())
                skip = len(read)
                due, later = found.get(batch_id, ([], None))
                # What the first read did not see, by id (between the reads a call may have been suppressed,
                # or one due earlier may have appeared: never the same call granted twice), up to the share
                # (if another dispatcher claimed what the first read saw, this read finds more new calls).
                due = [c for c in due if c["_id"] not in read]
                beyond = len(due) > share  # more due than the share
                due = due[:share]
                read.update(c["_id"] for c in due)
                batch = self.book.batches[batch_id]
                for call in due:
                    decision = self.rules.decide(batch, call, now)
                    if decision.allowed(now):
                        candidates.setdefault(batch_id, []).append(call)
                    elif decision.at is None and decision.rule:  # never under its profile (within the horizon)
                        await self.calls.suppress_queued(call["_id"], now, {"at": now, "event": "suppressed",
                                                                            "rule": decision.rule})
                    else:  # moved to the next instant its window and its profile allow, with the rule why
                        rule = ({"at": now, "event": "deferred", "rule": decision.rule},) if decision.rule else ()
                        opens = decision.at or now + HORIZON
                        deferrals.append((call["_id"], opens, *rule))
                        later = min(later or opens, opens)  # due again then
                if beyond:
                    full.append(batch_id)
                elif batch_id in candidates:
                    drained[batch_id] = later
                elif not skip:
                    # Nothing due now: leave the batch alone until its next call is due.
                    used = state.used(batch_id)
                    self.book.hush(batch_id, self.quiet_until(now, later, used), used)
                    if later is None and used == 0:
                        idle.append(batch)
            left = total - sum(map(len, candidates.values()))
            more = {b: [len(candidates.get(b, [])), room[b][1], room[b][2]] for b in full}
            spread(more, left)
            shares = {b: entry[0] - len(candidates.get(b, [])) for b, entry in more.items()
                      if entry[0] > len(candidates.get(b, []))}
        return candidates, deferrals, idle, drained

    def quiet_until(self, now: dt.datetime, later: dt.datetime | None, used: int) -> dt.datetime | None:
        """When to look again at a batch with nothing due now: when its next call is due (`later`); without
        calls in flight, at least every `quiet_seconds` (the safety net). With calls in flight, not before
        `later`: one of them ending brings it back (the book's look at quiet batches), as do new calls or a
        change (the book's reads); looking sooner would find its slots taken, and park it for nothing."""
        if used:
            return later
        return min(later or now + self._quiet_cap, now + self._quiet_cap)
