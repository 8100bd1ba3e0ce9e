"""Batches: creating, reading and counting them in the store; the batch as partners see it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bson import ObjectId

from dialer.core.batch_spec import BatchSpec
from dialer.core.clock import Clock, as_utc, iso
from dialer.core.statuses import IN_FLIGHT, TERMINAL, WAITING, BatchStatus, CallStatus
from dialer.store import Store, aggregate
from dialer.services.tenancy import parse_id


class BatchNotFound(LookupError):
    pass


class BatchForbidden(PermissionError):
    pass


class Batches:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def create(self, workspace_id: ObjectId, agent: dict, spec: BatchSpec) -> dict:
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
            "status": BatchStatus.PENDING.value,
            "createdAt": now,
            "updatedAt": now,
        }
        await self.store.batches.insert_one(doc)
        return doc

    async def get_owned(self, workspace_id: ObjectId, batch_id: Any) -> dict:
        """The batch, if it exists (404) and belongs to the caller's workspace (403)."""
        oid = parse_id(batch_id)
        doc = None if oid is None else await self.store.batches.find_one({"_id": oid})
        if doc is None:
            raise BatchNotFound(batch_id)
        if doc["workspaceId"] != workspace_id:
            raise BatchForbidden(batch_id)
        return doc

    async def start_after_insert(self, batch: dict) -> str:
        """Successful insertion starts a pending batch unless it is scheduled for later.

        A completed batch that receives new calls runs again; paused and cancelled batches stay as
        they are (their calls wait visibly)."""
        now = self.clock.now()
        scheduled = batch.get("scheduledAt")
        if scheduled is not None and as_utc(scheduled) > now:
            return batch["status"]
        result = await self.store.batches.find_one_and_update(
            {"_id": batch["_id"], "status": {"$in": [BatchStatus.PENDING.value, BatchStatus.COMPLETED.value]}},
            {"$set": {"status": BatchStatus.RUNNING.value, "updatedAt": now, "startedAt": now}},
            projection={"status": 1},
        )
        return BatchStatus.RUNNING.value if result is not None else batch["status"]

    async def counters(self, batch_id: ObjectId) -> dict:
        """Exact counters, computed from the calls themselves (they cannot drift)."""
        # One pass: per (status, outcome). A retried call waits with its last outcome; only calls in
        # a final status count towards byOutcome.
        rows = await aggregate(self.store.calls, [
            {"$match": {"batchId": batch_id}},
            {"$group": {"_id": {"status": "$status", "outcome": "$outcome"}, "n": {"$sum": 1},
                        "dialled": {"$sum": {"$cond": [{"$gt": ["$attempts", 0]}, 1, 0]}},
                        "attempts": {"$sum": "$attempts"}}},
        ])
        by_status: Counter = Counter()
        by_outcome: Counter = Counter()
        for row in rows:
            status, outcome = row["_id"]["status"], row["_id"].get("outcome")
            by_status[status] += row["n"]
            if outcome and status in TERMINAL:
                by_outcome[outcome] += row["n"]
        count = lambda statuses: sum(by_status[s.value] for s in statuses)  # noqa: E731
        return {
            "scheduled": sum(row["n"] for row in rows),
            "dispatched": sum(row["dialled"] for row in rows),
            "attempts": sum(row["attempts"] for row in rows),
            "finished": count(TERMINAL),
            "waiting": count(WAITING),
            "inFlight": count(IN_FLIGHT),
            "byStatus": {s.value: by_status[s.value] for s in CallStatus},
            # Final outcomes; "machine" is a completed call answered by a machine (detection on).
            "byOutcome": dict(by_outcome),
        }


def batch_view(batch: dict, counters: dict | None = None) -> dict:
    view = {
        "batchId": str(batch["_id"]),
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
        "createdAt": iso(batch["createdAt"]),
        "updatedAt": iso(batch["updatedAt"]),
    }
    if counters is not None:
        view["counters"] = counters
    return view
