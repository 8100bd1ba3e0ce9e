"""The `calls` collection: every query on calls, for the CallRepo port (see dialer/ports/).

Indexes (declared in indexes.py) and the queries they serve:
- `active_key` (unique, sparse): one waiting or in-flight call per callee of a batch (enqueue).
- `batch_status_due_id` (batchId, status, nextAttemptAt, _id): `due` asks for
  {batchId, status: queued, nextAttemptAt <= now} sorted by (nextAttemptAt, _id). Equality on the
  first two keys, then a range on the third whose index order is also the sort order: the scan starts
  at the batch's earliest queued call and walks the index in (nextAttemptAt, _id) order, stopping
  after `limit` entries or at the first key past `now`. Calls not yet due sort after every due one,
  so the scan never touches them. The same index answers `next_due_at` (its first entry),
  `has_waiting` / `has_active` (an indexed find_one with status $in) and pages filtered by status.
- `batch_id` (batchId, _id): pages without a status filter (and the recounts: calls_counters.py).
- `status_lease` (status, leaseUntil): the reaper's expired leases.
- `provider_call` (providerCallId, sparse: calls that reached the provider): `held_provider_ids`.
The dispatcher's claims and their hand-backs: calls_for_claims.py; operators', chains', the do-not-call
list's and the counters' queries: the other calls_*.py modules, all mixed into MongoCalls.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any, Iterable

from bson import ObjectId
from bson.errors import InvalidDocument
from pymongo import InsertOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from dialer.core.machine import FINISH, PROGRESS_MOVES, RETRY_LATER
from dialer.core.records import PlannedCall
from dialer.core.statuses import IN_FLIGHT_VALUES, WAITING_VALUES, CallStatus
from dialer.core.webhook_events import call_event
from dialer.ports import ChunkResult, Finish, active_key, placed_entry
from dialer.store.mongo.calls_for_chains import ChainCalls
from dialer.store.mongo.calls_for_claims import CLAIM_FIELDS, ClaimCalls
from dialer.store.mongo.calls_counters import CounterCalls
from dialer.store.mongo.calls_for_dnc import DncCalls
from dialer.store.mongo.calls_for_operators import OperatorsCalls
from dialer.store.mongo.counters import CounterBuffer
from dialer.store.mongo.documents import DUPLICATE_KEY, normalise, unavailable
from dialer.store.mongo.outbox import outbox

log = logging.getLogger("dialer.store.calls")
MAX_ROUNDS = 3
DIALING = CallStatus.DIALING.value
BEFORE_FIELDS = {"batchId": 1, "status": 1, "outcome": 1, "attempts": 1}  # what the counters need to know
FINISH_FIELDS = {**BEFORE_FIELDS, "group": 1}  # and the chaining group a finished call belongs to


class MongoCalls(ClaimCalls, OperatorsCalls, ChainCalls, DncCalls, CounterCalls):
    tallies_exact = False  # a transition and its counters' increment are two writes

    def __init__(self, collection: Any, counters: CounterBuffer, batches: Any = None, dnc: Any = None,
                 ledger: Any = None) -> None:
        self.c = collection
        self.counters = counters
        # MongoBatches, MongoDnc: what a claim reads after its write; MongoLedger: the reservation before it.
        self._batches, self._dnc, self._ledger = batches, dnc, ledger
        self._retry_walks: dict = {}

    # ---- ingestion -----------------------------------------------------------------------------
    async def enqueue(self, batch: dict, chunk: list[PlannedCall], now: dt.datetime) -> ChunkResult:
        result = ChunkResult()
        pending = chunk
        for _ in range(MAX_ROUNDS):
            try:
                pending = await self._round(batch, pending, result, now)
            except PyMongoError as exc:
                result.error = f"database error: {type(exc).__name__}"  # its text may quote documents
                return result
            except (InvalidDocument, OverflowError) as exc:  # validation should have caught it
                result.error = f"a record cannot be stored: {type(exc).__name__}"
                return result
            if not pending:
                return result
        result.error = f"{len(pending)} records kept racing with other writers; resend them"
        return result

    async def _round(self, batch: dict, chunk: list[PlannedCall], result: ChunkResult,
                     now: dt.datetime) -> list[PlannedCall]:
        """One read and one bulk write; returns the records that lost a race and must go round again."""
        batch_id = batch["_id"]
        keys = [active_key(batch_id, c.e164, c.extension) for c in chunk]
        existing = {doc["activeKey"]: doc
                    async for doc in self.c.find({"activeKey": {"$in": keys}}, {"activeKey": 1, "status": 1})}
        token = secrets.token_hex(8)
        ops: list = []
        op_calls: list[tuple[PlannedCall, ObjectId, bool]] = []  # (call, id, is_insert)
        for call, key in zip(chunk, keys):
            found = existing.get(key)
            if found is None:
                call_id = call.call_id or ObjectId()
                ops.append(InsertOne(new_call(batch, call, call_id, key, now)))
                op_calls.append((call, call_id, True))
            elif found["status"] in WAITING_VALUES:
                ops.append(UpdateOne(
                    {"_id": found["_id"], "status": {"$in": WAITING_VALUES}},
                    {"$set": {"variables": call.variables, "input.phoneNumber": call.raw_phone,
                              "extension": call.extension, "timezones": list(call.zones),
                              "zoneSource": call.zone_source, "updatedAt": now, "writeToken": token,
                              **({"meta": call.meta} if call.meta is not None else {})},
                     "$max": {"nextAttemptAt": call.earliest}}))
                op_calls.append((call, found["_id"], False))
            else:
                result.in_flight.append({"phoneNumber": call.e164, "callId": str(found["_id"]),
                                         "status": found["status"]})
        if not ops:
            return []
        failed_ops: set[int] = set()
        retry: list[PlannedCall] = []
        try:
            write = await self.c.bulk_write(ops, ordered=False)
            matched = write.matched_count
        except BulkWriteError as exc:
            matched = exc.details.get("nMatched", 0)
            for err in exc.details.get("writeErrors", []):
                failed_ops.add(err["index"])
                if err.get("code") == DUPLICATE_KEY:
                    retry.append(op_calls[err["index"]][0])  # another writer inserted it first
                elif result.error is None:
                    result.error = f"database error: code {err.get('code')}"
        updates = [cid for i, (_, cid, ins) in enumerate(op_calls) if not ins and i not in failed_ops]
        missed: set[ObjectId] = set()
        if matched < len(updates):
            # Some waiting calls were claimed by a dispatcher meanwhile: find which, and go round again.
            applied = {d["_id"] async for d in self.c.find({"_id": {"$in": updates}, "writeToken": token}, {"_id": 1})}
            missed = {cid for cid in updates if cid not in applied}
        for i, (call, call_id, is_insert) in enumerate(op_calls):
            if i in failed_ops:
                continue
            if call_id in missed:
                retry.append(call)
                continue
            result.call_ids.append(str(call_id))
            if is_insert:
                self.counters.change(batch_id, None, (CallStatus.QUEUED.value, None, 0))
                result.inserted += 1
            else:
                result.updated += 1
        return retry

    # ---- reading back --------------------------------------------------------------------------
    @unavailable
    async def get(self, call_id: ObjectId) -> dict | None:
        return normalise(await self.c.find_one({"_id": call_id}))

    @unavailable
    async def page(self, batch_id: ObjectId, statuses: list[str] | None, after: ObjectId | None,
                   limit: int) -> list[dict]:
        flt: dict = {"batchId": batch_id}
        if statuses:
            flt["status"] = {"$in": statuses}
        if after is not None:
            flt["_id"] = {"$gt": after}
        return [normalise(d) for d in await self.c.find(flt).sort("_id", 1).limit(limit).to_list(None)]

    # ---- the dispatcher ------------------------------------------------------------------------
    @unavailable
    async def due(self, batch_id: ObjectId, now: dt.datetime, limit: int) -> list[dict]:
        docs = await self.c.find(
            {"batchId": batch_id, "status": CallStatus.QUEUED.value, "nextAttemptAt": {"$lte": now}},
            {"phoneNumber": 1, "timezones": 1, "attempts": 1, "outcome": 1, "extension": 1, "providerErrors": 1,
             "nextAttemptAt": 1, "batchId": 1},
        ).sort([("nextAttemptAt", 1), ("_id", 1)]).limit(limit).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def due_many(self, wanted: dict[ObjectId, int], now: dt.datetime
                       ) -> dict[ObjectId, tuple[list[dict], dt.datetime | None]]:
        """One query per batch (a limit per batch has no single-query form that uses the index)."""
        out = {}
        for batch_id, limit in wanted.items():
            if limit <= 0:
                continue
            due = await self.due(batch_id, now, limit)
            later = None
            if len(due) < limit:
                doc = await self.c.find_one({"batchId": batch_id, "status": CallStatus.QUEUED.value,
                                             "nextAttemptAt": {"$gt": now}}, {"nextAttemptAt": 1},
                                            sort=[("nextAttemptAt", 1), ("_id", 1)])
                later = None if doc is None else normalise(doc)["nextAttemptAt"]
            out[batch_id] = (due, later)
        return out

    @unavailable
    async def next_due_at(self, batch_id: ObjectId) -> dt.datetime | None:
        doc = await self.c.find_one({"batchId": batch_id, "status": CallStatus.QUEUED.value},
                                    {"nextAttemptAt": 1}, sort=[("nextAttemptAt", 1), ("_id", 1)])
        return None if doc is None else normalise(doc)["nextAttemptAt"]

    @unavailable
    async def has_active(self, batch_id: ObjectId) -> bool:
        return await self.c.find_one({"batchId": batch_id, "status": {"$in": WAITING_VALUES + IN_FLIGHT_VALUES}},
                                     {"_id": 1}) is not None

    @unavailable
    async def active_among(self, batch_ids: list[ObjectId]) -> set[ObjectId]:
        if not batch_ids:
            return set()
        found = await self.c.distinct("batchId", {"batchId": {"$in": list(batch_ids)},
                                                  "status": {"$in": WAITING_VALUES + IN_FLIGHT_VALUES}})
        return set(found)

    @unavailable
    async def has_waiting(self, batch_id: ObjectId) -> bool:
        return await self.c.find_one({"batchId": batch_id, "status": {"$in": WAITING_VALUES}}, {"_id": 1}) is not None

    @staticmethod
    def _match(call_id: ObjectId, token: str | None, provider_call_id: str | None) -> dict:
        match: dict = {"_id": call_id}
        if token:
            match["claimToken"] = token
        if provider_call_id:
            # The event may arrive before the dispatcher recorded the provider's id: accept it then.
            match["$or"] = [{"providerCallId": provider_call_id}, {"providerCallId": {"$exists": False}}]
        return match

    @unavailable
    async def progress(self, call_id: ObjectId, token: str | None, provider_call_id: str | None, to: str,
                       lease_until: dt.datetime, entry: dict, answered_by: str | None, now: dt.datetime) -> bool:
        move = PROGRESS_MOVES[CallStatus(to)]
        before = await self.c.find_one_and_update(
            {**self._match(call_id, token, provider_call_id), "status": {"$in": move.source_values}},
            {"$set": {"status": to, "updatedAt": now, "leaseUntil": lease_until,
                      **({"providerCallId": provider_call_id} if provider_call_id else {}),
                      **({"answeredBy": answered_by} if answered_by else {})},
             "$push": {"history": entry, **outbox(call_event(DIALING, to, None), now)}}, projection=BEFORE_FIELDS)
        if before is None:
            return False
        self._moved(before, to, before.get("outcome"))
        return True

    @unavailable
    async def record_provider_id(self, call_id: ObjectId, token: str | None, provider_call_id: str,
                                 entry: dict | None) -> bool:
        flt = {"_id": call_id, "providerCallId": {"$exists": False}, "status": {"$in": IN_FLIGHT_VALUES},
               **({"claimToken": token} if token else {})}
        update: dict = {"$set": {"providerCallId": provider_call_id}}
        if entry is not None:
            update["$push"] = {"history": entry}
        return (await self.c.update_one(flt, update)).modified_count == 1

    @unavailable
    async def finish(self, call_id: ObjectId, token: str | None, provider_call_id: str | None, finish: Finish,
                     now: dt.datetime) -> tuple[str, ObjectId] | None:
        flying = {**self._match(call_id, token, None), "status": {"$in": FINISH.source_values}}
        # Recorded placement (the common case) first; else the call ended before the dispatcher recorded its
        # placement (a busy line answers in seconds), and the placement goes in the history before the end.
        recorded = [({}, [])] if not provider_call_id else [
            ({"providerCallId": provider_call_id}, []),
            ({"providerCallId": {"$exists": False}}, [placed_entry(now, provider_call_id)])]
        if finish.retry_at is not None:
            for match, first in recorded:
                before = await self.c.find_one_and_update(
                    {**flying, **match, "status": {"$in": RETRY_LATER.source_values},
                     "attempts": {"$lt": finish.max_attempts}},
                    {"$set": {"status": CallStatus.QUEUED.value, "outcome": finish.outcome, "updatedAt": now,
                              "nextAttemptAt": finish.retry_at},
                     # The next attempt is a new provider call: forget this one's id.
                     "$unset": {**CLAIM_FIELDS, "providerCallId": "", "answeredBy": ""},
                     "$push": {"history": {"$each": [*first, {**finish.entry, "result": "retry"}]},
                               **outbox("call.retry_scheduled", now)}},
                    projection=FINISH_FIELDS)
                if before is not None:
                    self._moved(before, CallStatus.QUEUED.value, finish.outcome)
                    return "retry", before["batchId"], before.get("group")
        for match, first in recorded:
            before = await self.c.find_one_and_update(
                {**flying, **match},
                {"$set": {"status": finish.final, "outcome": finish.outcome, "updatedAt": now, "finishedAt": now,
                          **({"providerCallId": finish.provider_call_id} if finish.provider_call_id else {}),
                          **({"duration": finish.duration} if finish.duration is not None else {})},
                 "$unset": {**CLAIM_FIELDS, "activeKey": ""},
                 "$push": {"history": {"$each": [*first, {**finish.entry, "result": finish.outcome}]},
                           **outbox(call_event(DIALING, finish.final, finish.outcome), now)}},
                projection=FINISH_FIELDS)
            if before is not None:
                self._moved(before, finish.final, finish.outcome)
                return "final", before["batchId"], before.get("group")
        return None

    def _moved(self, before: dict, status: str, outcome: str | None) -> None:
        attempts = before.get("attempts", 0)
        self.counters.change(before["batchId"], (before["status"], before.get("outcome"), attempts),
                             (status, outcome, attempts))

    # ---- the reaper ----------------------------------------------------------------------------
    @unavailable
    async def expired(self, now: dt.datetime, limit: int) -> list[dict]:
        docs = await self.c.find({"status": {"$in": IN_FLIGHT_VALUES}, "leaseUntil": {"$lt": now}}
                                 ).sort("leaseUntil", 1).limit(limit).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def take_for_reconciliation(self, call: dict, lease_until: dt.datetime, by: str) -> dict | None:
        doc = await self.c.find_one_and_update(
            {"_id": call["_id"], "leaseUntil": call["leaseUntil"], "status": call["status"]},
            {"$set": {"leaseUntil": lease_until, "claimedBy": by}}, return_document=ReturnDocument.AFTER)
        return normalise(doc)

    @unavailable
    async def held_provider_ids(self, provider_call_ids: Iterable[str]) -> set[str]:
        sids = sorted(set(provider_call_ids))
        if not sids:
            return set()
        docs = await self.c.find({"providerCallId": {"$in": sids}}, {"_id": 0, "providerCallId": 1}).to_list(None)
        return {d["providerCallId"] for d in docs}


def new_call(batch: dict, call: PlannedCall, call_id: ObjectId, key: str, now: dt.datetime) -> dict:
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
        **({"meta": call.meta} if call.meta is not None else {}),
    }
