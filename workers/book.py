"""The running batches as one dispatcher sees them, and which of them may take calls now.

A dispatcher's cost per tick follows the calls it places, not the batches that run. So the book
- looks at every running batch only once in a while (`full` seconds, the safety net: their stamps, and
  the documents of those whose stamps differ from its copies, BatchRepo.runnable_stamps) and in between
  only at the batches changed or given calls since its last look (BatchRepo.changed_since, every `fresh`
  seconds: their stamps too, then the documents of the running ones whose stamps moved), plus the batches
  a placement is about to use (`confirm`, the placer's look just before it places: stamps again);
- keeps each runnable batch in one of three places: `ready` (may have due calls and free slots, in turn
  order: the batch served longest ago first, so a batch back from waiting on its slots does not queue
  behind those served since), `parked` (waiting for slots: back in turn once its slots in
  use fall to a threshold, seen in the ledger), `quiet` (nothing due: back in turn when its next call is
  due, calls join its queue, or one of its calls in flight ends, since it may be done).
So a tick touches the batches it serves and those whose state changed, never the whole list.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from typing import Callable

from bson import ObjectId

from dialer.core.clock import as_utc
from dialer.ports import BatchRepo

# What makes a batch worth looking at again when it changes (any other change keeps it where it is).
WATCHED = ("enqueuedAt", "concurrencyLimit", "callingWindow", "status", "scheduledAt", "compliance",
           "stateField")


READ_AT_ONCE = 500  # batch documents asked for in one read


def _stamp(batch: dict) -> tuple:
    return batch.get("updatedAt"), batch.get("enqueuedAt")


class Book:
    def __init__(self, repo: BatchRepo, fresh_seconds: float, full_seconds: float) -> None:
        self.repo = repo
        self.batches: dict[ObjectId, dict] = {}
        self.ready: dict[ObjectId, int] = {}  # batch -> its turn (the lowest goes first)
        self._turns: list[tuple[int, ObjectId]] = []  # (turn, batch): a heap, lazily cleaned
        self._last: dict[ObjectId, int] = {}  # batch -> its turn when last served (or first seen)
        self._turn = itertools.count()
        # Turns are never equal (a heap of thousands of batches then never compares their ids, in Python): a new
        # batch's is below every served one's, in the order they came.
        self._new_turn = itertools.count(-2 ** 62)
        self.parked: dict[ObjectId, int] = {}  # ready again when its slots in use are at most this
        self.quiet: dict[ObjectId, dt.datetime | None] = {}  # until (None: until a change or a call's end)
        self.flying: dict[ObjectId, int] = {}  # quiet with calls in flight: their number when it went quiet
        self._wakes: list[tuple[dt.datetime, int, ObjectId]] = []  # (until, seq, batch): a heap, lazily cleaned
        self._seq = itertools.count()
        self.fresh = dt.timedelta(seconds=fresh_seconds)
        self.full = dt.timedelta(seconds=full_seconds)
        # Looks back this far before its last look: another process's clock, a write landing late.
        self.overlap = dt.timedelta(seconds=max(10.0, 2 * fresh_seconds))
        self.readers: list[Callable[[dict], None]] = []  # told every runnable batch read (new or changed)
        self._stamps: dict[ObjectId, tuple] = {}  # batch -> the stamps of the book's copy (`_stamp`)
        self._fresh_at: dt.datetime | None = None
        self._full_at: dt.datetime | None = None
        self._since: dt.datetime | None = None
        # Batches waiting on their slots (parked) are looked at this often while others are in turn
        # (at every look when none is): a look at each is cheap, but there may be thousands of them.
        self.scan_every = dt.timedelta(seconds=0.5)
        self._scanned_at: dt.datetime | None = None
        self._needed: int | None = None
        # The batches whose calls ended in this process since the last look (its events service tells): while
        # they are known, a look reads only theirs (not thousands waiting), and all of them as often as the
        # dispatcher looks again for work from other processes (calls ending there: their callbacks, reapers).
        self.freed: set[ObjectId] = set()
        self.full_scan_every = dt.timedelta(seconds=2.0)  # the dispatcher sets its recheck interval
        self._targeted: list[ObjectId] | None = None  # the planned look's freed batches (None: every one waiting)
        # Pending batches whose scheduled start this dispatcher has seen (created or changed since its looks): it
        # wakes then and has them started (Engine.step) rather than wait for the reaper's minute.
        self.upcoming: dict[ObjectId, dt.datetime] = {}
        self._short: dict[ObjectId, int] = {}  # parked -> slots still to be freed for it, as last seen
        # Quiet batches with calls in flight are looked at as often as the changed batches are read (when one of
        # their calls ends they may be done: only their completion waits on it, their calls' retries wake them).
        self.done_every = self.fresh
        self._done_at: dt.datetime | None = None
        self.looked = False  # whether the last wake() looked at the waiting batches (else: what it returned is older)
        self._look_done = False  # whether the planned look covers the quiet batches with calls in flight

    # ---- reading the batches ---------------------------------------------------------------------
    def stale(self) -> None:
        """Look at the changed batches at the next look (work arrived in this process)."""
        self._fresh_at = None

    async def refresh(self, now: dt.datetime) -> None:
        since = self._since or now - self.overlap
        full = self._full_at is None or now >= self._full_at
        if full:
            # Every runnable batch's stamps; the documents of those new to the book or changed since its copy.
            stamps = await self.repo.runnable_stamps(now)
            for gone in [b for b in self.batches if b not in stamps]:
                self.drop(gone)
            await self._read(sorted(self._moved(stamps)), now)
            self._full_at = now + self.full
        if full or self._fresh_at is None or now >= self._fresh_at:
            # The stamps of the batches changed since the last look (looking back a little before it); the
            # documents of those running whose stamps differ from the book's copies (none after a full look);
            # the scheduled starts of the pending ones (the running batches' read does not show those).
            running = {}
            for batch in await self.repo.changed_since(since):
                scheduled = batch.get("scheduledAt")
                if batch["status"] == "pending" and scheduled is not None:
                    self.upcoming[batch["_id"]] = as_utc(scheduled)  # started when that time comes
                else:
                    self.upcoming.pop(batch["_id"], None)
                if batch["status"] != "running":
                    self.drop(batch["_id"])
                else:
                    running[batch["_id"]] = _stamp(batch)
            await self._read(self._moved(running), now)
            self._fresh_at, self._since = now + self.fresh, now - self.overlap

    async def confirm(self, batch_ids: list[ObjectId], now: dt.datetime) -> set[ObjectId]:
        """Which of these batches run, as read now (just before their calls are placed: a stop that has answered
        is always seen): their stamps, and the documents of those whose stamps moved from the book's copies
        (a change of settings is learnt); those not running leave the book."""
        return await self.learn(batch_ids, await self.repo.runnable_stamps(now, batch_ids), now)

    async def learn(self, batch_ids: list[ObjectId], stamps: dict[ObjectId, tuple], now: dt.datetime) -> set[ObjectId]:
        """As `confirm`, from stamps read elsewhere (a claim reads those of its batches after its write)."""
        self.keep_only(batch_ids, set(stamps))
        await self._read(self._moved(stamps), now)
        return {b for b in stamps if b in self.batches}

    def _moved(self, stamps: dict[ObjectId, tuple]) -> list[ObjectId]:
        """Those of these batches whose stamps differ from the book's copies (or that it has no copy of)."""
        mine = self._stamps.get
        return [b for b, stamp in stamps.items() if stamp != mine(b)]

    async def _read(self, batch_ids: list[ObjectId], now: dt.datetime) -> None:
        """The documents of these batches, as they are now (a few hundred a read); those not runnable leave."""
        for start in range(0, len(batch_ids), READ_AT_ONCE):
            part = batch_ids[start:start + READ_AT_ONCE]
            found = await self.repo.runnable_among(part, now)
            self.merge(found, now)
            self.keep_only(part, {b["_id"] for b in found})

    def merge(self, batches: list[dict], now: dt.datetime) -> None:
        """Batches as read now: a runnable one is kept (back in turn when new or changed in what matters
        to the dispatch), any other dropped."""
        for batch in batches:
            batch_id = batch["_id"]
            if batch.get("status") != "running" or (batch.get("scheduledAt") or now) > now:
                self.drop(batch_id)
                continue
            old = self.batches.get(batch_id)
            self.batches[batch_id] = batch
            self._stamps[batch_id] = _stamp(batch)
            for reader in self.readers:
                reader(batch)
            if old is None or any(old.get(k) != batch.get(k) for k in WATCHED):
                self.wake_batch(batch_id)

    def drop(self, batch_id: ObjectId) -> None:
        if self.batches.pop(batch_id, None) is None:
            return  # not in the book: no place holds it (each takes only the batches the book has a copy of)
        self._stamps.pop(batch_id, None)
        self._last.pop(batch_id, None)
        self.ready.pop(batch_id, None)
        self.parked.pop(batch_id, None)
        self._short.pop(batch_id, None)
        self.quiet.pop(batch_id, None)
        self.flying.pop(batch_id, None)

    def keep_only(self, batch_ids: list[ObjectId], running: set[ObjectId]) -> None:
        """After a re-read of these batches: those not running any more leave the book."""
        for batch_id in batch_ids:
            if batch_id not in running:
                self.drop(batch_id)

    # ---- where each batch is --------------------------------------------------------------------
    def wake_batch(self, batch_id: ObjectId) -> None:
        """Back in turn, where its last service puts it (a new batch first)."""
        if batch_id not in self.batches or batch_id in self.ready:
            return
        self.parked.pop(batch_id, None)
        self._short.pop(batch_id, None)
        self.quiet.pop(batch_id, None)
        self.flying.pop(batch_id, None)
        turn = self._last.get(batch_id)
        if turn is None:
            turn = self._last[batch_id] = next(self._new_turn)
        self.ready[batch_id] = turn
        heapq.heappush(self._turns, (turn, batch_id))

    def first(self) -> ObjectId | None:
        """The batch whose turn it is (it stays in turn until served, parked or hushed)."""
        while self._turns:
            turn, batch_id = self._turns[0]
            if self.ready.get(batch_id) == turn:
                return batch_id
            heapq.heappop(self._turns)  # served, parked or hushed since
        return None

    def park(self, batch_id: ObjectId, threshold: int, short: int) -> None:
        """Waiting until its slots in use fall to `threshold` (`short` more slots freed, as seen now)."""
        if batch_id not in self.batches:
            return  # dropped since it was looked at
        self.ready.pop(batch_id, None)
        self.parked[batch_id] = threshold
        self._short[batch_id] = short

    def hush(self, batch_id: ObjectId, until: dt.datetime | None, used: int) -> None:
        """Quiet until `until` (None: no time; back on a change, or when its calls in flight, `used`, fall)."""
        if batch_id not in self.batches:
            return  # dropped since it was looked at
        self.ready.pop(batch_id, None)
        self.quiet[batch_id] = until
        if used:
            self.flying[batch_id] = used
        if until is not None:
            heapq.heappush(self._wakes, (until, next(self._seq), batch_id))

    def served(self, batch_id: ObjectId) -> None:
        """Served this turn: to the back of the turn order."""
        turn = self._last[batch_id] = next(self._turn)
        if batch_id in self.ready:
            self.ready[batch_id] = turn
            heapq.heappush(self._turns, (turn, batch_id))

    def plan(self, now: dt.datetime, reach: int) -> list[ObjectId]:
        """Before a look: the quiet batches whose time came back in turn, and which batches' slots the look
        needs (the first `reach` in turn: a claim serves no more; the quiet ones with calls in flight and the
        parked ones when their look is due). `wake` then looks as planned."""
        while self._wakes and self._wakes[0][0] <= now:
            _, _, batch_id = heapq.heappop(self._wakes)
            until = self.quiet.get(batch_id)
            if until is not None and until <= now:
                self.wake_batch(batch_id)
        self._look_done = self._done_at is None or now >= self._done_at + self.done_every
        scan_due = not (self.ready and self._scanned_at is not None and now < self._scanned_at + self.scan_every)
        full_due = self._scanned_at is None or now >= self._scanned_at + self.full_scan_every
        self._targeted = None
        if self.freed and not full_due:  # a look at the batches told of, however many others wait
            self._targeted = [b for b in self.freed if b in self.parked]
        self.looked = scan_due or self._targeted is not None
        self.freed = set()
        ready = self._first(reach) if len(self.ready) > reach else self.ready
        if self._targeted is not None:  # (the quiet ones with calls in flight: at their own look, done ones together)
            return [*ready, *(self.flying if self._look_done else ()), *self._targeted]
        return [*ready, *(self.flying if self._look_done else ()), *(self.parked if self.looked else ())]

    def likely(self, n: int) -> list[ObjectId]:
        """After `plan`, the `n` batches a claim will likely serve first: those waiting on their slots whose calls
        ended here since (back in turn first, once `wake` sees their slots), then the first in turn, then, when
        the look is at every batch waiting on its slots and they are few, those. A few heap steps, whatever the
        number of batches."""
        out = [b for b in self._targeted or () if b in self.parked][:n]
        if len(out) < n:
            out += [b for b in self._first(n) if b not in out][:n - len(out)]
        if len(out) < n and self.looked and self._targeted is None and len(self.parked) <= n:
            out += [b for b in self.parked if b not in out][:n - len(out)]
        return out

    def _first(self, n: int) -> list[ObjectId]:
        """The first `n` batches in turn (thousands may wait in turn for the account's slots)."""
        first: list[tuple[int, ObjectId]] = []
        while self._turns and len(first) < n:
            entry = heapq.heappop(self._turns)
            if self.ready.get(entry[1]) == entry[0]:
                first.append(entry)
        for entry in first:
            heapq.heappush(self._turns, entry)
        return [batch_id for _, batch_id in first]

    def wake(self, now: dt.datetime, used_of: Callable[[list[ObjectId]], list[int]]) -> int | None:
        """As planned (`plan`, just before): batches back in turn, quiet ones whose calls in flight fell and
        parked ones whose slots were freed (`used_of`: the slots in use of each of a list of batches).
        Returns how many slots must still be freed for the next parked batch (None: none)."""
        if self._look_done:
            self._done_at = now
            ids = list(self.flying)
            for batch_id, flying, used in zip(ids, list(self.flying.values()), used_of(ids)):
                if used < flying:
                    self.wake_batch(batch_id)
        if not self.looked:
            return self._needed
        # Every batch waiting on its slots, or only those with calls ended here since (the others need what they
        # did when last seen: their slots are freed by their own calls' ends, which this process is told of).
        ids = list(self.parked) if self._targeted is None else self._targeted
        if self._targeted is None:
            self._scanned_at = now
        for batch_id, threshold, used in zip(ids, [self.parked[b] for b in ids], used_of(ids)):
            n = used - threshold
            if n <= 0:
                self.wake_batch(batch_id)
            else:
                self._short[batch_id] = n
        self._needed = min(self._short.values()) if self._short else None
        return self._needed

    def starts_due(self, now: dt.datetime) -> bool:
        """Whether a scheduled start seen has come (those are forgotten: the reaper's query starts them)."""
        due = [b for b, at in self.upcoming.items() if at <= now]
        for batch_id in due:
            del self.upcoming[batch_id]
        return bool(due)

    def next_wake(self) -> dt.datetime | None:
        """When a look is next due of its own: a quiet batch's time, the look at the quiet batches with calls in
        flight (their last call ending makes them done: nothing else would bring a look then), a scheduled start."""
        look = self._done_at + self.done_every if self.flying and self._done_at is not None else None
        if self.upcoming:
            start = min(self.upcoming.values())
            look = start if look is None else min(look, start)
        while self._wakes:
            until, _, batch_id = self._wakes[0]
            if self.quiet.get(batch_id) == until:
                return until if look is None else min(until, look)
            heapq.heappop(self._wakes)  # woken or dropped meanwhile
        return look
