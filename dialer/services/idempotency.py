"""Idempotency-Key: the first request with a key runs; a retry with that key gets its answer, as it was sent.

A key belongs to an `owner` (a workspace, or "admin" for the admin token's routes: their keys never
meet) and to one request: its `scope` (the route and its target, e.g. "POST /api/call/batches/<id>/retry")
and its `fingerprint` (of the body, see `fingerprint_of`). The same key sent with another scope or another
body is refused (KeyUsedElsewhere, saying which): replaying the first answer there would claim what did
not happen there. `once` is the whole rule, for any route (dialer/api/idempotent.py puts it on a route
in one line).

A key is claimed atomically by inserting a record whose _id is "<owner>:<SHA-256 hex of the key>"
(dialer/core/sealed_answers.py: the store never holds the key, nor an answer it can read; every answer
is sealed under a key derived from the Idempotency-Key): of two concurrent requests only one insert
succeeds, the other gets KeyInUse until the first has finished. The claim is held for `claim_seconds`
and renewed while its request runs, so the claim of a request whose process died (kill -9, a lost
machine) runs out within `claim_seconds` and a retry with the key takes it over.
The `Claim` a request runs under names the ids its writes may take (`Claim.object_id`), the same for a
request that takes over a dead one's key: a write the dead one made is found again, not made twice.

An answer that does not open under the key asking for it (its record altered in the store, or moved there
from another key's) is refused as AnswerUnreadable, never replayed and never run again: the first request
with the key was done, and a new key is the way to do it again knowingly.

What is kept (`keeps`): every answer below 500 but a 409. A 4xx is the answer to that request (a
retry of the same body would be refused the same way), so it is replayed, as Stripe does; a 409 is a
conflict of the moment (the batch's status, for one), so a retry runs again and sees the state as it
is then. A 5xx, or a request that raised, releases the key: nothing (or nothing whole) was done, and
a retry with the key runs afresh.

Expiry follows the injected clock, never the database's: a record whose `expiresAt` has passed by
`clock.now()` is treated as absent (and taken over by the next request with its key), and `purge()`
deletes such records. No TTL index: MongoDB's (and mongomock's) TTL monitor runs on the machine's
real clock, which is not the engine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

import orjson
from bson import ObjectId

from dialer.core import sealed_answers
from dialer.core.clock import Clock
from dialer.ports import IdempotencyRepo, StoreUnavailable

log = logging.getLogger("dialer.idempotency")
MAX_KEY_LENGTH = 255
CLAIM_SECONDS = 30.0  # default; renewed every third of it while the request runs
CANONICAL_BYTES = 1 << 20  # bodies up to this size are compared as JSON; larger ones byte for byte


@dataclass(frozen=True)
class StoredResponse:
    """An answer as it was sent: its code, its text (a JSON document) and the headers its route set."""

    code: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False  # the stored answer to an earlier request with this key


_CLAIMS = itertools.count(int.from_bytes(os.urandom(4), "big") >> 1)  # from a random start, per process


@dataclass(frozen=True)
class Claim:
    """This request owns its key. `ids`: 8 bytes (the time in seconds, then a counter of the process's
    claims) that prefix the ids its writes may take, kept by a request that takes over the key of one
    whose process died. Ids of later claims sort after, as ObjectIds made later do (enqueue order)."""

    ids: bytes

    @staticmethod
    def new() -> "Claim":
        return Claim(int(time.time()).to_bytes(4, "big") + (next(_CLAIMS) % (1 << 32)).to_bytes(4, "big"))

    def object_id(self, n: int) -> ObjectId:
        """The n-th id of this request's writes: in the order of n, after the ids made before it."""
        return ObjectId(self.ids + n.to_bytes(4, "big"))


class KeyInUse(Exception):
    """Another request with this key is still running."""


class KeyUsedElsewhere(Exception):
    """The key was used for another request: str() says what differs (the route and target, or the body)."""


class AnswerUnreadable(KeyUsedElsewhere):
    """The key was used, but its stored answer does not open under it (the record was altered, or is
    another key's): refused like a key used elsewhere, the first request's work not done again."""


def keeps(code: int) -> bool:
    """Whether an answer with this code is stored and replayed (see the module docstring)."""
    return code < 500 and code != 409


