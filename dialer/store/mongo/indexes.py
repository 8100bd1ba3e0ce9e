"""Every index the MongoDB repositories rely on, declared in code and created at start-up (idempotent).
Each repository module's docstring says which of its queries each index serves."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel

INDEXES: dict[str, list[IndexModel]] = {
    "api_keys": [IndexModel([("keyHash", ASCENDING)], unique=True, name="key_hash")],
    "agents": [IndexModel([("workspaceId", ASCENDING), ("createdAt", ASCENDING)], name="workspace_created"),
               IndexModel([("callingNumbers", ASCENDING)], name="calling_numbers")],
    "workspaces": [IndexModel([("createdAt", ASCENDING)], name="created")],
    "batches": [IndexModel([("workspaceId", ASCENDING), ("_id", ASCENDING)], name="workspace_id"),
                # A face's own id for the batch (the enrollment face's UUID batchId).
                IndexModel([("publicId", ASCENDING)], unique=True, sparse=True, name="public_id"),
                IndexModel([("status", ASCENDING)], name="status")],
    "calls": [
        # At most one waiting or in-flight call per callee of a batch: activeKey is unset when a call ends.
        IndexModel([("activeKey", ASCENDING)], unique=True, sparse=True, name="active_key"),
        # Claims (due calls, earliest first then FIFO), next due, waiting/active checks, pages by status.
        IndexModel([("batchId", ASCENDING), ("status", ASCENDING), ("nextAttemptAt", ASCENDING), ("_id", ASCENDING)],
                   name="batch_status_due_id"),
        # Pages without a status filter, tallies.
        IndexModel([("batchId", ASCENDING), ("_id", ASCENDING)], name="batch_id"),
        # The reaper: in-flight calls whose lease ran out.
        IndexModel([("status", ASCENDING), ("leaseUntil", ASCENDING)], name="status_lease"),
        # Contact chaining: the calls of one group (only chained calls have a group).
        IndexModel([("batchId", ASCENDING), ("group.key", ASCENDING)], name="batch_group",
                   partialFilterExpression={"group.key": {"$exists": True}}),
    ],
    # Enrollment intakes: pending ones to resume, oldest first; done ones to purge by the injected clock.
    "intakes": [IndexModel([("state", ASCENDING), ("createdAt", ASCENDING)], name="state_created"),
                IndexModel([("expiresAt", ASCENDING)], name="expires_at")],
    # Expiry follows the injected clock (purge), so no TTL index: its monitor uses the server's clock.
    "idempotency": [IndexModel([("expiresAt", ASCENDING)], name="expires_at")],
}


async def ensure_indexes(db: Any) -> None:
    for name, models in INDEXES.items():
        await db[name].create_indexes(models)
