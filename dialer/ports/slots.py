"""SlotLedger: the slots in use (the calls in flight per batch) and the reservations not seen claimed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from bson import ObjectId


class FlyingCounts(Mapping):
    """Calls in flight per batch, read-only: a mapping from batch id to count, kept by the ids' 12 bytes.

    A ledger read yields one entry per batch with calls in flight (thousands, with many small batches),
    and a dispatcher looks many of them up per tick: bytes hash in C and cache their hash, an ObjectId
    hashes and compares in Python. So the store hands its rows over as they come (`by_binary`), and a
    lookup by ObjectId costs one dict probe."""

    __slots__ = ("by_binary", "total", "scope")

    def __init__(self, by_binary: dict[bytes, int], total: int | None = None,
                 scope: frozenset[bytes] | None = None) -> None:
        self.by_binary = by_binary
        self.total = sum(by_binary.values()) if total is None else total  # every batch's, whatever the scope
        self.scope = scope  # the batches counted (their ids' bytes); None: every batch

    def __getitem__(self, batch_id: ObjectId) -> int:
        return self.by_binary[batch_id.binary]

    def __contains__(self, batch_id: object) -> bool:
        return isinstance(batch_id, ObjectId) and batch_id.binary in self.by_binary

    def __iter__(self) -> Iterator[ObjectId]:
        return (ObjectId(b) for b in self.by_binary)

    def __len__(self) -> int:
        return len(self.by_binary)

    def __repr__(self) -> str:
        return f"FlyingCounts({dict(self.items())!r})"


@dataclass
class LedgerState:
    """The slots in use, as the store saw them: the calls themselves are the record of the slots they hold
    (a call holds one while its status is in flight, and frees it by its own transition out of flight),
    so the ledger keeps only what the calls cannot show yet: the reservations made but not seen claimed
    (`pending`: entries `{callId, batchId, token, at}`, each read with `holder`, its call's `(status,
    claim token)` then, or None), and `next_dial_at`, which spaces dials by the account's rate.
    `flying` is the number of calls in flight per batch, counted *after* the holders were read (or in
    the same snapshot): a reservation seen claimed is then counted by its call, if still in flight."""

    version: int
    pending: list[dict]
    flying: FlyingCounts
    next_dial_at: dt.datetime | None


@dataclass(frozen=True)
class LedgerWrite:
    """A compare-and-set of the ledger (as `SlotLedger.write`), to land with a claim (`CallRepo.claim`)."""

    version: int
    pending: list[dict]
    next_dial_at: dt.datetime | None


class SlotLedger(Protocol):
    async def read(self, batch_ids: list[ObjectId] | None = None, settled: frozenset[str] = frozenset()) -> LedgerState:
        """The reservations with their calls' holders, then the calls in flight per batch (one document,
        created empty if missing; its holders and counts read after it, in that order). With `batch_ids`,
        the counts of those batches only (`flying.scope`), and the total of every batch's (`flying.total`):
        a claim that looks at a few batches does not count the calls in flight of thousands. The reservations
        of the `settled` tokens (claims whose write the reader saw come back) are read without their holders."""

    async def write(self, version: int, pending: list[dict], next_dial_at: dt.datetime | None) -> bool:
        """Compare-and-set on `version` (then version + 1): the reservations not seen claimed yet, the next
        dial time. False if another writer came first."""

    async def release(self, call_ids: list[ObjectId], token: str) -> None:
        """Remove the reservations of these calls made under `token` (idempotent; bumps the version)."""
