"""Applying provider status events to calls: Twilio statuses -> our statuses, and retries.

Used by the API's Twilio status webhook and by the simulator, so both paths behave the same.
Each event is one conditional update (the status filter makes replays and out-of-order events
harmless); a call leaving flight frees its slot by that alone (see slots.py). A retryable outcome
(the batch's retry.on) with attempts left puts the call back in the queue after
retry.delaySeconds; the dispatcher then waits for the callee's window again.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from dialer.core.clock import Clock
from dialer.core.statuses import IN_FLIGHT_VALUES, CallStatus
from dialer.store import Store
from dialer.services.tenancy import parse_id

log = logging.getLogger("dialer.calls")
# Twilio CallStatus -> (our status, outcome) for final statuses.
FINAL = {
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "no-answer": CallStatus.NO_ANSWER,
    "failed": CallStatus.FAILED,
    "canceled": CallStatus.CANCELLED,
}
PROGRESS = {"ringing": CallStatus.RINGING, "in-progress": CallStatus.IN_PROGRESS, "answered": CallStatus.IN_PROGRESS}
# Progress may only move forward: an event may not take a call back to an earlier in-flight state.
EARLIER = {
    CallStatus.RINGING: [CallStatus.DIALING.value],
    CallStatus.IN_PROGRESS: [CallStatus.DIALING.value, CallStatus.RINGING.value],
}
TALKING_LEASE_FACTOR = 8
OUTCOME = {CallStatus.COMPLETED: "completed", CallStatus.BUSY: "busy", CallStatus.NO_ANSWER: "no_answer",
           CallStatus.FAILED: "failed", CallStatus.CANCELLED: "cancelled"}


def lease_for(status: str, lease: dt.timedelta) -> dt.timedelta:
    """How long a call in `status` goes unchecked: conversations last minutes, so they are checked
    with the provider less often than calls still ringing."""
    return lease * (TALKING_LEASE_FACTOR if status == CallStatus.IN_PROGRESS else 1)


def outcome_of(status: CallStatus, answered_by: str | None) -> str:
    if status == CallStatus.COMPLETED and answered_by and answered_by.startswith(("machine", "fax")):
        return "machine"
    return OUTCOME[status]


class BatchPolicies:
    """Retry policies of batches, cached 30 s per process (needed on every final event)."""

    def __init__(self, store: Store, clock: Clock, ttl_seconds: float = 30.0) -> None:
        self.store = store
        self.clock = clock
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self._cache: dict[ObjectId, tuple[dt.datetime, dict]] = {}

    async def retry(self, batch_id: ObjectId) -> dict:
        now = self.clock.now()
        hit = self._cache.get(batch_id)
        if hit and hit[0] > now:
            return hit[1]
        doc = await self.store.batches.find_one({"_id": batch_id}, {"retry": 1})
        policy = (doc or {}).get("retry") or {"maxAttempts": 1, "delaySeconds": 0, "on": []}
        self._cache[batch_id] = (now + self.ttl, policy)
        return policy


class CallEvents:
    def __init__(self, store: Store, clock: Clock, policies: BatchPolicies, lease_seconds: float) -> None:
        self.store = store
        self.clock = clock
        self.policies = policies
        self.lease = dt.timedelta(seconds=lease_seconds)

    async def apply(self, call_id: Any, provider_call_id: str | None, status: str, *, batch_id: Any = None,
                    attempt: str | None = None, answered_by: str | None = None, duration: int | None = None,
                    error: str | None = None) -> str:
        """Apply one event. Returns what happened: progress, retry, final, ignored.

        `attempt` (the claim token the dispatcher put in the callback URL) pins the event to the
        attempt it belongs to: a late event of an earlier attempt changes nothing."""
        oid = parse_id(call_id)
        if oid is None:
            return "ignored"
        now = self.clock.now()
        this_call: dict = {"_id": oid, **({"claimToken": attempt} if attempt else {})}
        match = dict(this_call)
        sid: dict = {}
        if provider_call_id:
            # The event may arrive before the dispatcher has recorded the provider's id (it records
            # a tick's ids together): accept it then, and record it.
            match["$or"] = [{"providerCallId": provider_call_id}, {"providerCallId": {"$exists": False}}]
            sid = {"providerCallId": provider_call_id}
        entry = {"at": now, "event": status, **({"answeredBy": answered_by} if answered_by else {}),
                 **({"duration": duration} if duration is not None else {}), **({"error": error} if error else {})}
        if status in PROGRESS:
            new = PROGRESS[status]
            result = await self.store.calls.update_one(
                {**match, "status": {"$in": EARLIER[new]}},
                {"$set": {"status": new.value, "updatedAt": now, "leaseUntil": now + lease_for(new, self.lease), **sid,
                          **({"answeredBy": answered_by} if answered_by else {})},
                 "$push": {"history": entry}},
            )
            return "progress" if result.modified_count else "ignored"
        if status in ("queued", "initiated"):
            if not provider_call_id:
                return "ignored"
            # The provider accepted the call: record its id if the dispatcher has not yet.
            result = await self.store.calls.update_one(
                {**this_call, "providerCallId": {"$exists": False}, "status": {"$in": IN_FLIGHT_VALUES}},
                {"$set": sid, "$push": {"history": entry}})
            return "progress" if result.modified_count else "ignored"
        if status not in FINAL:
            return "ignored"
        final = FINAL[status]
        return await self.finish(match, parse_id(batch_id), final, outcome_of(final, answered_by), entry, duration,
                                 record=sid)

    async def finish(self, match: dict, batch_id: ObjectId | None, final: CallStatus, outcome: str, entry: dict,
                     duration: int | None = None, retry: bool = True, record: dict | None = None) -> str:
        """Move an in-flight call to its outcome: back to the queue if its batch retries it, else final.

        With the batch id known (webhook URL, simulator) this is one write; without it, one read more."""
        now = self.clock.now()
        flying = {**match, "status": {"$in": IN_FLIGHT_VALUES}}
        if batch_id is None:
            doc = await self.store.calls.find_one(flying, {"batchId": 1})
            if doc is None:
                return "ignored"
            batch_id = doc["batchId"]
        policy = await self.policies.retry(batch_id)
        updated = None
        kind = "final"
        if retry and outcome in policy["on"]:
            updated = await self.store.calls.find_one_and_update(
                {**flying, "attempts": {"$lt": policy["maxAttempts"]}},
                {"$set": {"status": CallStatus.QUEUED.value, "outcome": outcome, "updatedAt": now,
                          "nextAttemptAt": now + dt.timedelta(seconds=policy["delaySeconds"])},
                 # The next attempt is a new provider call: forget this one's id.
                 "$unset": {"leaseUntil": "", "claimedBy": "", "dialAt": "", "providerCallId": "", "uncertain": ""},
                 "$push": {"history": {**entry, "result": "retry"}}},
                projection={"batchId": 1}, return_document=ReturnDocument.AFTER,
            )
            kind = "retry"
        if updated is None:
            kind = "final"
            updated = await self.store.calls.find_one_and_update(
                flying,
                {"$set": {"status": final.value, "outcome": outcome, "updatedAt": now, "finishedAt": now,
                          **(record or {}), **({"duration": duration} if duration is not None else {})},
                 "$unset": {"leaseUntil": "", "claimedBy": "", "activeKey": "", "dialAt": ""},
                 "$push": {"history": {**entry, "result": outcome}}},
                projection={"batchId": 1}, return_document=ReturnDocument.AFTER,
            )
        if updated is None:
            return "ignored"  # someone else finished it first
        # Its slot is freed by the next reservation, which sees the call is no longer in flight.
        log.info("call finished" if kind == "final" else "call will be retried",
                 extra={"callId": str(updated["_id"]), "batchId": str(updated["batchId"]), "outcome": outcome})
        return kind
