"""IdempotencyRepo: the records that let a retried write answer as the first one did."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol


class IdempotencyRepo(Protocol):
    """Records `{_id: "<owner>:<SHA-256 hex of the key>", format: 2, state: running | done, claimedUntil,
    expiresAt, scope, fingerprint, ids, code?, body?}`, `body` the answer sealed (dialer/core/sealed_answers.py):
    the repository stores what it is given and never sees a key or an answer in plain. Records of the first
    format (`_id` "<owner>:<key>", `body` {text, headers} in plain, no `format`) are converted by each store's
    upgrade. Expiry is the caller's (injected clock): the repository never deletes on its own."""

    async def insert(self, record: dict) -> bool:
        """False when a record with this _id exists."""

    async def get(self, record_id: str) -> dict | None: ...

    async def replace_if(self, record_id: str, expect: dict[str, Any], record: dict) -> bool:
        """Replace the record if each field in `expect` still has that value (compare-and-set)."""

    async def finish(self, record_id: str, code: int, body: dict) -> None:
        """state = done with the answer to replay."""

    async def release(self, record_id: str) -> None:
        """Delete the record if it is still running."""

    async def purge(self, now: dt.datetime) -> int:
        """Delete the records whose expiresAt <= now; how many."""
