"""The seams: what the use cases and the dispatcher ask of storage, as small Protocols.

One module per port below (calls, batches, tenancy, idempotency, intakes, slots, webhooks, compliance),
each with the values its methods take and return; this package hands them all out under one name
(`from dialer.ports import CallRepo`), with `Repositories`, the set a backend builds.

Two backends implement every port: `dialer/store/sqlite` (an SQLite file: the embedded, durable
default) and `dialer/store/mongo` (PyMongo's async driver: the scale-out path). One contract suite
(tests/contract) runs against both.
Nothing above `dialer/store` touches a collection, a table or builds a query.

Documents are plain dicts with our field names; ids are `bson.ObjectId`s; every datetime a
repository returns is timezone-aware UTC (the repositories normalise them). A repository never
hands out a document it keeps: callers may change what they get without changing the store.

A **call** document: `_id, batchId, workspaceId, phoneNumber` (E.164), `extension` (or None),
`activeKey` (present while the call waits or is in flight, see `active_key`), `input`
`{phoneNumber}`, `variables`, `timezones`, `zoneSource`, `status`, `attempts`, `nextAttemptAt`,
`createdAt`, `updatedAt`, `history` (list of entries `{at, event, ...}`); while dispatched:
`claimToken, claimedBy, dialAt, leaseUntil`, then `providerCallId`, `uncertain`, `answeredBy`;
`providerErrors` (refusals that did not count an attempt); once final: `outcome, finishedAt, duration`;
`meta` (what a compatibility face keeps with the call: a recipient's own id, its client data).

A **batch** document: `_id, workspaceId, agentId, name, callingNumbers, concurrencyLimit,
callingWindow, timezone, scheduledAt, retry, ringingTimeoutSeconds, status, createdAt, updatedAt`,
`startedAt` / `completedAt` once they happen, `enqueuedAt` (the last time calls joined its queue).

Status changes go through `dialer.core.machine`: each repository method that changes a status is
a compare-and-set on the current status (and, where named, the attempt's claim token), so a stale
writer changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

from dialer.ports.errors import StoreUnavailable, StoreOpenFailed
from dialer.ports.calls import (active_key, ChunkResult, Claim, ClaimResult, PlacedRecord, Tally, difference, Finish,
                                CallRepo, placed_entry, line_key, BUSY_WAIT)
from dialer.ports.batches import BatchRepo
from dialer.ports.tenancy import CREDIT_REFS, TenancyRepo, CreditReservation, reservation_key
from dialer.ports.idempotency import IdempotencyRepo
from dialer.ports.intakes import IntakeRepo
from dialer.ports.slots import FlyingCounts, LedgerState, LedgerWrite, SlotLedger
from dialer.ports.webhooks import OutboxEvent, WebhookRepo
from dialer.ports.compliance import DncRepo, CapRequest, CapLedger

__all__ = [
    'CREDIT_REFS',
    'BatchRepo', 'CallRepo', 'CapLedger', 'CapRequest', 'ChunkResult', 'Claim', 'ClaimResult', 'CreditReservation', 'DncRepo',
    'Finish', 'FlyingCounts', 'IdempotencyRepo', 'IntakeRepo', 'LedgerState', 'LedgerWrite', 'OutboxEvent', 'PlacedRecord', 'placed_entry', 'line_key', 'BUSY_WAIT', 'Repositories',
    'SlotLedger', 'StoreOpenFailed', 'StoreUnavailable', 'Tally', 'TenancyRepo', 'WebhookRepo', 'active_key',
    'difference', 'reservation_key'
]


@dataclass
class Repositories:
    kind: str  # "sqlite" | "mongodb" | "mongomock"
    calls: CallRepo
    batches: BatchRepo
    tenancy: TenancyRepo
    idempotency: IdempotencyRepo
    ledger: SlotLedger
    intakes: IntakeRepo
    webhooks: WebhookRepo
    dnc: DncRepo
    closer: Any = None  # awaitable factory that closes the backend's client
    database: Any = None  # the SQLite backend's Database (back-ups, operation counts), else None
    caps: CapLedger | None = None  # attempts per number (frequency caps); None: caps are not kept

    @property
    def embedded(self) -> bool:
        """Kept on this machine (the SQLite file), not on a database server."""
        return self.kind == "sqlite"

    def seen_through(self, wrap: Callable[[str, Any], Any]) -> Repositories:
        """The same stores with each repository seen through `wrap(name, repository)` (the benchmarks count
        operations, the simulation injects faults). The view closes nothing: the stores' owner does."""
        views = {f.name: wrap(f.name, getattr(self, f.name)) for f in fields(self)
                 if f.name not in ("kind", "closer", "database") and getattr(self, f.name) is not None}
        return Repositories(kind=self.kind, database=self.database, **views)

    async def close(self) -> None:
        if self.closer is not None:
            await self.closer()
