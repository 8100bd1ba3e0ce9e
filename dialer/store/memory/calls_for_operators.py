"""The in-memory calls' methods for operators (the batch lifecycle): claims not yet placed, withdrawing,
retrying and deleting a batch's calls, counters of many batches. Part of MemoryCalls (calls.py); the
same rules hold: synchronous inside, so atomic on the event loop, and every status change checked
against the state machine.
"""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

from dialer.core.statuses import IN_FLIGHT_VALUES, TERMINAL, WAITING_VALUES, CallStatus
from dialer.ports import Tally, active_key
from dialer.store.memory._common import copy_call, utc
from dialer.store.memory.call_index import CallIndexes

QUEUED = CallStatus.QUEUED.value
DIALING = CallStatus.DIALING.value
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)
CLAIM_FIELDS = ("leaseUntil", "claimedBy", "dialAt", "uncertain")


class OperatorsCalls(CallIndexes):
    def _of(self, batch_id: ObjectId, statuses, limit: int | None = None) -> list[dict]:
        """The batch's calls of these statuses (at most `limit`, read from the index, not copied whole)."""
        b = self._batches.get(batch_id)
        if b is None:
            return []
        out: list[dict] = []
        for status in statuses:
            ids = b.by_status.get(status)
            if ids:
                wanted = None if limit is None else limit - len(out)
                out += [self._docs[cid] for cid in ids.islice(0, wanted)]
            if limit is not None and len(out) >= limit:
                break
        return out

    async def unplaced(self, batch_id: ObjectId) -> int:
        return sum(1 for doc in self._of(batch_id, (DIALING,)) if "providerCallId" not in doc and not doc.get("uncertain"))

    async def withdraw(self, batch_id: ObjectId, now: dt.datetime, entry: dict, limit: int) -> int:
        now = utc(now)
        done = 0
        for doc in self._of(batch_id, WAITING_VALUES, limit):
            self._withdraw(doc, CallStatus.CANCELLED.value, now, entry)
            done += 1
        return done

    async def in_flight(self, batch_id: ObjectId) -> list[dict]:
        return [copy_call(doc) for doc in self._of(batch_id, IN_FLIGHT_VALUES)]

    async def retry_finished(self, batch_id: ObjectId, outcomes: list[str], now: dt.datetime, entry: dict,
                             limit: int) -> tuple[int, int]:
        now, wanted = utc(now), set(outcomes)
        retried = busy = 0
        for doc in self._of(batch_id, sorted(TERMINAL_VALUES)):
            if retried + busy >= limit:
                break
            if doc.get("outcome") not in wanted or doc.get("retriedAt") == now or "group" in doc:
                continue  # a chained contact's group ran its course: it is not redialled by a retry
            key = active_key(doc["batchId"], doc["phoneNumber"], doc.get("extension"))
            if key in self._active:  # the callee has a newer call waiting or in flight
                busy += 1
                doc["retriedAt"] = now  # counted once per retry request
                continue
            target = self._check(doc, QUEUED)
            self._unindex(doc)
            doc.update(status=target, nextAttemptAt=now, updatedAt=now, activeKey=key, retriedAt=now)
            doc.pop("finishedAt", None)
            self._push(doc, entry)
            self._index(doc)
            retried += 1
        return retried, busy

    async def bring_forward(self, batch_id: ObjectId, now: dt.datetime) -> int:
        b = self._batches.get(batch_id)
        if b is None:
            return 0
        now = utc(now)
        later = [self._docs[cid] for at, cid in b.queued.irange((now, b"\xff" * 12), None, inclusive=(False, True))]
        for doc in later:
            self._unindex(doc)
            doc["nextAttemptAt"] = now
            self._index(doc)
        return len(later)

    async def delete_calls(self, batch_id: ObjectId, limit: int) -> int:
        b = self._batches.get(batch_id)
        if b is None:
            return 0
        docs = self._of(batch_id, list(b.by_status), limit)
        for doc in docs:
            self._unindex(doc)
            del self._docs[doc["_id"].binary]
            if "group" in doc:
                self._groups.pop((batch_id, doc["group"]["key"]), None)
        if not any(b.by_status.values()):
            del self._batches[batch_id]
        return len(docs)

    async def tallies_many(self, batch_ids: list[ObjectId]) -> dict[ObjectId, list[Tally]]:
        out = {}
        for batch_id in batch_ids:
            b = self._batches.get(batch_id)
            out[batch_id] = [] if b is None else [
                Tally(status, outcome, *counts)
                for (status, outcome), counts in sorted(b.tally.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]
        return out
