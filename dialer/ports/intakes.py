"""IntakeRepo: enrollment requests written durably before their answer, scheduled in the background."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class IntakeRepo(Protocol):
    """An enrollment request's accepted contacts, written before its 202 and turned into a batch and its
    calls in the background: `{_id: "<workspaceId>:key:<Idempotency-Key>" or "<workspaceId>:id:<uuid>",
    workspaceId, publicId, batch (the batch document to write), calls (the planned calls as one BSON
    blob, dialer/core/enrollment.py encode_planned), answer (the 202's body, as sent), state: pending | done, createdAt,
    expiresAt, leaseUntil?, takenBy?, creditsSettled?, creditsSettledBy?}`. Expiry follows the caller's clock (purge)."""

    async def insert(self, intake: dict) -> dict | None:
        """None when written; the stored intake when one with this _id exists (nothing written)."""

    async def get(self, intake_id: str) -> dict | None: ...

    async def take(self, intake_id: str, by: str, until: dt.datetime, now: dt.datetime) -> dict | None:
        """Lease a pending intake whose lease is absent or past (compare-and-set): the intake, or None."""

    async def unfinished(self, now: dt.datetime, limit: int) -> list[str]:
        """Ids of pending intakes whose lease is absent or past, oldest first."""

    async def claim_settlement(self, intake_id: str, note_by: str | None) -> tuple[bool, str | None]:
        """Mark the intake's credits settled on the reservation made by `note_by` (`creditsSettledBy`, a
        compare-and-set, once): (True, note_by) for the one caller that marked it, else (False, the
        reservation it was marked with); (False, None) when there is no such intake."""

    async def finish(self, intake_id: str, now: dt.datetime) -> None:
        """state = done; the planned calls are dropped (the answer stays, for replays)."""

    async def remove_expired(self, intake_id: str, now: dt.datetime) -> bool:
        """Delete the intake if it is done and expired by `now` (its key may be used afresh)."""

    async def purge(self, now: dt.datetime) -> int:
        """Delete the done intakes whose expiresAt <= now; how many."""
