"""Batch counters kept by the call transitions themselves, for the MongoDB backend.

Each call transition knows the call's (status, outcome, attempts) before and after; the difference is
added to the batch document's `tallies` (`tallies.<status>:<outcome>.{calls, dialled, attempts}`), so
reading a batch's counters is one document read whatever its size. The increments are written behind:
gathered per batch and flushed in one bulk write at most `interval` seconds after the first (and
before this process reads counters, and on close). A crash can lose the last interval's increments;
`recount` (the reconciliation job, dialer/services/counters.py) finds and repairs such drift.

An increment is never applied twice. When a flush fails, only the increments known not to be written
are kept for the next one: all of them when nothing was sent, those of the ops a BulkWriteError names
when it failed in part. After a timeout or a lost connection the outcome is unknown (the server may
have applied any of them): none are kept, and the reconciliation repairs what was lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne

from dialer.ports import Tally
from dialer.store.mongo.documents import refused, unordered

log = logging.getLogger("dialer.store.counters")

State = tuple[str, "str | None", int]  # (status, outcome, attempts) of a call


def tally_key(status: str, outcome: str | None) -> str:
    return f"{status}:{outcome or ''}"


def tallies_of(doc: dict | None) -> list[Tally]:
    out = []
    for key, value in ((doc or {}).get("tallies") or {}).items():
        status, _, outcome = key.partition(":")
        if value.get("calls", 0):
            out.append(Tally(status, outcome or None, value.get("calls", 0), value.get("dialled", 0),
                             value.get("attempts", 0)))
    return out


class CounterBuffer:
    def __init__(self, batches: Any, interval: float = 0.5) -> None:
        self.batches = batches
        self.interval = interval
        self._pending: dict[ObjectId, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task | None = None

    def change(self, batch_id: ObjectId, before: State | None, after: State | None) -> None:
        """One call moved from `before` to `after` (None: it did not exist / no longer counts)."""
        inc = self._pending[batch_id]
        for state, sign in ((before, -1), (after, 1)):
            if state is None:
                continue
            status, outcome, attempts = state
            key = tally_key(status, outcome)
            inc[f"tallies.{key}.calls"] += sign
            inc[f"tallies.{key}.dialled"] += sign * (attempts > 0)
            inc[f"tallies.{key}.attempts"] += sign * attempts
        self._arm()

    def add(self, batch_id: ObjectId, increments: dict[str, int]) -> None:
        """Raw increments (the reconciliation's repairs), flushed with the rest."""
        for path, n in increments.items():
            self._pending[batch_id][path] += n
        self._arm()

    def _arm(self) -> None:
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(self.interval, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # what is known unwritten was kept by flush and goes with the next one
            log.warning("counter increments not written", extra={"error": type(exc).__name__})

    async def flush(self) -> None:
        pending, self._pending = self._pending, defaultdict(lambda: defaultdict(int))
        increments = [(batch_id, {k: v for k, v in inc.items() if v}) for batch_id, inc in pending.items()]
        increments = [(batch_id, inc) for batch_id, inc in increments if inc]  # one op each, in this order
        if not increments:
            return
        try:
            error = await unordered(self.batches, [UpdateOne({"_id": b}, {"$inc": inc}) for b, inc in increments])
        except Exception:
            self._keep(increments)  # nothing was sent
            raise
        if error is None:
            return
        failed = refused(error)
        if failed is None:
            log.warning("counter increments may or may not have been written: the reconciliation repairs the "
                        "counters if not", extra={"batches": [str(b) for b, _ in increments],
                                                   "error": type(error).__name__})
        else:
            self._keep([increments[i] for i in sorted(failed)])
        raise error

    def _keep(self, increments: list[tuple[ObjectId, dict[str, int]]]) -> None:
        for batch_id, inc in increments:  # for the next flush
            self.add(batch_id, inc)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()
