"""The indexes of the in-memory calls (dialer/store/memory/calls.py), kept up to date on every change:
`_unindex(doc)` before a stored call changes, `_index(doc)` after; each touches only that call's entries.

- `_active`: activeKey -> _id (enqueue finds the callee's waiting or in-flight call);
- per batch (`_BatchIndex`): `by_status`, status -> sorted ids (pages in _id order, merging the
  lists of the statuses asked for, or of all; has_active / has_waiting); `queued`, sorted
  (nextAttemptAt, _id) of its queued calls (due, next_due_at); `tally`, (status, outcome) ->
  [calls, dialled, attempts] (tallies);
- `_leases`: sorted (leaseUntil, _id) of the in-flight calls (the reaper's `expired`);
- `_groups`: (batchId, group key) -> ids of the group's calls, in seq order (contact chaining; a call's
  group never changes, so only insertion and deletion touch it).
"""

from __future__ import annotations

from bson import ObjectId
from sortedcontainers import SortedList

from dialer.core.machine import call_move_allowed
from dialer.core.statuses import IN_FLIGHT_VALUES, CallStatus
from dialer.store.memory._common import clone

QUEUED = CallStatus.QUEUED.value
IN_FLIGHT = frozenset(IN_FLIGHT_VALUES)


class _BatchIndex:
    """Index keys are the ids' 12 bytes (`ObjectId.binary`): they sort like the ObjectIds, and bytes
    compare and hash in C, ObjectIds in Python."""

    __slots__ = ("by_status", "queued", "tally")

    def __init__(self) -> None:
        self.by_status: dict[str, SortedList] = {}  # status -> _id bytes
        self.queued: SortedList = SortedList()  # (nextAttemptAt, _id bytes) of queued calls
        self.tally: dict[tuple[str, str | None], list[int]] = {}  # -> [calls, dialled, attempts]


class CallIndexes:
    def __init__(self) -> None:
        self._docs: dict[bytes, dict] = {}  # by _id bytes
        self._batches: dict[ObjectId, _BatchIndex] = {}
        self._active: dict[str, bytes] = {}  # activeKey -> _id bytes
        self._leases: SortedList = SortedList()  # (leaseUntil, _id bytes) of in-flight calls
        self._groups: dict[tuple[ObjectId, str], list[bytes]] = {}

    def _doc(self, call_id: ObjectId) -> dict | None:
        return self._docs.get(call_id.binary) if isinstance(call_id, ObjectId) else None

    # ---- indexes -------------------------------------------------------------------------------
    def _batch(self, batch_id: ObjectId) -> _BatchIndex:
        index = self._batches.get(batch_id)
        if index is None:
            index = self._batches[batch_id] = _BatchIndex()
        return index

    def _index(self, doc: dict) -> None:
        b = self._batch(doc["batchId"])
        cid, status = doc["_id"].binary, doc["status"]
        ids = b.by_status.get(status)
        if ids is None:
            ids = b.by_status[status] = SortedList()
        ids.add(cid)
        attempts = doc["attempts"]
        counts = b.tally.get((status, doc.get("outcome")))
        if counts is None:
            counts = b.tally[(status, doc.get("outcome"))] = [0, 0, 0]
        counts[0] += 1
        counts[1] += attempts > 0
        counts[2] += attempts
        if status == QUEUED and doc.get("nextAttemptAt") is not None:
            b.queued.add((doc["nextAttemptAt"], cid))
        elif status in IN_FLIGHT and doc.get("leaseUntil") is not None:
            self._leases.add((doc["leaseUntil"], cid))
        key = doc.get("activeKey")
        if key is not None:
            self._active[key] = cid

    def _unindex(self, doc: dict) -> None:
        b = self._batches[doc["batchId"]]
        cid, status = doc["_id"].binary, doc["status"]
        b.by_status[status].remove(cid)
        pair = (status, doc.get("outcome"))
        counts = b.tally[pair]
        attempts = doc["attempts"]
        counts[0] -= 1
        counts[1] -= attempts > 0
        counts[2] -= attempts
        if counts[0] == 0:
            del b.tally[pair]
        if status == QUEUED and doc.get("nextAttemptAt") is not None:
            b.queued.remove((doc["nextAttemptAt"], cid))
        elif status in IN_FLIGHT and doc.get("leaseUntil") is not None:
            self._leases.remove((doc["leaseUntil"], cid))
        key = doc.get("activeKey")
        if key is not None and self._active.get(key) == cid:
            del self._active[key]

    def _withdraw(self, doc: dict, status: str, now, entry: dict) -> None:
        """A waiting call ends without being dialled (cancelled, or skipped by its group): the WITHDRAW move."""
        target = self._check(doc, status)
        self._unindex(doc)
        doc.update(status=target, outcome=target, updatedAt=now, finishedAt=now)
        doc.pop("activeKey", None)
        self._push(doc, {**entry, "result": target})
        self._index(doc)

    @staticmethod
    def _check(doc: dict, target: str) -> str:
        """A status change, checked against the state machine before anything is touched (a bug guard)."""
        if not call_move_allowed(doc["status"], target):
            raise AssertionError(f"call move {doc['status']} -> {target} is not allowed")
        return target

    @staticmethod
    def _push(doc: dict, entry: dict) -> None:
        doc["history"] = (*doc["history"], clone(entry))
