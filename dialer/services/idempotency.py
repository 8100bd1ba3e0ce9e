"""Idempotency-Key: the first request with a key runs; retries with that key get its stored response.

The key alone dedupes (not the payload), per workspace. A key is claimed atomically by inserting a
document whose _id is (workspace, key): of two concurrent requests only one insert succeeds, the
other gets 409 until the first has finished. A claim whose request crashed expires after
`CLAIM_SECONDS` so the key is not stuck; a request that failed with a 5xx releases its key.

Expiry follows the injected clock, never the database's: a record whose `expiresAt` has passed by
`clock.now()` is treated as absent (and taken over by the next request with its key), and `purge()`
deletes such records. No TTL index: MongoDB's (and mongomock's) TTL monitor runs on the machine's
real clock, which is not the engine's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dialer.core.clock import Clock
from dialer.ports import IdempotencyRepo

MAX_KEY_LENGTH = 255
CLAIM_SECONDS = 600


@dataclass(frozen=True)
class StoredResponse:
    code: int
    body: dict


class KeyInUse(Exception):
    """Another request with this key is still running."""


class KeyUsedElsewhere(Exception):
    """The key was used for another kind of request (another route, or a CSV upload into another batch):
    replaying that answer here would claim what did not happen here."""


class Idempotency:
    def __init__(self, repo: IdempotencyRepo, clock: Clock, ttl_seconds: int) -> None:
        self.repo = repo
        self.clock = clock
        self.ttl = dt.timedelta(seconds=ttl_seconds)

    @staticmethod
    def check_key(key: str) -> str | None:
        if not all(" " <= ch <= "~" for ch in key):  # header bytes beyond ASCII arrive surrogate-escaped
            return "Idempotency-Key must be printable ASCII"
        if not key.strip():
            return "Idempotency-Key is empty"
        if len(key) > MAX_KEY_LENGTH:
            return f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters"
        return None

    async def claim(self, workspace_id, key: str, scope: str = "") -> StoredResponse | None:
        """None: this request owns the key and must run. A StoredResponse: replay it. KeyInUse: wait.
        KeyUsedElsewhere: the key belongs to a request of another `scope` (route and target)."""
        now = self.clock.now()
        doc_id = f"{workspace_id}:{key}"
        claim = {"_id": doc_id, "state": "running", "claimedUntil": now + dt.timedelta(seconds=CLAIM_SECONDS),
                 "expiresAt": now + self.ttl, "scope": scope}
        if await self.repo.insert(claim):
            return None
        doc = await self.repo.get(doc_id)
        if doc is None:  # purged between the two calls
            return await self.claim(workspace_id, key, scope)
        if doc["expiresAt"] <= now:
            # Expired by our clock: the key is free again; take it over unless another request just did.
            if await self.repo.replace_if(doc_id, {"expiresAt": doc["expiresAt"]}, claim):
                return None
            raise KeyInUse(key)
        if doc.get("scope", scope) != scope:
            raise KeyUsedElsewhere(key)
        if doc["state"] == "done":
            return StoredResponse(doc["code"], doc["body"])
        if doc["claimedUntil"] < now:
            if await self.repo.replace_if(doc_id, {"state": "running", "claimedUntil": doc["claimedUntil"]}, claim):
                return None
        raise KeyInUse(key)

    async def finish(self, workspace_id, key: str, code: int, body: dict) -> None:
        await self.repo.finish(f"{workspace_id}:{key}", code, body)

    async def purge(self) -> int:
        """Delete the records that have expired by the injected clock."""
        return await self.repo.purge(self.clock.now())

    async def release(self, workspace_id, key: str) -> None:
        await self.repo.release(f"{workspace_id}:{key}")
