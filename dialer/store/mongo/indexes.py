"""Every index the MongoDB repositories rely on, declared in code and created at start-up (idempotent).
Each repository module's docstring says which of its queries each index serves.

Creating an index that is missing reads the whole collection: on a populated `calls` collection (an
index added by an upgrade) that takes minutes, far longer than the client's per-operation timeout (a
quarter lease). Each collection's indexes are built under their own timeout, INDEX_BUILD_SECONDS: had
the client's applied, the build would fail, the process exit, and the next start begin it again.

Then the documents an older version wrote in a shape this one no longer reads are rewritten (UPGRADES).
"""

from __future__ import annotations

import logging
from typing import Any

import pymongo
from pymongo import ASCENDING, IndexModel

from dialer.store.mongo.idempotency import convert_legacy_records

log = logging.getLogger("dialer.store.indexes")

INDEX_BUILD_SECONDS = 4 * 3600.0  # each collection's; pymongo.timeout(None) would mean the client's

# Documents with partner webhook events not relayed yet (outbox.py): few at any time, hence sparse.
OUTBOX_INDEX = IndexModel([("outbox.id", ASCENDING)], sparse=True, name="outbox")
INDEXES: dict[str, list[IndexModel]] = {
    "api_keys": [IndexModel([("keyHash", ASCENDING)], unique=True, name="key_hash")],
    "agents": [IndexModel([("workspaceId", ASCENDING), ("createdAt", ASCENDING)], name="workspace_created"),
               IndexModel([("callingNumbers", ASCENDING)], name="calling_numbers")],
    "workspaces": [IndexModel([("createdAt", ASCENDING)], name="created")],
    "batches": [IndexModel([("workspaceId", ASCENDING), ("_id", ASCENDING)], name="workspace_id"),
                # A face's own id for the batch (the enrollment face's UUID batchId).
                IndexModel([("publicId", ASCENDING)], unique=True, sparse=True, name="public_id"),
                IndexModel([("status", ASCENDING)], name="status"),
                # The counter reconciliation: batches changed lately (they may have stopped running).
                IndexModel([("updatedAt", ASCENDING)], name="updated"),
                # A dispatcher's look between its full reads: batches changed or given calls lately.
                IndexModel([("enqueuedAt", ASCENDING)], name="enqueued", sparse=True), OUTBOX_INDEX],
    "calls": [
        # At most one waiting or in-flight call per callee of a batch: activeKey is unset when a call ends.
        IndexModel([("activeKey", ASCENDING)], unique=True, sparse=True, name="active_key"),
        # At most one call in flight per callee of a workspace, whatever its batch: busyLine is set by a claim and
        # unset by every move out of flight (calls_for_claims.py, CLAIM_FIELDS).
        IndexModel([("busyLine", ASCENDING)], unique=True, sparse=True, name="busy_line"),
        # Claims (due calls, earliest first then FIFO), next due, waiting/active checks, pages by status.
        IndexModel([("batchId", ASCENDING), ("status", ASCENDING), ("nextAttemptAt", ASCENDING), ("_id", ASCENDING)],
                   name="batch_status_due_id"),
        # Pages without a status filter, tallies.
        IndexModel([("batchId", ASCENDING), ("_id", ASCENDING)], name="batch_id"),
        # The reaper: in-flight calls whose lease ran out.
        IndexModel([("status", ASCENDING), ("leaseUntil", ASCENDING)], name="status_lease"),
        # The reaper: which provider calls some call already holds (only calls that reached the provider).
        IndexModel([("providerCallId", ASCENDING)], sparse=True, name="provider_call"),
        # Contact chaining: the calls of one group (only chained calls have a group).
        IndexModel([("batchId", ASCENDING), ("group.key", ASCENDING)], name="batch_group",
                   partialFilterExpression={"group.key": {"$exists": True}}),
        OUTBOX_INDEX,
    ],
    # Enrollment intakes: pending ones to resume, oldest first; done ones to purge by the injected clock.
    "intakes": [IndexModel([("state", ASCENDING), ("createdAt", ASCENDING)], name="state_created"),
                IndexModel([("expiresAt", ASCENDING)], name="expires_at"), OUTBOX_INDEX],
    # Partner webhooks: a workspace's endpoints; the senders' due messages per endpoint; the log, newest first; the purge.
    "webhook_endpoints": [IndexModel([("workspaceId", ASCENDING), ("_id", ASCENDING)], name="workspace_id")],
    "webhook_messages": [IndexModel([("status", ASCENDING), ("endpointId", ASCENDING), ("nextAttemptAt", ASCENDING)],
                                    name="status_endpoint_due"),
                         IndexModel([("workspaceId", ASCENDING), ("_id", ASCENDING)], name="workspace_id"),
                         IndexModel([("endpointId", ASCENDING), ("_id", ASCENDING)], name="endpoint_id"),
                         # The reaper's retention purge by the injected clock (no TTL index: the server's clock),
                         # final messages settled before a time; createdAt for those written before settledAt.
                         IndexModel([("status", ASCENDING), ("settledAt", ASCENDING), ("createdAt", ASCENDING)],
                                    name="status_settled_created")],
    # Do-not-call lists (dnc.py): one entry per workspace and number; pages by number, prefix searches.
    "dnc": [IndexModel([("workspaceId", ASCENDING), ("number", ASCENDING)], unique=True, name="workspace_number")],
    # Frequency caps (caps.py): a claim that did not happen gives its attempts back by call id.
    "caps": [IndexModel([("attempts.callId", ASCENDING)], name="attempt_call"),
             IndexModel([("attempts.at", ASCENDING)], name="attempt_at")],  # the reaper's purge
    # Expiry follows the injected clock (purge), so no TTL index: its monitor uses the server's clock.
    "idempotency": [IndexModel([("expiresAt", ASCENDING)], name="expires_at")],
}

# Indexes an older version created and this one no longer reads: dropped at start-up (each costs every write).
RETIRED: dict[str, list[str]] = {
    "calls": ["line_key"],  # (lineKey, status): a claim's read of the callees in flight, now busy_line's job
}

# Start-up rewrites of documents in an older shape, by collection (each idempotent: it runs at every start).
UPGRADES = {
    "idempotency": convert_legacy_records,  # records named by their Idempotency-Key, answers in plain
}


async def ensure_indexes(db: Any) -> None:
    for name, models in INDEXES.items():
        collection = db[name]
        documents = await collection.estimated_document_count()
        log.info("ensuring the indexes of a collection (a missing one is built: long on a large collection)",
                 extra={"collection": name, "documents": documents, "indexes": [m.document["name"] for m in models]})
        with pymongo.timeout(INDEX_BUILD_SECONDS):
            await collection.create_indexes(models)
        present = await collection.index_information()
        for retired in RETIRED.get(name, []):
            if retired in present:
                log.info("dropping an index this version no longer uses", extra={"collection": name, "index": retired})
                await collection.drop_index(retired)
    log.info("indexes ready")
    for name, upgrade in UPGRADES.items():
        await upgrade(db[name])
