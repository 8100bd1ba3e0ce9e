"""The dispatcher's decisions, one tick at a time: which calls to place now, within every limit.

A tick: read the running batches and the shared slot document (dropping the slots of calls that
left flight); for each batch with a group of free slots, take its due calls first in, first out
(calls whose callee's window has closed meanwhile are moved to the next opening, computed, not
polled); share the account's free slots and dial-rate budget between batches round-robin; reserve
the slots in one compare-and-set; claim the calls in one bulk write (queued -> dialing, with a
lease); hand them to the Placer (placement.py), which places each at its dial time. Batches with
nothing left become completed. Between claims the dispatcher sleeps (see claim()).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import secrets
from dataclasses import dataclass

from bson import ObjectId

from dialer.core.clock import Clock
from dialer.core.machine import COMPLETE, REOPEN
from dialer.ports import Claim, Repositories, StoreUnavailable
from dialer.services.call_events import CallEvents
from dialer.core.compliance import HORIZON
from workers.compliance_gate import ComplianceGate
from workers.placer import Claimed, Placer
from workers.slots import Reservation, Slots
from workers.telephony.base import TelephonyProvider

log = logging.getLogger("workers.dispatcher")


@dataclass
class DispatcherConfig:
    calls_per_second: float = 1.0
    max_concurrent_calls: int = 100
    lease_seconds: float = 120.0
    public_base_url: str = ""
    machine_detection: bool = False
    rate_horizon_seconds: float = 2.0  # how far ahead dial times may be reserved
    recheck_seconds: float = 2.0  # an idle dispatcher looks again this often (sooner when poked)
    batch_cache_seconds: float = 5.0  # running batches are re-read at least this often (each placement round reads them too)
    claim_group_fraction: float = 0.05  # claim when at least this share of a batch's limit is free
    quiet_seconds: float = 30.0  # a batch with nothing due is looked at again at least this often


@dataclass
class Stats:
    ticks: int = 0
    claimed: int = 0
    placed: int = 0
    provider_errors: int = 0
    deferred: int = 0
    lost_races: int = 0
    completed_batches: int = 0

    def summary(self) -> str:
        return (f"ticks={self.ticks} claimed={self.claimed} placed={self.placed} provider_errors={self.provider_errors} "
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
        self._rotation = 0
        self._pokes = 0  # calls that left flight in this process since the last look
        self._pokes_needed = 1  # how many freed slots make another look worthwhile
        self._idle_until: dt.datetime | None = None
        self._batches: tuple[dt.datetime, list[dict]] | None = None  # (fresh until, running batches)
        # Batches found with nothing due: batch -> (left alone until, its enqueuedAt and slots used then).
        self._quiet: dict[ObjectId, tuple[dt.datetime, dt.datetime | None, int]] = {}
        self._quiet_cap = dt.timedelta(seconds=config.quiet_seconds)
        self._recheck = dt.timedelta(seconds=config.recheck_seconds)
        # Each due call's window narrowed by its compliance profile; frequency caps reserved beside the slots.
        self.rules = ComplianceGate(repos.tenancy, repos.caps, dt.timedelta(seconds=config.batch_cache_seconds),
                                    dt.timedelta(seconds=config.rate_horizon_seconds))
        # The placer asks for the running batches afresh just before it places (stop means stop).
        self.placer = Placer(repos.calls, repos.batches, clock, provider, events, self.rules, self._fresh_running,
                             self.stats,
                             lease=dt.timedelta(seconds=config.lease_seconds),
                             public_base_url=config.public_base_url, machine_detection=config.machine_detection,
                             dnc=repos.dnc)
        self._batch_ttl = dt.timedelta(seconds=config.batch_cache_seconds)
        self.placer.on_requeue = self.requeued

    # ---- one tick -------------------------------------------------------------------------
    async def tick(self) -> int:
        """One round of decisions; returns the number of calls placed."""
        self.stats.ticks += 1
        now = self.clock.now()
        if self.claiming:
            await self.claim(now)
        return await self.placer.place_due(now)

    def poke(self) -> None:
        """A call left flight (an event applied in this process): a slot is free."""
        self._pokes += 1

    def wake(self) -> None:
        """New work (calls enqueued in this process): look at the next tick, batches re-read."""
        self._idle_until = None
        self._batches = None

    async def _fresh_running(self, now: dt.datetime) -> set[ObjectId]:
        """The running batches read now (the placer's check before it places), which also refreshes
        the cache the claims use."""
        self._batches = (now + self._batch_ttl, await self.batches.runnable(now))
        return {b["_id"] for b in self._batches[1]}

    async def _running_batches(self, now: dt.datetime) -> list[dict]:
        if self._batches is None or now >= self._batches[0]:
            self._batches = (now + self._batch_ttl, await self.batches.runnable(now))
        return self._batches[1]

    async def claim(self, now: dt.datetime) -> None:
        """Reserve and claim what may be dialled now (a tick without the placing).

        The account's free slots and dial budget are shared round-robin between the batches that can
        take calls *before* any call is read, so only batches granted something are asked for their due
        calls; a batch found with nothing due is left alone until its next call becomes due (or calls
        arrive: ingestion and retries stamp the batch's `enqueuedAt`), so batches waiting for their
        callees' windows cost nothing per tick."""
        if self._idle_until is not None and now < self._idle_until and self._pokes < self._pokes_needed:
            return  # nothing more could be claimed last time, and not enough slots were freed here since
        self._pokes = 0
        batches = await self._running_batches(now)
        if not batches:
            await self.placer.flush_records()
            self._idle_until = now + self._recheck
            return
        await self.rules.refresh(now, batches)
        state = await self.slots.state(now)
        budget = self._rate_budget(now, state.next_dial_at)
        account_free = self.config.max_concurrent_calls - state.total
        needed: list[int] = []  # per batch waiting for its group: slots still to be freed
        wakes: list[dt.datetime] = []  # when calls waiting for their window or retry delay become due
        room: dict[ObjectId, tuple[int, int]] = {}  # batch -> (free slots, claim group)
        open_batches: list[dict] = []  # may take calls now
        start = self._rotation % len(batches)
        self._rotation += 1
        for batch in batches[start:] + batches[:start]:
            used = state.used(batch["_id"])
            free = batch["concurrencyLimit"] - used
            # Claim in small groups (a few % of the limit) rather than one call per freed slot: each
            # claim costs the same few database operations whatever the group's size.
            group = max(1, math.ceil(batch["concurrencyLimit"] * self.config.claim_group_fraction))
            room[batch["_id"]] = (free, group)
            if free <= 0 or (used > 0 and free < group):
                needed.append(group - max(free, 0))
                continue
            quiet_until = self._quiet_until(batch, now, used)
            if quiet_until is not None:
                wakes.append(quiet_until)
                continue
            open_batches.append(batch)
        rate_bound = bool(open_batches) and budget <= 0  # calls may be due but the dial rate allows none now
        # The account claims in groups too: while it is the limit (calls in flight, fewer free slots
        # than a group), wait for a group to be freed rather than claiming call by call.
        account_group = max(1, math.ceil(self.config.max_concurrent_calls * self.config.claim_group_fraction))
        if open_batches and account_free < account_group and state.total > 0:
            needed.append(account_group - max(account_free, 0))
            open_batches = []
        total = min(budget, account_free)
        candidates, deferrals, idle = await self._gather(open_batches, room, state, total, now, wakes)
        grants = self._share(candidates, total)
        claims = await self._reserve_and_claim(batches, grants, state, deferrals, now)
        self._count_slots(state, claims)
        for batch_id, granted in grants.items():  # after this claim, how many must end before the next
            free, group = room[batch_id]
            left = free - len(granted)
            if left < group:
                needed.append(group - left)
        self.stats.deferred += len(deferrals)
        for batch in idle:
            await self._complete_if_done(batch, now)
        limited = rate_bound or (grants and sum(map(len, grants.values())) >= total)
        if (grants and not claims) or limited:
            self._idle_until = None  # lost a race, or held back by the rate or the account: next tick
        else:
            # Done for now: look again when enough slots were freed here, or after the recheck interval
            # (work arriving from other processes: new calls, status callbacks to the API).
            self._idle_until = min([now + self._recheck, *wakes])
            self._pokes_needed = min(needed) if needed else 1
        self.placer.add(claims)

    async def _gather(self, open_batches: list[dict], room: dict[ObjectId, tuple[int, int]], state, total: int,
                      now: dt.datetime, wakes: list[dt.datetime]):
        """The due calls of the batches the shared budget reaches: (ready calls per batch, deferrals,
        batches with nothing left). At most two reads per batch: what a batch could not use goes round
        once more to the batches that filled their share."""
        candidates: dict[ObjectId, list[dict]] = {}
        seen: dict[ObjectId, int] = {}  # batch -> due calls read so far (ready or deferred)
        deferrals: list[tuple[ObjectId, dt.datetime]] = []
        idle: list[dict] = []
        full = list(open_batches)  # batches that may have more due calls than were read
        for _ in range(2):
            left = total - sum(map(len, candidates.values()))
            shares = self._split(left, [(b, room[b["_id"]][0] - len(candidates.get(b["_id"], [])), room[b["_id"]][1])
                                        for b in full])
            if not shares:
                break
            full = []
            for batch, share in shares:
                batch_id = batch["_id"]
                skip = seen.get(batch_id, 0)
                due = (await self.calls.due(batch_id, now, skip + share))[skip:]  # same order: the tail is new
                seen[batch_id] = skip + len(due)
                for call in due:
                    decision = self.rules.decide(batch, call, now)
                    if decision.allowed(now):
                        candidates.setdefault(batch_id, []).append(call)
                    elif decision.at is None and decision.rule:  # never under its profile (within the horizon)
                        await self.calls.suppress_queued(call["_id"], now, {"at": now, "event": "suppressed",
                                                                     "rule": decision.rule})
                    else:  # moved to the next instant its window and its profile allow, with the rule why
                        rule = ({"at": now, "event": "deferred", "rule": decision.rule},) if decision.rule else ()
                        deferrals.append((call["_id"], decision.at or now + HORIZON, *rule))
                if len(due) == share:
                    full.append(batch)
                elif batch_id not in candidates and not skip:
                    # Nothing due now: leave the batch alone until its next call is due.
                    wake = await self.calls.next_due_at(batch_id)
                    self._quiet[batch_id] = (min(wake or now + self._quiet_cap, now + self._quiet_cap),
                                             batch.get("enqueuedAt"), state.used(batch_id))
                    if wake is not None:
                        wakes.append(wake)
                    elif state.used(batch_id) == 0:
                        idle.append(batch)
        return candidates, deferrals, idle

    @staticmethod
    def _split(total: int, rooms: list[tuple[dict, int, int]]) -> list[tuple[dict, int]]:
        """`total` shared round-robin, a claim group at a time, each batch up to its room:
        [(batch, share)]. The rotation of the batches' order between ticks makes it fair over time;
        whole groups keep the batches read per claim few."""
        shares = [0] * len(rooms)
        while total > 0:
            given = False
            for i, (_, room, unit) in enumerate(rooms):
                n = min(unit, room - shares[i], total)
                if n > 0:
                    shares[i] += n
                    total -= n
                    given = True
            if not given:
                break
        return [(batch, n) for (batch, _, _), n in zip(rooms, shares) if n > 0]

    def _quiet_until(self, batch: dict, now: dt.datetime, used: int) -> dt.datetime | None:
        """While a batch had nothing due, until when it may be left alone (None: look now): until its
        next call is due, calls join its queue, or one of its calls in flight ends (it may be done)."""
        quiet = self._quiet.get(batch["_id"])
        if quiet is None:
            return None
        until, stamp, flying = quiet
        if now >= until or batch.get("enqueuedAt") != stamp or used < flying:
            del self._quiet[batch["_id"]]
            return None
        return until

    def requeued(self, batch_id: ObjectId) -> None:
        """A call of the batch went back to the queue in this process: look at the batch again."""
        self._quiet.pop(batch_id, None)

    def _count_slots(self, state, claims: list[Claimed]) -> None:
        """The slots in use after this claim, for the metrics (as this dispatcher sees the ledger)."""
        per_batch = {batch: len(entries) for batch, entries in state.slots.items()}
        for claimed in claims:
            key = str(claimed.batch["_id"])
            per_batch[key] = per_batch.get(key, 0) + 1
        self.placer.metrics.slots(per_batch, state.total + len(claims))

    def _rate_budget(self, now: dt.datetime, next_dial_at: dt.datetime | None) -> int:
        """How many dial times may still be reserved up to now + the rate horizon."""
        cps = self.config.calls_per_second
        start = max(now, next_dial_at or now)
        ahead = (start - now).total_seconds()
        return max(0, math.floor((self.config.rate_horizon_seconds - ahead) * cps) + 1) - len(self.placer.ready)

    @staticmethod
    def _share(candidates: dict[ObjectId, list[dict]], total: int) -> dict[ObjectId, list[dict]]:
        """Round-robin: one call from each batch in turn, so running batches share dispatchers fairly."""
        grants: dict[ObjectId, list[dict]] = {b: [] for b in candidates}
        queues = {b: list(calls) for b, calls in candidates.items()}
        while total > 0 and any(queues.values()):
            for batch_id, queue in queues.items():
                if queue and total > 0:
                    grants[batch_id].append(queue.pop(0))
                    total -= 1
        return {b: g for b, g in grants.items() if g}

    async def _reserve_and_claim(self, batches: list[dict], grants: dict[ObjectId, list[dict]], state,
                                 deferrals: list[tuple[ObjectId, dt.datetime]], now: dt.datetime) -> list[Claimed]:
        by_id = {b["_id"]: b for b in batches}
        token = secrets.token_hex(6)
        reservation = None
        if grants:
            grants, capped = await self.rules.reserve(grants, by_id, token, now)  # over their cap: deferred
            deferrals = deferrals + capped
        if grants:
            wanted = {b: (by_id[b]["concurrencyLimit"], [c["_id"] for c in calls]) for b, calls in grants.items()}
            reservation = await self.slots.reserve(state, wanted, self.config.max_concurrent_calls,
                                                   self.config.calls_per_second, now, token)
            if reservation is None:
                self.stats.lost_races += 1
            elif self.clock.now() > now + self._lease / 2:
                # Too slow (a stall): past half the grace period the slots may be harvested; give them back.
                for batch_id, ids in reservation.grants.items():
                    await self.slots.release(batch_id, ids, token)
                reservation = None
            if reservation is None:
                await self._give_back_caps(by_id, grants, token, set())
        records = self.placer.take_records()
        claims: list[Claim] = []
        if reservation is not None:
            for calls in grants.values():
                for call in calls:
                    dial_at = reservation.dial_times[call["_id"]]
                    claims.append(Claim(call["_id"], token, self.name, dial_at, dial_at + self._lease))
        claimed_ids = [c.call_id for c in claims]
        if not (claims or deferrals or records):
            return []
        try:
            won = await self.calls.claim(claims, deferrals, records, now)
        except StoreUnavailable as exc:
            # Nothing or part was written: keep the provider ids for the next write, give the slots
            # back (a claim that did land is in flight under its token and keeps its slot anyway).
            log.error("claim write failed", extra={"dispatcher": self.name, "error": str(exc)})
            self.placer.unrecorded = records + self.placer.unrecorded
            if reservation is not None:
                with contextlib.suppress(StoreUnavailable):  # else the slots wait out the grace period
                    won = await self._keep_claimed(reservation, claimed_ids)
                    await self._give_back_caps(by_id, grants, token, won)
            return []
        if reservation is None:
            return []
        if won and self.clock.now() > now + self._lease / 2:
            # The claim's write itself stalled past half the grace period: its slot entries may have been
            # harvested and reused meanwhile, so these calls would pass a limit. Hand them back unplaced.
            later = self.clock.now()
            for call_id in won:
                await self.calls.requeue_unplaced(call_id, token, later, {"at": later, "event": "claim_too_slow"})
            await self._give_back(reservation, set())
            await self._give_back_caps(by_id, grants, token, set())
            self.stats.lost_races += 1
            return []
        if len(won) < len(claimed_ids):
            # Some calls changed under us (another dispatcher, a cancel): give the others' slots back.
            await self._give_back(reservation, won)
            await self._give_back_caps(by_id, grants, token, won)
        out = []
        for batch_id, calls in grants.items():
            for call in calls:
                if call["_id"] in won:
                    out.append(Claimed(reservation.dial_times[call["_id"]], call, by_id[batch_id], token))
        self.stats.claimed += len(out)
        return out

    async def _keep_claimed(self, reservation: Reservation, claimed_ids: list[ObjectId]) -> set[ObjectId]:
        """After a failed claim write: the calls this reservation's claim did win (the write may have
        partly landed); the slots of the others are given back."""
        holders = await self.calls.holders(claimed_ids)
        won = {cid for cid, (_, token) in holders.items() if token == reservation.token}
        await self._give_back(reservation, won)
        return won

    async def _give_back(self, reservation: Reservation, won: set[ObjectId]) -> None:
        for batch_id, ids in reservation.grants.items():
            await self.slots.release(batch_id, [i for i in ids if i not in won], reservation.token)

    async def _give_back_caps(self, by_id: dict, grants: dict[ObjectId, list[dict]], token: str,
                              won: set[ObjectId]) -> None:
        for batch_id, calls in grants.items():
            await self.rules.release(by_id[batch_id], [c["_id"] for c in calls if c["_id"] not in won], token)

    @property
    def _lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.config.lease_seconds)

    async def _complete_if_done(self, batch: dict, now: dt.datetime) -> None:
        if await self.calls.has_active(batch["_id"]):
            return
        completed = await self.batches.move(batch["_id"], COMPLETE, now, {"completedAt": now})
        if completed and await self.calls.has_active(batch["_id"]):
            # Calls were enqueued between our look and the move (their request saw the batch still
            # running and left it): run again. Enqueueing after this point restarts it itself.
            await self.batches.move(batch["_id"], REOPEN, now, unset=("completedAt",))
            return
        if completed:
            self.stats.completed_batches += 1
            log.info("batch completed", extra={"batchId": str(batch["_id"])})

    async def stop_claiming(self) -> None:
        """SIGTERM: claim nothing more; calls claimed but not yet placed go back to the queue."""
        self.claiming = False
        await self.placer.hand_back()

    @property
    def waiting_to_place(self) -> int:
        return len(self.placer.ready)
