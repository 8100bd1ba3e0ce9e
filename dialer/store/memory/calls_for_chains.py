"""The in-memory calls' methods for contact chaining (the enrollment face): writing planned calls under
their own ids, reading a group, activating and skipping held calls, the agent's verdict. Part of
MemoryCalls (calls.py); synchronous inside, so atomic on the event loop, every status change checked
against the state machine. Index: `_groups` (call_index.py).
"""

from __future__ import annotations

import datetime as dt
import gc

from bson import ObjectId

from dialer.core.records import PlannedCall
from dialer.core.statuses import CallStatus
from dialer.ports import active_key
from dialer.store.memory._common import clone, copy_call, new_doc, utc
from dialer.store.memory.call_index import CallIndexes

HELD = CallStatus.HELD.value
QUEUED = CallStatus.QUEUED.value
GROUP_FIELDS = ("_id", "status", "outcome", "duration", "answeredBy", "verdict", "finishedAt", "group",
                "nextAttemptAt")


class ChainCalls(CallIndexes):
    async def insert_new(self, batch: dict, chunk: list[PlannedCall], now: dt.datetime) -> int:
        now = utc(now)
        written = 0
        for call in chunk:
            cid: ObjectId = call.call_id
            key = active_key(batch["_id"], call.e164, call.extension) + call.key_suffix
            if cid.binary in self._docs or key in self._active:
                continue  # written by an earlier run of this intake (or the callee is already waiting)
            doc = new_doc(batch["_id"], batch["workspaceId"], call, cid, key, HELD if call.held else QUEUED,
                          utc(call.earliest), now)
            if call.group is not None:
                doc["group"] = clone(call.group)
                self._groups.setdefault((batch["_id"], call.group["key"]), []).append(cid.binary)
            self._docs[cid.binary] = doc
            self._index(doc)
            written += 1
        if written:
            gc.freeze()  # as enqueue does: stored calls live long
        return written

    def _group_docs(self, batch_id: ObjectId, key: str) -> list[dict]:
        return [self._docs[cid] for cid in self._groups.get((batch_id, key), ()) if cid in self._docs]

    async def group(self, batch_id: ObjectId, key: str) -> list[dict]:
        return [{name: clone(doc[name]) for name in GROUP_FIELDS if name in doc}
                for doc in self._group_docs(batch_id, key)]

    async def held_groups(self, batch_id: ObjectId, limit: int) -> list[str]:
        b = self._batches.get(batch_id)
        keys: dict[str, None] = {}
        for cid in (b.by_status.get(HELD) or ()) if b is not None else ():
            keys[self._docs[cid]["group"]["key"]] = None
            if len(keys) >= limit:
                break
        return list(keys)

    async def activate(self, call_id: ObjectId, now: dt.datetime, entry: dict) -> bool:
        doc = self._doc(call_id)
        if doc is None or doc["status"] != HELD:
            return False
        now = utc(now)
        target = self._check(doc, QUEUED)
        self._unindex(doc)
        doc["status"] = target
        doc["nextAttemptAt"] = max(now, doc.get("nextAttemptAt") or now)
        doc["updatedAt"] = now
        self._push(doc, entry)
        self._index(doc)
        return True

    async def skip_held(self, batch_id: ObjectId, key: str, now: dt.datetime, entry: dict) -> int:
        now = utc(now)
        done = 0
        for doc in self._group_docs(batch_id, key):
            if doc["status"] == HELD:
                self._withdraw(doc, CallStatus.SKIPPED.value, now, entry)
                done += 1
        return done

    async def record_verdict(self, call_id: ObjectId, verdict: dict, now: dt.datetime) -> dict | None:
        doc = self._doc(call_id)
        if doc is None:
            return None
        doc["verdict"] = clone(verdict)  # not indexed
        self._push(doc, {"at": utc(now), "event": "verdict", "successful": verdict.get("successful")})
        return copy_call(doc)
