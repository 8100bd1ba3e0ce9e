"""BatchRepo: batches, their status moves and counters, and the dispatcher's looks at the running ones."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from bson import ObjectId

from dialer.core.machine import BatchMove


class BatchRepo(Protocol):
    async def insert(self, batch: dict) -> None: ...

    async def get(self, batch_id: ObjectId) -> dict | None: ...

    async def runnable(self, now: dt.datetime) -> list[dict]:
        """Running batches whose scheduledAt is unset or has come, in _id order."""

    async def runnable_stamps(self, now: dt.datetime, among: list[ObjectId] | None = None
                              ) -> dict[ObjectId, tuple[dt.datetime | None, dt.datetime | None]]:
        """The runnable batches (as `runnable`; with `among`, those of these batches only) as {id: (updatedAt,
        enqueuedAt)}, without their documents: a dispatcher holding copies reads again only the batches whose
        stamps differ from its copy's (its minute look at every running batch, and its look just before it
        places at the batches it is about to place calls of)."""

    async def runnable_among(self, batch_ids: list[ObjectId], now: dt.datetime) -> list[dict]:
        """Those of these batches that are runnable now (as `runnable`), in _id order: the dispatcher's
        look just before it places, at the batches it is about to place calls of, whatever the others."""

    async def scheduled_due(self, now: dt.datetime) -> list[dict]:
        """Pending batches whose scheduledAt has come."""

    async def updated_since(self, since: dt.datetime, statuses: list[str] | None = None) -> list[dict]:
        """Batches whose updatedAt is at or after `since`, with one of `statuses` if given (else whatever
        their status), in _id order (the counter reconciliation looks at batches that stopped lately: their
        last calls may have ended since)."""

    async def changed_since(self, since: dt.datetime) -> list[dict]:
        """Batches whose updatedAt or enqueuedAt is at or after `since`, whatever their status, in _id order, as
        their stamps only: `{_id, status, updatedAt, enqueuedAt, scheduledAt}` (a pending batch's scheduled start
        is when the dispatcher starts it: workers/book.py `upcoming`). What a dispatcher looks at between its full
        reads of the running batches (so its cost follows the changes, not the number of batches); it reads the
        documents of the running ones whose stamps differ from its copies (runnable_among), so a batch seen
        again in the look-back overlap is not decoded twice, and thousands completing a minute cost a row each."""

    async def move(self, batch_id: ObjectId, move: BatchMove, now: dt.datetime,
                   set_fields: dict[str, Any] | None = None, unset: tuple[str, ...] = ()) -> bool:
        """The batch's status from one of `move.sources` to `move.target` (compare-and-set), updatedAt
        = now, plus the given fields. False if the batch was not in a source status."""

    async def move_many(self, batch_ids: list[ObjectId], move: BatchMove, now: dt.datetime,
                        set_fields: dict[str, Any] | None = None) -> set[ObjectId]:
        """`move` for each of these batches in one write (the dispatcher completes the batches it found
        with nothing left together): the ids of those that moved."""

    async def list(self, workspace_id: ObjectId, statuses: list[str] | None, agent_id: ObjectId | None,
                   before: ObjectId | None, limit: int) -> list[dict]:
        """The workspace's batches, newest first (_id descending), older than `before` if given, with one
        of `statuses` and of `agent_id` if given."""

    async def update(self, batch_id: ObjectId, statuses: list[str], set_fields: dict[str, Any],
                     now: dt.datetime) -> dict | None:
        """Set these fields (updatedAt = now) if the batch's status is one of `statuses`: the batch after,
        or None."""

    async def delete(self, batch_id: ObjectId) -> bool: ...

    async def by_public_id(self, public_id: str) -> dict | None:
        """The batch whose `publicId` (a UUID a face gave it) is this."""

    async def note_enqueued(self, batch_id: ObjectId, now: dt.datetime) -> str | None:
        """enqueuedAt = now: calls joined the queue (new, or back for a retry). Dispatchers in other
        processes see it when they re-read the runnable batches, and look at the batch again. Returns the
        batch's status as it is now (None: no such batch), so calls that joined the queue of a batch cancelled
        meanwhile are withdrawn without another read."""
