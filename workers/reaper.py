"""Periodic repairs: calls whose lease ran out, slots whose call left flight, scheduled batch starts.

- A call in flight whose lease expired (its dispatcher died, or callbacks were lost) is reconciled
  with the provider: with a provider call id, the provider's status is applied (still ringing or
  talking: the lease is extended); without one, the provider is asked whether a call to that number
  was created since the claim (an UNKNOWN error or a crash between create and record); if none
  was, the call goes back to the queue with the attempt not counted. Never lost, never dialled twice.
- Slots whose call left flight are compacted away (when no dispatcher ticks to do it).
- Pending batches whose scheduled start has come, and that have calls, start running.
"""

from __future__ import annotations

import datetime as dt
import logging

from pymongo import ReturnDocument

from dialer.services.call_events import FINAL, PROGRESS, CallEvents, lease_for
from dialer.core.clock import Clock, as_utc
from dialer.services.slots import Slots
from dialer.core.statuses import IN_FLIGHT_VALUES, WAITING_VALUES, BatchStatus
from dialer.store import Store

from workers.placer import requeue_unplaced
from workers.telephony.base import ProviderError, TelephonyProvider

log = logging.getLogger("workers.reaper")
BATCH_SIZE = 100
FIND_CLOCK_SLACK = dt.timedelta(seconds=5)  # our clock against the provider's creation times


class Reaper:
    def __init__(self, store: Store, clock: Clock, provider: TelephonyProvider, events: CallEvents, slots: Slots,
                 lease_seconds: float, name: str = "reaper") -> None:
        self.store = store
        self.clock = clock
        self.provider = provider
        self.events = events
        self.slots = slots
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.name = name
        self.recovered = 0

    async def run(self) -> None:
        await self.reconcile_expired()
        await self.heal_slots()
        await self.start_scheduled()

    async def reconcile_expired(self) -> int:
        now = self.clock.now()
        expired = await self.store.calls.find(
            {"status": {"$in": IN_FLIGHT_VALUES}, "leaseUntil": {"$lt": now}}).limit(BATCH_SIZE).to_list(None)
        done = 0
        for call in expired:
            # Take the call for reconciliation so two reapers never act on it at once.
            mine = await self.store.calls.find_one_and_update(
                {"_id": call["_id"], "leaseUntil": call["leaseUntil"], "status": call["status"]},
                {"$set": {"leaseUntil": now + lease_for(call["status"], self.lease), "claimedBy": self.name}},
                return_document=ReturnDocument.AFTER)
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
            batch = await self.store.batches.find_one({"_id": call["batchId"]}, {"callingNumbers": 1})
            # From just before this attempt's dial time, and never an earlier attempt's call.
            since = as_utc(call.get("dialAt") or call["updatedAt"]) - FIND_CLOCK_SLACK
            earlier = {h.get("providerCallId") for h in call.get("history", []) if h.get("providerCallId")}
            for caller in (batch or {}).get("callingNumbers", []):
                sid = await self.provider.find_call(call["phoneNumber"], caller, since)
                if sid and sid not in earlier:
                    break
                sid = None
            if sid is None:
                await requeue_unplaced(self.store, call["_id"], call.get("claimToken"), now,
                                       {"at": now, "event": "requeued_after_crash"})
                log.warning("call never reached the provider: requeued", extra=ids)
                return
            await self.store.calls.update_one({"_id": call["_id"], "providerCallId": {"$exists": False}},
                                              {"$set": {"providerCallId": sid}})
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

    async def heal_slots(self) -> int:
        """Free slots whose call left flight (normally the next reservation does it)."""
        freed = await self.slots.compact(self.clock.now())
        if freed:
            log.info("freed slots of calls no longer in flight", extra={"count": freed})
        return freed

    async def start_scheduled(self) -> int:
        now = self.clock.now()
        started = 0
        async for batch in self.store.batches.find(
                {"status": BatchStatus.PENDING.value, "scheduledAt": {"$ne": None, "$lte": now}}, {"_id": 1}):
            has_calls = await self.store.calls.find_one({"batchId": batch["_id"], "status": {"$in": WAITING_VALUES}},
                                                        {"_id": 1})
            if has_calls is None:
                continue
            result = await self.store.batches.update_one(
                {"_id": batch["_id"], "status": BatchStatus.PENDING.value},
                {"$set": {"status": BatchStatus.RUNNING.value, "startedAt": now, "updatedAt": now}})
            if result.modified_count:
                started += 1
                log.info("scheduled batch started", extra={"batchId": str(batch["_id"])})
        return started
