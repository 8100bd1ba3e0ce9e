"""Writing planned calls into a batch, one chunk at a time: one read and one bulk write per chunk.

Rules (README "Enqueueing rules"):
- no active call for the number in the batch -> a new call record (queued);
- a waiting (queued / held) call -> updated in place: its variables are *replaced* by the new record's,
  its time zones refreshed, its next attempt never moved earlier;
- a call in flight -> nothing is written; the number is reported in `inFlight` with the call's id;
- a completed call is history: it has no activeKey, so the number gets a new call record.
Races with other writers (another request, a dispatcher claiming the call) are detected from the
bulk write's result and those records go round again, so nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from dataclasses import dataclass, field

from bson import ObjectId
from bson.errors import InvalidDocument
from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from dialer.core.clock import Clock
from dialer.core.records import PlannedCall
from dialer.core.statuses import WAITING_VALUES, CallStatus
from dialer.store import Store

log = logging.getLogger("dialer.enqueue")
MAX_ROUNDS = 3
DUPLICATE_KEY = 11000


def active_key(batch_id: ObjectId, e164: str) -> str:
    return f"{batch_id}:{e164}"


@dataclass
class ChunkResult:
    call_ids: list[str] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    in_flight: list[dict] = field(default_factory=list)
    error: str | None = None


class CallWriter:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._locks: weakref.WeakValueDictionary[ObjectId, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, batch_id: ObjectId) -> asyncio.Lock:
        lock = self._locks.get(batch_id)
        if lock is None:
            lock = self._locks[batch_id] = asyncio.Lock()
        return lock

    async def write_chunk(self, batch: dict, chunk: list[PlannedCall]) -> ChunkResult:
        result = ChunkResult()
        pending = chunk
        # Serialise this process's writers per batch; other processes are kept honest by the
        # unique activeKey index and the status filters below.
        async with self._lock(batch["_id"]):
            for _ in range(MAX_ROUNDS):
                try:
                    pending = await self._round(batch, pending, result)
                except PyMongoError as exc:
                    # Only the error's type and code: its text may quote documents (numbers, variables).
                    result.error = f"database error: {type(exc).__name__}"
                    log.error("chunk write failed", extra={"batchId": str(batch["_id"]), "error": type(exc).__name__,
                                                           "code": getattr(exc, "code", None)})
                    return result
                except (InvalidDocument, OverflowError) as exc:  # validation should have caught it
                    result.error = f"a record cannot be stored: {type(exc).__name__}"
                    log.error("chunk not storable", extra={"batchId": str(batch["_id"]), "error": type(exc).__name__})
                    return result
                if not pending:
                    return result
        result.error = f"{len(pending)} records kept racing with other writers; resend them"
        return result

    async def _round(self, batch: dict, chunk: list[PlannedCall], result: ChunkResult) -> list[PlannedCall]:
        batch_id = batch["_id"]
        keys = [active_key(batch_id, c.e164) for c in chunk]
        existing = {
            doc["activeKey"]: doc
            async for doc in self.store.calls.find({"activeKey": {"$in": keys}}, {"activeKey": 1, "status": 1})
        }
        now = self.clock.now()
        token = secrets.token_hex(8)
        ops: list = []
        op_calls: list[tuple[PlannedCall, ObjectId, bool]] = []  # (call, id, is_insert)
        for call, key in zip(chunk, keys):
            found = existing.get(key)
            if found is None:
                call_id = ObjectId()
                ops.append(InsertOne(self._new_call(batch, call, call_id, key, now)))
                op_calls.append((call, call_id, True))
            elif found["status"] in WAITING_VALUES:
                ops.append(UpdateOne(
                    {"_id": found["_id"], "status": {"$in": WAITING_VALUES}},
                    {"$set": {"variables": call.variables, "input.phoneNumber": call.raw_phone,
                              "extension": call.extension, "timezones": list(call.zones),
                              "zoneSource": call.zone_source, "updatedAt": now, "writeToken": token},
                     "$max": {"nextAttemptAt": call.earliest}},
                ))
                op_calls.append((call, found["_id"], False))
            else:
                result.in_flight.append({"phoneNumber": call.e164, "callId": str(found["_id"]), "status": found["status"]})
        if not ops:
            return []
        failed_ops: set[int] = set()
        retry: list[PlannedCall] = []
        try:
            write = await self.store.calls.bulk_write(ops, ordered=False)
            matched = write.matched_count
        except BulkWriteError as exc:
            details = exc.details
            matched = details.get("nMatched", 0)
            for err in details.get("writeErrors", []):
                failed_ops.add(err["index"])
                if err.get("code") == DUPLICATE_KEY:
                    retry.append(op_calls[err["index"]][0])  # another writer inserted it first
                elif result.error is None:
                    result.error = f"database error: {err.get('errmsg', 'write error')[:200]}"
        updates = [(i, cid) for i, (_, cid, ins) in enumerate(op_calls) if not ins and i not in failed_ops]
        missed: set[ObjectId] = set()
        if matched < len(updates):
            # Some waiting calls were claimed by a dispatcher meanwhile: find which, and go round again.
            applied = {d["_id"] async for d in self.store.calls.find(
                {"_id": {"$in": [cid for _, cid in updates]}, "writeToken": token}, {"_id": 1})}
            missed = {cid for _, cid in updates if cid not in applied}
        for i, (call, call_id, is_insert) in enumerate(op_calls):
            if i in failed_ops:
                continue
            if call_id in missed:
                retry.append(call)
                continue
            result.call_ids.append(str(call_id))
            if is_insert:
                result.inserted += 1
            else:
                result.updated += 1
        return retry

    @staticmethod
    def _new_call(batch: dict, call: PlannedCall, call_id: ObjectId, key: str, now) -> dict:
        return {
            "_id": call_id,
            "batchId": batch["_id"],
            "workspaceId": batch["workspaceId"],
            "phoneNumber": call.e164,
            "extension": call.extension,
            "input": {"phoneNumber": call.raw_phone},
            "variables": call.variables,
            "timezones": list(call.zones),
            "zoneSource": call.zone_source,
            "status": CallStatus.QUEUED.value,
            "activeKey": key,
            "attempts": 0,
            "nextAttemptAt": call.earliest,
            "createdAt": now,
            "updatedAt": now,
            "history": [],
        }
