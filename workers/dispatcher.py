"""The dispatcher's decisions, one tick at a time: which calls to place now, within every limit.

A tick: look at the batches changed since the last look (the book, book.py: the running batches in
turn, parked until their slots free, quiet until due) and the slots in use (slots.py: the calls in
flight per batch, and the reservations not claimed yet), read with the due calls of the batches it will
likely serve (CallRepo.look: one store operation); share the account's free slots and dial-rate budget
between the batches in turn, a claim group each (sharing.py); take their due calls first in, first out
(due_calls.py: those read with the slots, or one more read; calls whose callee's window has closed
meanwhile are moved to the next opening, computed, not polled);
reserve the slots in one compare-and-set; claim the calls in one bulk write (queued -> dialing, with
a lease); hand them to the Placer (placer.py), which places each at its dial time. Batches with
nothing left become completed. Between claims the dispatcher sleeps (see claim()). The cost of a tick
follows the batches it serves, not the batches that run.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import secrets
from collections import Counter
from dataclasses import dataclass

from bson import ObjectId

from dialer.core.clock import Clock
from dialer.core.machine import COMPLETE, REOPEN
from dialer.ports import Repositories
from dialer.services.call_events import CallEvents
from workers.book import Book
from workers.claims import ClaimWriter
from workers.compliance_gate import ComplianceGate
from workers.due_calls import DueCalls
from workers.placer import Placer
from workers.sharing import round_robin, spread
from workers.slots import Slots
from workers.telephony.base import TelephonyProvider

log = logging.getLogger("workers.dispatcher")


def _ends_for_good(batch: dict, call: dict) -> bool:
    """Whether this call, claimed now, leaves nothing behind when it ends: its last attempt, and no group."""
    return not call.get("group") and call.get("attempts", 0) + 1 >= (batch.get("retry") or {}).get("maxAttempts", 1)


SCOPE_MAX = 500  # a look at more batches than this reads the slots of every batch (one count per batch)
# With fewer running batches than this, a look reads the slots of every batch: as cheap as of a few, and one
# query on MongoDB, where a few batches' counts and the account's total are two.
SCOPE_ALL_UNDER = 32
LIKELY = 2  # batches whose due calls a look reads with the slots


@dataclass
class DispatcherConfig:
    calls_per_second: float = 1.0
    max_concurrent_calls: int = 100
    lease_seconds: float = 120.0
    public_base_url: str = ""
    machine_detection: bool = False
    rate_horizon_seconds: float = 2.0  # how far ahead dial times may be reserved
    recheck_seconds: float = 2.0  # an idle dispatcher looks again this often (sooner when poked)
    batch_cache_seconds: float = 5.0  # batches changed or given calls since the last look are re-read this often
    batch_full_seconds: float = 60.0  # every running batch is re-read this often (the placer reads those it places)
    claim_group_fraction: float = 0.04  # claim when at least this share of a batch's limit is free...
    claim_group_max: int = 10  # ...or this many (a batch with a large limit would leave slots idle waiting for 4%)
    account_group_fraction: float = 0.02  # and, while the account's cap binds, this share of the cap...
    account_group_min: int = 2  # ...or at least this many (a claim costs the same few operations)
    quiet_seconds: float = 30.0  # a batch with nothing due nor in flight is looked at again at least this often


@dataclass
class Stats:
    ticks: int = 0
    claimed: int = 0
    reserved: int = 0  # reservations written (each one compare-and-set of the slot ledger)
    placed: int = 0
    provider_errors: int = 0
    deferred: int = 0
    lost_races: int = 0
    completed_batches: int = 0

    def summary(self) -> str:
        return (f"ticks={self.ticks} claimed={self.claimed} reserved={self.reserved} placed={self.placed} provider_errors={self.provider_errors} "
                f"deferred={self.deferred} lost_races={self.lost_races} completed_batches={self.completed_batches}")


class Dispatcher:
    def __init__(self, repos: Repositories, clock: Clock, provider: TelephonyProvider, events: CallEvents,
                 slots: Slots, config: DispatcherConfig, name: str | None = None) -> None:
        self.calls = repos.calls
        self.batches = repos.batches
        self.clock = clock
        self.slots = slots
        self.config = config
        self.name = name or f"dispatcher-{secrets.token_hex(3)}"
        self.stats = Stats()
        self.claiming = True
        self._pokes = 0  # calls that left flight in this process since the last look
        self._pokes_needed = 1  # how many freed slots make another look worthwhile
        self._account_full = False  # the last look left the account without a group of free slots
        self._idle_until: dt.datetime | None = None
        self.book = Book(repos.batches, config.batch_cache_seconds, config.batch_full_seconds)
        self._quiet_cap = dt.timedelta(seconds=config.quiet_seconds)
        self._recheck = dt.timedelta(seconds=config.recheck_seconds)
        self.book.full_scan_every = self._recheck
        # The most a claim can share out (its dial-rate budget, the account's cap): the batches in turn it may reach.
        self._reach = min(config.max_concurrent_calls,
                          math.floor(config.rate_horizon_seconds * config.calls_per_second) + 1)
        # Each due call's window narrowed by its compliance profile; frequency caps reserved beside the slots.
        self.rules = ComplianceGate(repos.tenancy, repos.caps, dt.timedelta(seconds=config.batch_cache_seconds),
                                    dt.timedelta(seconds=config.rate_horizon_seconds))
        self.book.readers.append(self.rules.saw)
        self.due = DueCalls(repos.calls, self.rules, self.book, self._quiet_cap)
        # The placer asks for the batches it is about to place afresh just before it places (stop means stop).
        self.placer = Placer(repos.calls, repos.batches, clock, provider, events, self.rules, self._fresh_running,
                             self.stats,
                             lease=dt.timedelta(seconds=config.lease_seconds),
                             public_base_url=config.public_base_url, machine_detection=config.machine_detection,
                             dnc=repos.dnc)
        self.placer.on_requeue = self.requeued
        self.writer = ClaimWriter(repos.calls, slots, self.rules, self.placer, clock, self.stats, self.name,
                                  dt.timedelta(seconds=config.lease_seconds), config.max_concurrent_calls,
                                  config.calls_per_second)

    # ---- one tick -------------------------------------------------------------------------
    async def tick(self) -> int:
        """One round of decisions; returns the number of calls placed."""
        self.stats.ticks += 1
        now = self.clock.now()
        if self.claiming:
            await self.claim(now)
        return await self.placer.place_due(now)

    def poke(self, batch_id: ObjectId) -> None:
        """A call of this batch left flight (an event applied in this process): a slot is free."""
        self._pokes += 1
        self.book.freed.add(batch_id)

    def wake(self) -> None:
        """New work (calls enqueued in this process): look at the next tick, at the batches changed since."""
        self._idle_until = None
        self.book.stale()

    async def _fresh_running(self, now: dt.datetime, batch_ids: set[ObjectId]) -> set[ObjectId]:
        """Which of these batches run, read now (the placer's check before it places); the book learns
        the latest settings of those whose stamps moved, and forgets those that stopped."""
        return await self.book.confirm(sorted(batch_ids), now)

    async def claim(self, now: dt.datetime) -> None:
        """Reserve and claim what may be dialled now (a tick without the placing).

        The account's free slots and dial budget are shared, a claim group at a time, between the batches
        in turn (the book: those that may have due calls and free slots) *before* any call is read, so only
        batches granted something are asked for their due calls, all in one read. A batch found with no
        free slots waits (parked) until the ledger shows its slots freed; one found with nothing due is left
        alone (quiet) until its next call becomes due, calls arrive (ingestion and retries stamp the
        batch's `enqueuedAt`), or one of its calls in flight ends. So the cost of a tick follows the batches
        it serves, not the batches that run."""
        if self._idle_until is not None and now < self._idle_until and self._pokes < self._pokes_needed:
            return  # nothing more could be claimed last time, and not enough slots were freed here since
        poked, self._pokes = self._pokes, 0
        book = self.book
        await book.refresh(now)
        if not book.batches:
            await self.placer.flush_records()
            self._idle(now)  # until the recheck, or a scheduled start seen
            return
        await self.rules.refresh(now, book.batches)
        # The slots of the batches this look needs only (a few, usually: not the thousands waiting); of every
        # batch when the look needs many, or when few run.
        looked_at = book.plan(now, self._reach)
        scope = None if len(looked_at) > SCOPE_MAX or len(book.batches) < SCOPE_ALL_UNDER else looked_at
        # The due calls of the batches this claim will likely serve are read with the slots (one store
        # operation), before their shares are known: enough for the slots the calls ended here since may have
        # freed, and two claim groups. Not while the account was full at the last look and no call has ended
        # here since (the look would claim nothing).
        likely = book.likely(LIKELY) if poked or not self._account_full else []
        asked = {b: min(limit, 2 * self._group(limit) + poked) + 1
                 for b in likely for limit in (book.batches[b]["concurrencyLimit"],)}
        if asked:
            read, early = await self.calls.look(scope, asked, now, frozenset(self.slots.settled))
            state = self.slots.seen(read, now)
        else:
            state, early = await self.slots.state(now, scope), {}
        needed: list[int] = []  # slots still to be freed before another look is worthwhile
        if (parked := book.wake(now, state.used_of)) is not None:
            needed.append(parked)
        earliest = self.placer.earliest_dial(now)
        budget = self._rate_budget(now, earliest, state.next_dial_at)
        account_free = self.config.max_concurrent_calls - state.total
        rate_bound = bool(book.ready) and budget <= 0  # calls may be due but the dial rate allows none now
        total = min(budget, account_free)
        # The account claims in groups too: while it is the limit (calls in flight, fewer free slots
        # than a group), wait for a group to be freed rather than claiming call by call.
        cap = self.config.max_concurrent_calls
        account_group = max(min(self.config.account_group_min, cap), math.ceil(cap * self.config.account_group_fraction))
        if book.ready and account_free < account_group and state.total > 0:
            needed.append(account_group - max(account_free, 0))
            total = 0
        room, cut = self._pick(total, state, needed)
        candidates, deferrals, idle, drained = await self.due.gather(room, state, total, now, early, asked)
        grants = round_robin(candidates, total)
        claims, looked = await self.writer.write(grants, book.batches, state, deferrals, now, earliest)
        self._account_full = account_free - len(claims) < account_group
        claimed = Counter(c.batch["_id"] for c in claims) if drained else Counter()
        for batch_id, granted in grants.items():  # after this claim, how many must end before the next
            _, free, group = room[batch_id]
            if (batch_id in drained and claimed[batch_id] == len(candidates[batch_id])
                    and all(_ends_for_good(book.batches[batch_id], call) for call in candidates[batch_id])):
                # Every call due now was claimed, each on its last attempt and in no chain: quiet until its next
                # call is due, calls arrive or one of its calls in flight ends (not parked: nothing waits on
                # its slots). A call that may come back (a retry, its group's next call) parks the batch, so
                # its return is seen at the next look at the parked, not the slower one at the quiet.
                used = state.used(batch_id) + claimed[batch_id]
                self.book.hush(batch_id, self.due.quiet_until(now, drained[batch_id], used), used)
            elif free - len(granted) < group:
                limit = free + state.used(batch_id)
                book.park(batch_id, limit - group, group - (free - len(granted)))
                needed.append(group - (free - len(granted)))
        self.stats.deferred += len(deferrals)
        await self._complete_idle(idle, now)
        limited = rate_bound or (grants and sum(map(len, grants.values())) >= total)
        if (grants and not claims) or limited or cut or not book.looked:
            # Lost a race, held back by the rate or the account, more batches in turn than this look read, or
            # the batches waiting on their slots were not looked at this time (others were in turn): next tick.
            self._idle_until = None
        else:
            # Done for now: look again when enough slots were freed here, or after the recheck interval
            # (work arriving from other processes: new calls, status callbacks to the API).
            self._idle(now)
            self._pokes_needed = min(needed) if needed else 1
        if claims:  # the batches and the lists as read after the claim: the placer places on them
            running = await book.learn(list({c.batch["_id"] for c in claims}), looked.running, now)
            claims = await self.placer.admit(claims, running, looked.listed, now)
        self.placer.add(claims)

    def recheck_every(self, seconds: float) -> None:
        """Other processes wake this dispatcher (dialer/wakeups.py): its recheck is for what they could not say."""
        self._recheck = self.book.full_scan_every = dt.timedelta(seconds=max(seconds, self.config.recheck_seconds))

    def _idle(self, now: dt.datetime) -> None:
        """Nothing more to claim now: the next look at the recheck, or sooner when the book has a time of its own."""
        wake = self.book.next_wake()
        self._idle_until = min(now + self._recheck, wake) if wake else now + self._recheck

    def _pick(self, total: int, state, needed: list[int]) -> tuple[dict[ObjectId, list[int]], bool]:
        """`total` shared out a claim group at a time to the batches in turn, each up to its free slots:
        ({batch: [share, free slots, claim group]}, whether batches in turn were left unread). Only the batches
        reached are looked at; one found without a group of free slots is parked (and what it needs noted in
        `needed`)."""
        room: dict[ObjectId, list[int]] = {}
        left = total
        cut = False
        while left > 0:
            batch_id = self.book.first()
            if batch_id is None or batch_id in room:
                break  # none left, or round once already
            if not state.knows(batch_id):  # past the batches read (those parked on the way), or back in turn since
                cut = True
                break
            limit = self.book.batches[batch_id]["concurrencyLimit"]
            used = state.used(batch_id)
            free = limit - used
            # Claim in small groups (a few % of the limit) rather than one call per freed slot: each
            # claim costs the same few database operations whatever the group's size.
            group = self._group(limit)
            if free <= 0 or (used > 0 and free < group):
                self.book.park(batch_id, limit - group, used - (limit - group))
                needed.append(used - (limit - group))
                continue
            n = min(group, free, left)
            room[batch_id] = [n, free, group]
            left -= n
            self.book.served(batch_id)
        spread(room, left)
        return room, cut

    def _group(self, limit: int) -> int:
        """A batch's claim group: claim when a few % of its limit are free rather than one call per freed slot
        (each claim costs the same few store operations whatever its size)."""
        return max(1, min(self.config.claim_group_max, math.ceil(limit * self.config.claim_group_fraction)))

    def requeued(self, batch_id: ObjectId) -> None:
        """A call of the batch went back to the queue in this process (handed back, or a retry): look at the
        batch again at the next tick (no re-read of the changed batches: this one is known)."""
        self.book.wake_batch(batch_id)
        self._idle_until = None

    def _rate_budget(self, now: dt.datetime, earliest: dt.datetime, next_dial_at: dt.datetime | None) -> int:
        """How many dial times may still be reserved from `earliest` (the placer's) up to now + the rate horizon."""
        cps = self.config.calls_per_second
        start = max(earliest, next_dial_at or earliest)
        ahead = (start - now).total_seconds()
        return max(0, math.floor((self.config.rate_horizon_seconds - ahead) * cps) + 1) - len(self.placer.ready)

    async def _complete_idle(self, batches: list[dict], now: dt.datetime) -> None:
        """Batches found with nothing due and nothing in flight become completed, unless a call of theirs
        waits or flies: one look at all of them, one write moving them, one look again at those moved."""
        if not batches:
            return
        active = await self.calls.active_among([b["_id"] for b in batches])
        idle = [b["_id"] for b in batches if b["_id"] not in active]
        done = await self.batches.move_many(idle, COMPLETE, now, {"completedAt": now}) if idle else set()
        moved = [batch_id for batch_id in idle if batch_id in done]
        again = await self.calls.active_among(moved) if moved else set()
        for batch_id in moved:
            if batch_id in again:
                # Calls were enqueued between our look and the move (their request saw the batch still
                # running and left it): run again. Enqueueing after this point restarts it itself.
                await self.batches.move(batch_id, REOPEN, now, unset=("completedAt",))
                continue
            self.stats.completed_batches += 1
            log.info("batch completed", extra={"batchId": str(batch_id)})

    async def stop_claiming(self) -> None:
        """SIGTERM: claim nothing more; calls claimed but not yet placed go back to the queue."""
        self.claiming = False
        await self.placer.hand_back()

    @property
    def waiting_to_place(self) -> int:
        return len(self.placer.ready)
