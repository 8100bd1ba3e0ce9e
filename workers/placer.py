"""Placing claimed calls with the provider, each at its reserved dial time, and what follows.

The dispatcher (dispatcher.py) decides and claims; the Placer holds the claimed calls until their
dial time (the rate budget spaces them 1/cps apart), checks the callee's window once more, places
them, and handles the provider's refusals: an invalid number or any other refusal ends the call
`failed` (never retried); a rate limit or a 5xx puts it back in the queue with exponential backoff,
the attempt not counted; a timeout leaves it in flight for the reaper to reconcile (it may exist).
A claim whose batch stopped running meanwhile goes back to the queue unplaced: the claim's own write reads
its batches after it (CallRepo.claim; `admit`), and every later placement round reads them again for the
claims written before it; the provider ids of placed calls are recorded in one write once their claim's
calls are all placed or handed back (a claim's dial times span the rate horizon: a few seconds).
Do not call: the workspaces' lists are read after the claim and before its first call is placed (by the
claim's write itself, or by the round for claims not read yet), and a claim whose number was listed since
it was enqueued ends `skipped` / `suppressed` with the rule in its history (its slot freed, its attempt not
counted). Either read after the claim is enough: a stop or a listing answered later waits for the claim.
A claim's dial times start just after the last placement round (`earliest_dial`), so a claim made between
two rounds is placed whole at the next one rather than over two.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import zlib
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from bson import ObjectId

from dialer.core.clock import Clock
from dialer.core.dnc import SUPPRESSED, suppression
from dialer.core.statuses import CallStatus
from dialer.ports import BatchRepo, CallRepo, DncRepo, PlacedRecord, StoreUnavailable
from dialer.services.call_events import CallEvents
from dialer.services.calls import enqueued_or_withdrawn
from workers.compliance_gate import ComplianceGate

from workers.telephony.base import DialRequest, ErrorKind, ProviderError, TelephonyProvider

log = logging.getLogger("workers.placement")
MAX_BACKOFF_SECONDS = 300
UNCERTAIN_WAIT = dt.timedelta(seconds=30)  # before asking the provider about a create that timed out
BACKDATE_MAX = dt.timedelta(seconds=1)  # a claim's dial times reach back at most this far (a stalled tick)


@dataclass(order=True)
class Claimed:
    dial_at: dt.datetime
    call: dict = field(compare=False)
    batch: dict = field(compare=False)
    token: str = field(compare=False, default="")
    listed_checked: bool = field(compare=False, default=False)  # its number read off the lists after its claim
    confirmed_at: dt.datetime | None = field(compare=False, default=None)  # its batch read running after its claim


class Placer:
    def __init__(self, calls: CallRepo, batches: BatchRepo, clock: Clock, provider: TelephonyProvider,
                 events: CallEvents,
                 rules: ComplianceGate,
                 running_batches: Callable[[dt.datetime, set[ObjectId]], Awaitable[set[ObjectId]]], stats,
                 lease: dt.timedelta,
                 public_base_url: str = "", machine_detection: bool = False, dnc: DncRepo | None = None) -> None:
        self.calls = calls
        self.batches = batches
        self.clock = clock
        self.provider = provider
        self.events = events
        self.rules = rules
        self.stats = stats
        self.lease = lease
        self.public_base_url = public_base_url
        self.machine_detection = machine_detection
        self.ready: list[Claimed] = []  # claimed, waiting for their dial time
        self.last_round: dt.datetime | None = None  # the instant of the last placement round
        self.unrecorded: list[PlacedRecord] = []  # provider ids of placed calls, written with the next claim
        self.on_requeue: Callable[[ObjectId], None] | None = None  # a call of this batch is back in the queue
        self.metrics = events.metrics
        # Which of these batches run now, read afresh (the dispatcher's: it refreshes its book too).
        self.running_batches = running_batches
        self.dnc = dnc  # the workspaces' do-not-call lists, read before each placement round

    async def enqueued_or_withdrawn(self, batch_id: ObjectId, now: dt.datetime) -> None:
        """Claims handed back: dispatchers elsewhere look again; after a cancel had withdrawn the batch's
        waiting calls, withdrawn too."""
        await enqueued_or_withdrawn(self.calls, self.batches, batch_id, now)

    async def admit(self, claims: list[Claimed], running: set[ObjectId], listed: dict, now: dt.datetime) -> list[Claimed]:
        """Claims just written, with what their write read after it: the batches still running, the numbers'
        do-not-call entries. Those of a batch stopped meanwhile go back to the queue, those listed end
        suppressed; the others are known checked as of `now` (a placement round at `now` reads neither again)."""
        kept, stopped = [], [c for c in claims if c.batch["_id"] not in running]
        await self._requeue_all(stopped, now, "batch_not_running")
        for claimed in (c for c in claims if c.batch["_id"] in running):
            entry = listed.get((claimed.batch["workspaceId"], claimed.call["phoneNumber"]))
            if entry is not None:
                await self._suppress(claimed, entry, now)
                continue
            claimed.listed_checked = True
            claimed.confirmed_at = now
            kept.append(claimed)
        return kept

    def add(self, claims: list[Claimed]) -> None:
        self.ready.extend(claims)
        self.ready.sort()

    def earliest_dial(self, now: dt.datetime) -> dt.datetime:
        """The earliest dial time a claim made now may take: just after the last placement round (at most
        BACKDATE_MAX ago). A call is placed at the first round at or after its dial time, so a dial time
        between the last round and now is placed now, exactly as if it had been claimed at the last round:
        the calls placed in any second stay those whose dial times fall in one span of a second and a tick,
        as ever, and a claim's calls are placed in one round rather than spread over two."""
        if self.last_round is None or self.last_round >= now:
            return now
        return max(self.last_round + dt.timedelta(microseconds=1), now - BACKDATE_MAX)

    def take_records(self, held_too: bool = False) -> list[PlacedRecord]:
        """The provider ids to write now (the dispatcher's next claim takes them on its write): none while
        each belongs to a claim whose other calls wait for their dial time (written with its last call,
        moments later), else all of them in one write; with `held_too`, all of them in any case."""
        waiting = {c.token for c in self.ready}
        if not held_too and all(r.token in waiting for r in self.unrecorded):
            return []
        records, self.unrecorded = self.unrecorded, []
        return records

    async def place_due(self, now: dt.datetime) -> int:
        self.last_round = now
        due = [c for c in self.ready if c.dial_at <= now]
        if not due:
            await self._record_settled()
            return 0
        self.ready = [c for c in self.ready if c.dial_at > now]
        # Stop means stop: the batches are read again after the claim and just before the provider is
        # asked, and a claim of a batch no longer running goes back to the queue unplaced. A stop waits
        # for the batch's claims to be placed or handed back (CallRepo.unplaced), so no call of the
        # stopped batch is placed after the stop has answered.
        # (Claims written at this very instant were read with their write: Placer.admit.)
        unconfirmed = {c.batch["_id"] for c in due if c.confirmed_at != now}
        try:
            running = await self.running_batches(now, unconfirmed) if unconfirmed else set()
        except StoreUnavailable:
            # Still claimed and holding their slots: placed at the next tick, not left to the reaper (a lease
            # later), nor holding up a stop that waits for them to be placed or handed back.
            self.add(due)
            raise
        stopped = [c for c in due if c.batch["_id"] in unconfirmed and c.batch["_id"] not in running]
        due = [c for c in due if c.batch["_id"] not in unconfirmed or c.batch["_id"] in running]
        await self._requeue_all(stopped, now, "batch_not_running")
        try:
            due = await self._not_listed(due, now)
        except StoreUnavailable:  # as above: the next tick looks again (a claim already stopped is skipped then)
            self.add(due)
            raise
        results = await asyncio.gather(*(self._place(c) for c in due), return_exceptions=True)
        for claimed, result in zip(due, results):
            if isinstance(result, BaseException):  # a bug or a store failure: never lose the call
                log.error("placing a call failed", exc_info=result,
                          extra={"callId": str(claimed.call["_id"]), "batchId": str(claimed.batch["_id"])})
        results = [None if isinstance(r, BaseException) else r for r in results]
        # The provider's ids are recorded in one write (a stop or a listing waits for them) once every call
        # of their claims has been placed or handed back: a claim's dial times are spread over the rate
        # horizon (a few seconds at most), so its calls placed in two rounds are recorded together; and a
        # claim written meanwhile takes them on its own write. If that write fails they ride on the next
        # claim's. A status event may record one first (events accept a call whose id is not yet recorded),
        # and after a crash before either, the reaper finds the call at the provider by number. Only onto the
        # attempt we placed (our claim token, not since put back in the queue for a retry); the same id as
        # any event recorded.
        placed = [PlacedRecord(c.call["_id"], c.token, sid, now, now + self.lease) for c, sid in zip(due, results) if sid]
        self.stats.placed += len(placed)
        self.metrics.placed.labels(getattr(self.provider, "name", "provider")).inc(len(placed))
        for claimed, sid in zip(due, results):
            if sid:
                self.metrics.placement_delay.observe(max(0.0, (now - claimed.dial_at).total_seconds()))
        self.unrecorded += placed
        await self._record_settled()
        return len(placed)

    async def _record_settled(self) -> None:
        """Write the provider ids that are due to be written (take_records)."""
        records = self.take_records()
        if not records:
            return
        try:
            await self.calls.record_placed(records)
        except StoreUnavailable as exc:
            log.error("recording placed calls failed; they go with the next claim", extra={"error": str(exc)})
            self.unrecorded = records + self.unrecorded

    async def _not_listed(self, due: list[Claimed], now: dt.datetime) -> list[Claimed]:
        """The claims whose number is not on its workspace's do-not-call list; the others end suppressed, never
        placed. One read for the round, of the due claims and of the claims waiting for their dial time not
        read yet: all were claimed before it, so a listing written after it waits for them (it answers once no
        claim of its numbers is left unplaced), and a claim read clean is not read again in a later round."""
        unread = [c for c in due if not c.listed_checked]
        if self.dnc is None or not unread:
            return due
        ahead = [c for c in self.ready if not c.listed_checked]
        looked = unread + ahead
        listed = await self.dnc.listed({(c.batch["workspaceId"], c.call["phoneNumber"]) for c in looked})
        stopped: set[int] = set()
        for claimed in looked:
            entry = listed.get((claimed.batch["workspaceId"], claimed.call["phoneNumber"]))
            if entry is None:
                claimed.listed_checked = True
                continue
            await self._suppress(claimed, entry, now)
            stopped.add(id(claimed))
            self.ready = [c for c in self.ready if c is not claimed]
        return [c for c in due if id(c) not in stopped]

    async def _suppress(self, claimed: Claimed, entry: dict, now: dt.datetime) -> None:
        after = await self.calls.suppress_claimed(claimed.call["_id"], claimed.token, suppression(now, entry), now)
        if after is None:
            return  # no longer this claim's (the reaper or a hand-back took it)
        await self.rules.release([claimed.call["_id"]], claimed.token)  # not an attempt
        self.metrics.outcomes.labels(SUPPRESSED).inc()
        log.info("listed number not dialled", extra={"callId": str(claimed.call["_id"]),
                                                     "batchId": str(claimed.batch["_id"])})
        if after.get("group") and self.events.on_group_call_final is not None:
            await self.events.on_group_call_final(after["batchId"], after["group"]["key"])
        if self.on_requeue is not None:
            self.on_requeue(claimed.batch["_id"])  # a slot is free: look at the batch again

    async def flush_records(self) -> None:
        if records := self.take_records(held_too=True):
            await self.calls.record_placed(records)

    def dial_request(self, call: dict, batch: dict, attempt: str = "") -> DialRequest:
        numbers = batch["callingNumbers"]
        caller = numbers[zlib.crc32(call["phoneNumber"].encode()) % len(numbers)]
        base = self.public_base_url.rstrip("/")
        query = f"callId={call['_id']}&batchId={batch['_id']}" + (f"&attempt={attempt}" if attempt else "")
        return DialRequest(
            call_id=str(call["_id"]), batch_id=str(batch["_id"]), to=call["phoneNumber"], from_=caller,
            ringing_timeout=batch.get("ringingTimeoutSeconds", 60),
            status_callback_url=f"{base}/webhooks/twilio/status?{query}" if base else None,
            twiml_url=f"{base}/webhooks/twilio/twiml?{query}" if base else None,
            # "w" waits half a second: give the far end's menu a second before the extension.
            send_digits=f"ww{call['extension']}" if call.get("extension") else None,
            machine_detection=self.machine_detection,
            attempt=attempt,
        )

    async def _place(self, claimed: Claimed) -> str | None:
        call, batch = claimed.call, claimed.batch
        ids = {"callId": str(call["_id"]), "batchId": str(batch["_id"])}
        now = self.clock.now()
        decision = self.rules.decide_placing(batch, call, claimed.dial_at, now)
        if not decision.allowed(now) or decision.rule:
            # The window (or a rule) closed between claim and dial time: wait for the next opening instead
            # (a call never allowed again goes back now: the dispatcher's next look suppresses it).
            rule = {"rule": decision.rule} if decision.rule else {}
            await self.requeue(claimed, decision.at or now, {"at": now, "event": "window_closed", **rule},
                               provider_error=False)
            return None
        try:
            placed = await self.provider.place_call(self.dial_request(call, batch, claimed.token))
        except ProviderError as err:
            self.stats.provider_errors += 1
            self.metrics.provider_errors.labels(err.kind.value).inc()
            log.warning("provider refused a call", extra={**ids, "kind": err.kind.value, "error": err.message})
            await self._after_error(claimed, err)
            return None
        log.info("call placed", extra={**ids, "providerCallId": placed.provider_call_id})
        return placed.provider_call_id

    async def _after_error(self, claimed: Claimed, err: ProviderError) -> None:
        call, batch = claimed.call, claimed.batch
        now = self.clock.now()
        entry = {"at": now, "event": "provider_error", "error": err.message, "kind": err.kind.value}
        if err.kind in (ErrorKind.INVALID_NUMBER, ErrorKind.REJECTED):
            # Pinned to this attempt (its token): never another attempt of the call.
            await self.events.finish(call["_id"], batch["_id"], CallStatus.FAILED, "failed", entry,
                                     token=claimed.token, retry=False)
        elif err.kind == ErrorKind.UNKNOWN:
            # The call may exist: keep it in flight; the reaper reconciles it with the provider once
            # the provider's own list can be expected to show it.
            await self.calls.mark_uncertain(call["_id"], claimed.token, now + UNCERTAIN_WAIT, entry)
        else:  # rate limited / transient: nothing was created; back to the queue, attempt not counted
            backoff = err.retry_after or min(MAX_BACKOFF_SECONDS, 2 ** (call.get("providerErrors", 0) + 1))
            await self.requeue(claimed, now + dt.timedelta(seconds=backoff), entry, provider_error=True)

    async def requeue(self, claimed: Claimed, when: dt.datetime, entry: dict, provider_error: bool,
                      settle: bool = True) -> None:
        """The claim back to the queue unplaced (not an attempt); withdrawn if its batch was cancelled meanwhile
        (`settle`; the caller does it once per batch otherwise)."""
        if await self.calls.requeue_unplaced(claimed.call["_id"], claimed.token, when, entry, provider_error):
            await self.rules.release([claimed.call["_id"]], claimed.token)  # not an attempt
            if settle:
                await self.enqueued_or_withdrawn(claimed.batch["_id"], self.clock.now())
            # Its slot is free and it waits again: the dispatchers of other processes are told too (a stopping
            # one's hand-back is otherwise seen at their recheck, 10 s when they are woken so).
            self.events.left_flight(claimed.batch["_id"], "retry")
        if self.on_requeue is not None:
            self.on_requeue(claimed.batch["_id"])

    async def hand_back(self) -> None:
        """Stopping: record what was placed; calls not yet placed go back to the queue."""
        await self.flush_records()
        pending, self.ready = self.ready, []
        await self._requeue_all(pending, self.clock.now(), "dispatcher_stopped")

    async def _requeue_all(self, claims: list[Claimed], now: dt.datetime, event: str) -> None:
        """Claims back to the queue unplaced, their batches stamped (or their calls withdrawn) once each."""
        for claimed in claims:
            await self.requeue(claimed, now, {"at": now, "event": event}, provider_error=False, settle=False)
        for batch_id in {c.batch["_id"] for c in claims}:
            await self.enqueued_or_withdrawn(batch_id, now)
