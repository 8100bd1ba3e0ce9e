"""Batches: creating them, reading them (with their counters), and starting them when calls arrive."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from bson import ObjectId

from dialer.core.batch_spec import BatchSpec
from dialer.core.clock import Clock, iso
from dialer.core.machine import START_ON_ENQUEUE
from dialer.core.statuses import IN_FLIGHT, TERMINAL, WAITING, BatchStatus, CallStatus
from dialer.ports import BatchRepo, CallRepo, Tally
from dialer.services.tenancy import parse_id


class BatchNotFound(LookupError):
    pass


class BatchForbidden(PermissionError):
    pass


class Batches:
    def __init__(self, batches: BatchRepo, calls: CallRepo, clock: Clock) -> None:
        self.repo = batches
        self.calls = calls
        self.clock = clock

    async def create(self, workspace_id: ObjectId, agent: dict, spec: BatchSpec,
                     batch_id: ObjectId | None = None) -> dict:
        """`batch_id`: chosen by a keyed request's claim. The retry that takes over the key of a request
        whose process died after the insert finds that batch instead of making a second one."""
        if batch_id is not None and (made := await self.repo.get(batch_id)) is not None:
            return made
        doc = self.draft(workspace_id, agent, spec)
        if batch_id is not None:
            doc["_id"] = batch_id
        await self.repo.insert(doc)
        return doc

    async def insert(self, doc: dict) -> None:
        await self.repo.insert(doc)

    def draft(self, workspace_id: ObjectId, agent: dict, spec: BatchSpec, extra: dict | None = None) -> dict:
        """The batch document, not yet stored (a face validates its records against it first)."""
        now = self.clock.now()
        doc = {
            "_id": ObjectId(),
            "workspaceId": workspace_id,
            "agentId": agent["_id"],
            "name": spec.name,
            "callingNumbers": spec.calling_numbers or agent["callingNumbers"],
            "concurrencyLimit": spec.concurrency_limit,
            "callingWindow": spec.window.to_doc(),
            "timezone": spec.timezone,
            "scheduledAt": spec.scheduled_at,
            "retry": spec.retry,
            "ringingTimeoutSeconds": spec.ringing_timeout,
            "compliance": spec.compliance,  # None: the workspace's
            "stateField": spec.state_field,
            "status": BatchStatus.PENDING.value,
            "createdAt": now,
            "updatedAt": now,
            **(extra or {}),
        }
        return doc

    async def get_owned(self, workspace_id: ObjectId, batch_id: Any) -> dict:
        """The batch, if it exists (else BatchNotFound) and belongs to the caller's workspace (else BatchForbidden)."""
        oid = parse_id(batch_id)
        if oid is not None:
            doc = await self.repo.get(oid)
        else:  # a face's own id for it (the enrollment face's UUID batchId)
            doc = await self.repo.by_public_id(batch_id.lower()) if _is_uuid(batch_id) else None
        if doc is None:
            raise BatchNotFound(batch_id)
        if doc["workspaceId"] != workspace_id:
            raise BatchForbidden(batch_id)
        return doc

    async def start_after_insert(self, batch: dict) -> str | None:
        """Successful insertion starts a pending batch unless it is scheduled for later.

        A completed batch that receives new calls runs again; a paused batch stays as it is (its calls wait
        visibly). A cancelled or failed batch takes no calls (Ingestion refuses them; those written while a
        cancel landed are withdrawn). Returns the batch's status as it is now (None: deleted meanwhile)."""
        now = self.clock.now()
        scheduled = batch.get("scheduledAt")
        if (scheduled is None or scheduled <= now) and await self.repo.move(
                batch["_id"], START_ON_ENQUEUE, now, {"startedAt": now, "enqueuedAt": now}):
            return BatchStatus.RUNNING.value
        return await self.repo.note_enqueued(batch["_id"], now)  # the status as it is now (None: deleted)

    async def counters(self, batch_id: ObjectId) -> dict:
        return counters_view(await self.calls.tallies(batch_id))


def _is_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def counters_view(tallies: list[Tally]) -> dict:
    """The counters partners read: exact, from the calls' tallies. A retried call waits with its last
    outcome; only calls in a final status count towards byOutcome."""
    by_status: Counter = Counter()
    by_outcome: Counter = Counter()
    for t in tallies:
        by_status[t.status] += t.calls
        if t.outcome and t.status in TERMINAL:
            by_outcome[t.outcome] += t.calls

    def count(statuses) -> int:
        return sum(by_status[s.value] for s in statuses)

    return {
        "scheduled": sum(t.calls for t in tallies),
        "dispatched": sum(t.dialled for t in tallies),
        "attempts": sum(t.attempts for t in tallies),
        "finished": count(TERMINAL),
        "waiting": count(WAITING),
        "inFlight": count(IN_FLIGHT),
        "byStatus": {s.value: by_status[s.value] for s in CallStatus},
        # Final outcomes; "machine" is a completed call answered by a machine (detection on).
        "byOutcome": dict(by_outcome),
    }


def batch_view(batch: dict, counters: dict | None = None) -> dict:
    view = {
        # The id the batch was given to its caller: the enrollment face's UUID, else our own.
        "batchId": batch.get("publicId") or str(batch["_id"]),
        "name": batch["name"],
        "agentId": str(batch["agentId"]),
        "status": batch["status"],
        "callingNumbers": batch["callingNumbers"],
        "concurrencyLimit": batch["concurrencyLimit"],
        "callingWindow": batch["callingWindow"],
        "timezone": batch.get("timezone"),
        "scheduledAt": iso(batch.get("scheduledAt")),
        "retry": batch["retry"],
        "ringingTimeoutSeconds": batch["ringingTimeoutSeconds"],
        "retryCount": batch.get("retryCount", 0),
        "compliance": batch.get("compliance"),
        "stateField": batch.get("stateField"),
        "createdAt": iso(batch["createdAt"]),
        "updatedAt": iso(batch["updatedAt"]),
    }
    if batch.get("publicId"):
        view["internalId"] = str(batch["_id"])  # what its calls' batchId says
    if batch.get("source"):
        view["source"] = batch["source"]
    if counters is not None:
        view["counters"] = counters
    return view
