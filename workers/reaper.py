"""Periodic repairs: calls whose lease ran out, slots whose call left flight, scheduled batch starts.

- A call in flight whose lease expired (its dispatcher died, or callbacks were lost) is reconciled
  with the provider: with a provider call id, the provider's status is applied (still ringing or
  talking: the lease is extended); without one, the provider is asked for the calls to that number
  created since the claim (an UNKNOWN error or a crash between create and record), and the oldest one
  that no other call holds is taken, calls reconciled in dial order (calls of ours may share the number:
  two extensions, a duplicate, another batch);
  if there is none, the call goes back to the queue with the attempt not counted. Never lost, never
  dialled twice.
- Slots whose call left flight are compacted away (when no dispatcher ticks to do it).
- Pending batches whose scheduled start has come, and that have calls, start running.
- Idempotency records, enrollment intakes and cap attempts that expired (by the injected clock) are
  deleted, every fifth run (their readers check expiry themselves); so are partner webhook messages
  delivered or failed longer ago than the retention (DIALER_WEBHOOK_RETENTION_DAYS), at most
  WEBHOOK_PURGE_LIMIT a run (pending ones are never deleted).
- Credits an enrollment reserved before its process died, without its intake and never retried, are
  given back (Enrollment.release_abandoned).
- Enrollment intakes whose processing stopped half way (a crash) are resumed; chained groups left without
  their next step are moved on (dialer/services/chains.py).
- Batch counters that drifted from the calls (a crash between a transition and its counter write)
  are repaired (dialer/services/counters.py), every fifth run.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from dialer.core.clock import Clock
from dialer.core.machine import START_SCHEDULED
from dialer.core.statuses import CallStatus
from dialer.ports import Repositories
from dialer.services.call_events import FINAL, PROGRESS, CallEvents, lease_for
from dialer.services.calls import enqueued_or_withdrawn
from dialer.services.chains import Chains
from dialer.services.enrollment import Enrollment
from dialer.services.counters import CounterReconciler
from workers.slots import Slots
from workers.telephony.base import ProviderError, TelephonyProvider

log = logging.getLogger("workers.reaper")
HELD = CallStatus.HELD.value
BATCH_SIZE = 100
CAP_KEEP = dt.timedelta(hours=25)  # attempts older than every cap's window (24 h and the placing margin)
HOUSEKEEPING_EVERY = 5  # reaper runs between two recounts of the batch counters and purges (5 min by default)
FIND_CLOCK_SLACK = dt.timedelta(seconds=5)  # our clock against the provider's creation times
WEBHOOK_RETENTION = dt.timedelta(days=30)  # the default of DIALER_WEBHOOK_RETENTION_DAYS
WEBHOOK_PURGE_LIMIT = 10_000  # messages deleted per housekeeping run: one run never holds the store long


class Reaper:
    def __init__(self, repos: Repositories, clock: Clock, provider: TelephonyProvider, events: CallEvents,
                 slots: Slots, lease_seconds: float, name: str = "reaper", chains: Chains | None = None,
                 enrollment: Enrollment | None = None, webhook_retention: dt.timedelta = WEBHOOK_RETENTION) -> None:
        self.repos = repos
        self.calls = repos.calls
        self.batches = repos.batches
        self.counters = CounterReconciler(repos.batches, repos.calls, clock)
        self._runs = 0
        self.clock = clock
        self.provider = provider
        self.events = events
        self.slots = slots
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.name = name
        self.recovered = 0
        self.on_started: Callable[[], None] | None = None  # told when scheduled batches were started
        self.chains = chains
        self.enrollment = enrollment
        self.webhook_retention = webhook_retention

    async def run(self) -> None:
        await self.reconcile_expired()
        await self.heal_slots()
        await self.start_scheduled()
        self._runs += 1
        # Housekeeping, not on every run: the counters' recount, and deleting what expired (expiry is checked
        # where those records are read, so deleting them later changes no answer).
        housekeeping = self._runs % HOUSEKEEPING_EVERY == 1 or HOUSEKEEPING_EVERY == 1
        if housekeeping:
            await self.counters.run()
            await self.repos.idempotency.purge(self.clock.now())  # expired by the injected clock
            if self.repos.caps is not None:  # attempts past every cap's window (numbers not dialled since)
                await self._guarded("cap purge", lambda: self.repos.caps.purge(self.clock.now() - CAP_KEEP))
            await self._guarded("webhook message purge", self.purge_webhook_messages)
        # Each repair on its own: one that fails (a database hiccup, a bad document) must not stop the next.
        if self.enrollment is not None:
            await self._guarded("intake resumption", self.enrollment.resume)  # their process crashed
            if housekeeping:
                await self._guarded("intake purge", lambda: self.repos.intakes.purge(self.clock.now()))
            await self._guarded("credit release", self.enrollment.release_abandoned)
        if self.chains is not None:
            await self._guarded("chain sweep", self.sweep_groups)

    async def _guarded(self, what: str, job) -> None:
        try:
            await job()
        except Exception:  # logged; the next run tries again
            log.exception(f"{what} failed; tried again at the next run")

    async def purge_webhook_messages(self) -> int:
        """Delivered and failed partner webhook messages whose last change is older than the retention, by the
        injected clock: at most WEBHOOK_PURGE_LIMIT (the rest at the next housekeeping run)."""
        before = self.clock.now() - self.webhook_retention
        purged = await self.repos.webhooks.purge_messages(before, WEBHOOK_PURGE_LIMIT)
        if purged:
            log.info("purged partner webhook messages past their retention",
                     extra={"count": purged, "settledBefore": before.isoformat(), "more": purged >= WEBHOOK_PURGE_LIMIT})
        return purged

    async def sweep_groups(self) -> int:
        """Chained groups left without a next step (a crash between a call's end and its group's step, a
        tentative success whose verdict window passed): only running batches with held calls are read."""
        batches = await self.batches.runnable(self.clock.now())
        tallies = await self.calls.tallies_many([b["_id"] for b in batches]) if batches else {}
        holding = [b for b in batches if any(t.status == HELD and t.calls for t in tallies.get(b["_id"], []))]
        return await self.chains.sweep(holding) if holding else 0

    async def reconcile_expired(self) -> int:
        now = self.clock.now()
        expired = await self.calls.expired(now, BATCH_SIZE)
        done = 0
        # In dial order: of two calls to one number left without provider ids (two extensions claimed together),
        # the one dialled first takes its provider call first, and the next one sees it held (_found_at_provider).
        for call in sorted(expired, key=lambda c: c.get("dialAt") or c["updatedAt"]):
            # Take the call for reconciliation so two reapers never act on it at once.
            mine = await self.calls.take_for_reconciliation(call, now + lease_for(call["status"], self.lease), self.name)
            if mine is None:
                continue
            try:
                await self._reconcile(mine, now)
                done += 1
            except ProviderError as err:
                log.warning("reconciliation deferred", extra={"callId": str(call["_id"]), "error": err.message})
        self.recovered += done
        return done

    async def _reconcile(self, call: dict, now: dt.datetime) -> None:
        ids = {"callId": str(call["_id"]), "batchId": str(call["batchId"])}
        sid = call.get("providerCallId")
        if sid is None:
            sid = await self._found_at_provider(call)
            if sid is None:
                if await self.calls.requeue_unplaced(call["_id"], call.get("claimToken"), now,
                                                     {"at": now, "event": "requeued_after_crash"}):
                    if self.repos.caps is not None and call.get("claimToken"):  # not an attempt: not counted
                        await self.repos.caps.release([call["_id"]], call["claimToken"])
                    # Dispatchers look again; cancelled while it was claimed: withdrawn.
                    await enqueued_or_withdrawn(self.calls, self.batches, call["batchId"], now)
                    self.events.left_flight(call["batchId"], "retry")  # its slot is free: they are told at once
                log.warning("call never reached the provider: requeued", extra=ids)
                return
            await self.calls.record_provider_id(call["_id"], None, sid, None)
            log.warning("call found at the provider after a crash", extra={**ids, "providerCallId": sid})
        event = await self.provider.call_status(sid)
        if event is None:
            await self.events.apply(call["_id"], sid, "failed", batch_id=call["batchId"], attempt=call.get("claimToken"),
                                    error="unknown to the provider")
        elif PROGRESS.get(event.status) == call["status"]:
            pass  # still ringing / talking, as we knew: the lease taken above is the extension
        elif event.status in FINAL or event.status in PROGRESS:
            await self.events.apply(call["_id"], sid, event.status, batch_id=call["batchId"],
                                    attempt=call.get("claimToken"),
                                    answered_by=event.answered_by, duration=event.duration)
        log.info("call reconciled", extra={**ids, "providerStatus": None if event is None else event.status})

    async def _found_at_provider(self, call: dict) -> str | None:
        """The provider call this call, left dialling without a provider id, became, if any: of the calls to its
        number from one of its batch's calling numbers created since just before this attempt's dial time, the
        oldest that is neither an earlier attempt's (its history) nor held by another call
        (CallRepo.held_provider_ids). Two extensions of one number claimed together, an allowDuplicates group,
        another batch calling the number within seconds all leave calls to the number there; adopting another
        call's would end this one with that call's outcome, never dialled. The oldest free one, not the newest:
        calls are reconciled in dial order (reconcile_expired), so the siblings dialled before this one hold
        theirs by now, and those dialled after it (also left without ids) came after its own. None: it never
        reached the provider (requeued). Not seen: a call of the batch that went back to the queue for a retry
        keeps its earlier provider id only in its history, which no index reaches (see the port)."""
        batch = await self.batches.get(call["batchId"])
        since = (call.get("dialAt") or call["updatedAt"]) - FIND_CLOCK_SLACK
        earlier = {h.get("providerCallId") for h in call.get("history", []) if h.get("providerCallId")}
        for caller in (batch or {}).get("callingNumbers", []):
            found = [sid for sid in await self.provider.find_calls(call["phoneNumber"], caller, since)
                     if sid not in earlier]  # newest first
            held = await self.calls.held_provider_ids(found) if found else set()
            free = [sid for sid in found if sid not in held]
            if free:
                return free[-1]
        return None

    async def heal_slots(self) -> int:
        """Free slots whose call left flight (normally the next reservation does it)."""
        freed = await self.slots.compact(self.clock.now())
        if freed:
            log.info("freed slots of calls no longer in flight", extra={"count": freed})
        return freed

    async def start_scheduled(self) -> int:
        now = self.clock.now()
        started = 0
        for batch in await self.batches.scheduled_due(now):
            if not await self.calls.has_waiting(batch["_id"]):
                continue
            if await self.batches.move(batch["_id"], START_SCHEDULED, now, {"startedAt": now}):
                started += 1
                log.info("scheduled batch started", extra={"batchId": str(batch["_id"])})
        if started and self.on_started is not None:
            self.on_started()  # the dispatcher of this process looks at once
        return started
