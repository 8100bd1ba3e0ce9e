"""DncRepo and CapLedger: each workspace's do-not-call list, and attempts per number for frequency caps."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Protocol

from bson import ObjectId


class DncRepo(Protocol):
    """Each workspace's do-not-call list: entries `{workspaceId, number (E.164), reason?, source ('manual',
    'import', 'opt-out', 'api', ...), callId? (an opt-out's call), listedAt}`, one per (workspace, number).
    Looking numbers up is one indexed set-membership query, whatever the list's size."""

    async def add(self, entries: list[dict]) -> int:
        """Write these entries (distinct numbers); one whose number the workspace lists already is left as it
        is (its first listing stands). How many were new."""

    async def get(self, workspace_id: ObjectId, number: str) -> dict | None: ...

    async def remove(self, workspace_id: ObjectId, number: str) -> bool:
        """False when the number was not listed."""

    async def page(self, workspace_id: ObjectId, prefix: str | None, after: str | None, limit: int) -> list[dict]:
        """The workspace's entries by number, after the number `after`, starting with `prefix` if given."""

    async def listed(self, keys: Iterable[tuple[ObjectId, str]]) -> dict[tuple[ObjectId, str], dict]:
        """Of these (workspaceId, number) pairs, the listed ones with their entries (one batched lookup)."""

    async def count(self, workspace_id: ObjectId) -> int: ...


@dataclass(frozen=True)
class CapRequest:
    """One attempt to be counted against a number's rolling-window cap within a workspace."""

    workspace_id: ObjectId
    number: str  # E.164
    call_id: ObjectId
    limit: int | None  # attempts allowed in the window, this one included; None: counted, never refused


class CapLedger(Protocol):
    """Attempts per number per workspace over a rolling window (dialer/core/compliance.py's caps), kept as
    entries `{callId, token, at}` per (workspace, number). Reserved like slots: `reserve` is atomic against
    every other writer, so two dispatchers never both take the last attempt a cap allows."""

    async def reserve(self, requests: list[CapRequest], token: str, at: dt.datetime,
                      window: dt.timedelta) -> dict[ObjectId, dt.datetime]:
        """In one atomic step, in order: an entry stamped `at` for each request whose number has fewer than
        `limit` entries stamped after `at - window` (the requests before it count). The refused: call id
        -> the first instant the cap allows one more (the oldest counted entry's stamp + window). Entries
        stamped at or before `at - window` of these numbers may be dropped."""

    async def release(self, call_ids: list[ObjectId], token: str) -> None:
        """Remove the entries of these calls made under `token` (a claim that did not happen; idempotent)."""

    async def count(self, workspace_id: ObjectId, number: str, since: dt.datetime) -> int:
        """Entries of the number stamped after `since` (operators and tests)."""

    async def purge(self, before: dt.datetime) -> int:
        """Drop every entry stamped at or before `before` (the reaper: numbers not dialled since). How many."""
