"""Every index the engine relies on, declared in code and created at start-up (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, IndexModel


@dataclass(frozen=True)
class Index:
    collection: str
    keys: list[tuple[str, int]]
    options: dict[str, Any] = field(default_factory=dict)
    # mongomock rescans a whole collection on every insert per unique index (quadratic ingestion);
    # on high-volume collections the in-memory store drops `unique` and relies on the single
    # process serialising its writers (see store/memory.py).
    unique_in_memory: bool = True


INDEXES: list[Index] = [
    Index("api_keys", [("keyHash", ASCENDING)], {"unique": True, "name": "key_hash"}),
    Index("agents", [("workspaceId", ASCENDING)], {"name": "workspace"}),
    Index("agents", [("callingNumbers", ASCENDING)], {"name": "calling_numbers"}),
    Index("batches", [("workspaceId", ASCENDING), ("createdAt", ASCENDING)], {"name": "workspace_created"}),
    Index("batches", [("status", ASCENDING)], {"name": "status"}),
    # At most one waiting or in-flight call per (batch, number): activeKey is unset when a call ends.
    Index("calls", [("activeKey", ASCENDING)], {"unique": True, "sparse": True, "name": "active_key"}, unique_in_memory=False),
    # Claiming (first in, first out among due calls) and listing by status, in enqueue (_id) order.
    Index("calls", [("batchId", ASCENDING), ("status", ASCENDING), ("_id", ASCENDING)], {"name": "batch_status_id"}),
    Index("calls", [("batchId", ASCENDING), ("_id", ASCENDING)], {"name": "batch_id"}),
    # The dispatcher's computed wake-up: the batch's next queued call to become due.
    Index("calls", [("batchId", ASCENDING), ("status", ASCENDING), ("nextAttemptAt", ASCENDING)],
          {"name": "batch_status_due"}),
    # The reaper: in-flight calls whose lease ran out.
    Index("calls", [("status", ASCENDING), ("leaseUntil", ASCENDING)], {"name": "status_lease"}),
    Index("calls", [("providerCallId", ASCENDING)], {"sparse": True, "name": "provider_call"}),
    # Expiry follows the injected clock (idempotency.py purges), so no TTL index: its monitor uses the real clock.
    Index("idempotency", [("expiresAt", ASCENDING)], {"name": "expires_at"}),
]


async def ensure_indexes(db: Any, in_memory: bool) -> None:
    by_collection: dict[str, list[IndexModel]] = {}
    for index in INDEXES:
        options = dict(index.options)
        if in_memory and not index.unique_in_memory:
            options.pop("unique", None)
        by_collection.setdefault(index.collection, []).append(IndexModel(index.keys, **options))
    for name, models in by_collection.items():
        await db[name].create_indexes(models)
