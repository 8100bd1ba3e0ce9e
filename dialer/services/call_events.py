"""Applying provider status events to calls: Twilio statuses -> our call statuses, and retries.

Used by the API's Twilio status webhook, the simulator's events and the reaper, so every path behaves
the same. Each event is one compare-and-set in the CallRepo (the status filter makes replays and
out-of-order events harmless); a call leaving flight frees its slot by that alone (workers/slots.py).
A retryable outcome (the batch's retry.on) with attempts left puts the call back in the queue after
retry.delaySeconds; the dispatcher then waits for the callee's window again.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Awaitable, Callable

from bson import ObjectId

from dialer.core.clock import Clock
from dialer.core.statuses import CallStatus
from dialer.metrics import Metrics
from dialer.ports import BatchRepo, CallRepo, Finish
from dialer.services.calls import enqueued_or_withdrawn
from dialer.services.tenancy import parse_id

log = logging.getLogger("dialer.calls")
# Twilio CallStatus -> our final status.
FINAL = {
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "no-answer": CallStatus.NO_ANSWER,
    "failed": CallStatus.FAILED,
    "canceled": CallStatus.CANCELLED,
}
PROGRESS = {"ringing": CallStatus.RINGING, "in-progress": CallStatus.IN_PROGRESS, "answered": CallStatus.IN_PROGRESS}
TALKING_LEASE_FACTOR = 8
OUTCOME = {CallStatus.COMPLETED: "completed", CallStatus.BUSY: "busy", CallStatus.NO_ANSWER: "no_answer",
           CallStatus.FAILED: "failed", CallStatus.CANCELLED: "cancelled"}
NO_RETRY = {"maxAttempts": 1, "delaySeconds": 0, "on": []}


def lease_for(status: str, lease: dt.timedelta) -> dt.timedelta:
    """How long a call in `status` goes unchecked: conversations last minutes, so they are checked
    with the provider less often than calls still ringing."""
    return lease * (TALKING_LEASE_FACTOR if status == CallStatus.IN_PROGRESS else 1)


def outcome_of(status: CallStatus, answered_by: str | None) -> str:
    if status == CallStatus.COMPLETED and answered_by and answered_by.startswith(("machine", "fax")):
        return "machine"
    return OUTCOME[status]


class BatchPolicies:
    """Retry policies of batches (needed on every final event): the copy a dispatcher in this process holds of
    a running batch (`current`: it re-reads a batch within seconds of a change), else cached 60 s per process."""

    def __init__(self, batches: BatchRepo, clock: Clock, ttl_seconds: float = 60.0) -> None:
        self.batches = batches
        self.clock = clock
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self._cache: dict[ObjectId, tuple[dt.datetime, dict]] = {}
        # The running batches as this process's dispatcher read them (workers/engine.py sets it), so the events
        # of thousands of batches cost no batch read each, and no refresh of a cache entry each either.
        self.current: Callable[[ObjectId], dict | None] | None = None

    async def retry(self, batch_id: ObjectId) -> dict:
        if self.current is not None and (doc := self.current(batch_id)) is not None:
            return doc.get("retry") or NO_RETRY
        now = self.clock.now()
        hit = self._cache.get(batch_id)
        if hit and hit[0] > now:
            return hit[1]
        doc = await self.batches.get(batch_id)
        policy = (doc or {}).get("retry") or NO_RETRY
        self._cache[batch_id] = (now + self.ttl, policy)
        return policy


class CallEvents:
    def __init__(self, calls: CallRepo, policies: BatchPolicies, clock: Clock, lease_seconds: float,
                 metrics: Metrics | None = None) -> None:
        self.calls = calls
        self.metrics = metrics or Metrics()
        self.policies = policies
        self.clock = clock
        self.lease = dt.timedelta(seconds=lease_seconds)
        # Contact chaining's next step for the call's group (dialer/services/chains.py), once it is final.
        self.on_group_call_final: Callable[[ObjectId, str], Awaitable[None]] | None = None
        # Told of every call that left flight here (its batch, "final" or "retry"): a dispatcher in this
        # process (workers/engine.py) looks again at once instead of at its next recheck, whichever face the
        # event came through (Twilio's callback to the API, the simulator, a provider error, the reaper).
        self.on_ended: list[Callable[[ObjectId, str], None]] = []

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
        entry = {"at": now, "event": status, **({"answeredBy": answered_by} if answered_by else {}),
                 **({"duration": duration} if duration is not None else {}), **({"error": error} if error else {})}
        if status in PROGRESS:
            new = PROGRESS[status]
            moved = await self.calls.progress(oid, attempt, provider_call_id, new.value, now + lease_for(new, self.lease),
                                              entry, answered_by, now)
            return "progress" if moved else "ignored"
        if status in ("queued", "initiated"):
            if not provider_call_id:
                return "ignored"
            # The provider accepted the call: record its id if the dispatcher has not yet.
            recorded = await self.calls.record_provider_id(oid, attempt, provider_call_id, entry)
            return "progress" if recorded else "ignored"
        if status not in FINAL:
            return "ignored"
        final = FINAL[status]
        return await self.finish(oid, parse_id(batch_id), final, outcome_of(final, answered_by), entry,
                                 token=attempt, provider_call_id=provider_call_id, duration=duration)

    async def finish(self, call_id: ObjectId, batch_id: ObjectId | None, final: CallStatus, outcome: str, entry: dict,
                     *, token: str | None = None, provider_call_id: str | None = None, duration: int | None = None,
                     retry: bool = True) -> str:
        """Move an in-flight call to its outcome: back to the queue if its batch retries it, else final.

        With the batch id known (webhook URL, simulator, placer) this is one write; without it, one read more."""
        now = self.clock.now()
        if batch_id is None:
            call = await self.calls.get(call_id)
            if call is None:
                return "ignored"
            batch_id = call["batchId"]
        policy = await self.policies.retry(batch_id)
        retry_at = None
        if retry and outcome in policy["on"]:
            retry_at = now + dt.timedelta(seconds=policy["delaySeconds"])
        done = await self.calls.finish(call_id, token, provider_call_id, Finish(
            final=final.value, outcome=outcome, entry=entry, retry_at=retry_at, max_attempts=policy["maxAttempts"],
            duration=duration, provider_call_id=provider_call_id), now)
        if done is None:
            return "ignored"  # not in flight (any more), or another attempt's
        kind, batch_id, group = done
        if kind == "final":
            self.metrics.outcomes.labels(outcome).inc()
            if group is not None and self.on_group_call_final is not None:
                await self.on_group_call_final(batch_id, group["key"])
        if kind == "retry" and await enqueued_or_withdrawn(self.calls, self.policies.batches, batch_id, now):
            kind = "final"  # cancelled while the call was in flight: it ended normally, and never waits again
        else:
            log.info("call finished" if kind == "final" else "call will be retried",
                     extra={"callId": str(call_id), "batchId": str(batch_id), "outcome": outcome})
        # Its slot is freed by the next reservation, which sees the call is no longer in flight.
        self.left_flight(batch_id, kind)
        return kind

    def left_flight(self, batch_id: ObjectId, kind: str) -> None:
        """Tell the listeners a call of this batch left flight here: "final", or "retry" (back in its queue: also a
        claim handed back unplaced, by a stopping dispatcher or the reaper after a crash, which no event reports)."""
        for listener in self.on_ended:
            listener(batch_id, kind)