async def fingerprint_of(body: bytes) -> str:
    """A digest of a request's body. A JSON body up to CANONICAL_BYTES is read as JSON and written back
    with its keys sorted and no whitespace, so a retry that serialises the same object another way is the
    same request; anything else (a larger body, a CSV file, not JSON) counts byte for byte, hashed in a
    worker thread when large (hashlib lets the event loop run meanwhile)."""
    if len(body) > CANONICAL_BYTES:
        return await asyncio.get_running_loop().run_in_executor(None, _digest, body)
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:  # not JSON, or an integer beyond 64 bits: its bytes, then
        canonical = body
    return _digest(canonical)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Idempotency:
    def __init__(self, repo: IdempotencyRepo, clock: Clock, ttl_seconds: int,
                 claim_seconds: float = CLAIM_SECONDS) -> None:
        self.repo = repo
        self.clock = clock
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self.claim_for = dt.timedelta(seconds=claim_seconds)

    @staticmethod
    def check_key(key: str) -> str | None:
        if not all(" " <= ch <= "~" for ch in key):  # header bytes beyond ASCII arrive surrogate-escaped
            return "Idempotency-Key must be printable ASCII"
        if not key.strip():
            return "Idempotency-Key is empty"
        if len(key) > MAX_KEY_LENGTH:
            return f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters"
        return None

    async def once(self, owner: str, key: str, scope: str, fingerprint: str,
                   work: Callable[[Claim], Awaitable[StoredResponse]]) -> StoredResponse:
        """`work`'s answer, `work` run at most once per (owner, key) while the key lives: a retry gets the
        stored answer (`replayed`). KeyInUse while the first request runs; KeyUsedElsewhere for another
        scope or body. `work` turns its refusals into answers itself (they are kept or not by `keeps`).
        A request whose process died before it answered is run again by the retry that takes its key
        over, under the same Claim (its ids)."""
        claim = await self.claim(owner, key, scope, fingerprint)
        if isinstance(claim, StoredResponse):
            return claim
        try:
            async with self._renewed(sealed_answers.record_id(owner, key), claim):
                answer = await work(claim)
        except BaseException:
            await self.release(owner, key)
            raise
        if not keeps(answer.code):
            await self.release(owner, key)
            return answer
        try:
            await self.finish(owner, key, scope, fingerprint, answer)
        except StoreUnavailable as exc:
            # The work is done; a retry with this key would do it again (its writes found again by
            # their ids, where it has them), which beats a key stuck "in progress".
            log.error("could not store the idempotent answer", extra={"error": type(exc).__name__})
            await self.release(owner, key)
        return answer

    def _record(self, doc_id: str, scope: str, fingerprint: str, claim: Claim, now: dt.datetime) -> dict:
        return {"_id": doc_id, "format": sealed_answers.FORMAT, "state": "running",
                "claimedUntil": now + self.claim_for, "expiresAt": now + self.ttl, "scope": scope,
                "fingerprint": fingerprint, "ids": claim.ids.hex()}

    async def claim(self, owner: str, key: str, scope: str, fingerprint: str) -> StoredResponse | Claim:
        """A Claim: this request owns the key and must run. A StoredResponse: replay it. KeyInUse: wait.
        KeyUsedElsewhere: the key belongs to another request."""
        now = self.clock.now()
        doc_id = sealed_answers.record_id(owner, key)
        claim = Claim.new()
        if await self.repo.insert(self._record(doc_id, scope, fingerprint, claim, now)):
            return claim
        doc = await self.repo.get(doc_id)
        if doc is None:  # purged between the two calls
            return await self.claim(owner, key, scope, fingerprint)
        if doc["expiresAt"] <= now:
            # Expired by our clock: the key is free again; take it over unless another request just did.
            if await self.repo.replace_if(doc_id, {"expiresAt": doc["expiresAt"]},
                                          self._record(doc_id, scope, fingerprint, claim, now)):
                return claim
            raise KeyInUse(key)
        if doc.get("scope") != scope:
            raise KeyUsedElsewhere("another request (another route, target or query)")
        if doc.get("fingerprint") != fingerprint:
            raise KeyUsedElsewhere("another body")
        if doc["state"] == "done":
            return self._replayed(owner, key, doc)
        if doc["claimedUntil"] < now:
            # Its request died unanswered: take it over, under its ids (what it wrote is found again).
            claim = Claim(bytes.fromhex(doc["ids"])) if doc.get("ids") else claim
            if await self.repo.replace_if(doc_id, {"state": "running", "claimedUntil": doc["claimedUntil"]},
                                          self._record(doc_id, scope, fingerprint, claim, now)):
                log.warning("took over the Idempotency-Key of a request that died unanswered",
                            extra={"scope": scope})
                return claim
        raise KeyInUse(key)

    @staticmethod
    def _replayed(owner: str, key: str, doc: dict) -> StoredResponse:
        try:
            text, headers = sealed_answers.unseal(owner, key, doc.get("scope"), doc.get("fingerprint"),
                                                  doc.get("code"), doc.get("body"))
        except sealed_answers.Unreadable as exc:  # why, never what the record holds nor the key
            log.warning("refused an Idempotency-Key whose stored answer does not open",
                        extra={"scope": doc.get("scope"), "reason": str(exc)})
            raise AnswerUnreadable("a request whose stored answer cannot be read") from None
        return StoredResponse(doc["code"], text, headers, replayed=True)

    @contextlib.asynccontextmanager
    async def _renewed(self, doc_id: str, claim: Claim) -> AsyncIterator[None]:
        """The claim renewed every third of `claim_seconds` while the request runs."""

        async def renew() -> None:
            try:
                while True:
                    await asyncio.sleep(self.claim_for.total_seconds() / 3)
                    doc = await self.repo.get(doc_id)
                    if doc is None or doc["state"] != "running" or doc.get("ids") != claim.ids.hex():
                        return
                    if not await self.repo.replace_if(doc_id, {"state": "running", "claimedUntil": doc["claimedUntil"]},
                                                      {**doc, "claimedUntil": self.clock.now() + self.claim_for}):
                        return
            except StoreUnavailable as exc:  # the next retry may take the key over: its writes are found again
                log.error("could not renew an Idempotency-Key's claim", extra={"error": type(exc).__name__})

        task = asyncio.get_running_loop().create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def finish(self, owner: str, key: str, scope: str, fingerprint: str, answer: StoredResponse) -> None:
        """The answer stored, sealed under the key (bound to its scope, fingerprint and code)."""
        body = sealed_answers.seal(owner, key, scope, fingerprint, answer.code, answer.text, answer.headers)
        await self.repo.finish(sealed_answers.record_id(owner, key), answer.code, body)

    async def purge(self) -> int:
        """Delete the records that have expired by the injected clock."""
        return await self.repo.purge(self.clock.now())

    async def release(self, owner: str, key: str) -> None:
        await self.repo.release(sealed_answers.record_id(owner, key))
