"""The SQLite calls' methods for the do-not-call list: a claim whose number was listed since ends unplaced,
and an opt-out withdraws the number's waiting calls. Part of SqliteCalls (calls.py); each method one unit
of work, every status change checked against the state machine (the tallies follow by trigger).
Index: the unique `active_key` finds a callee's waiting call in a batch (its extensions and chaining
turns too: `<key>;ext=...`, `<key>#n`, a GLOB on the key's prefix, served by the same index).
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from bson import ObjectId

from dialer.core.statuses import CallStatus, WAITING_VALUES
from dialer.ports import active_key
from dialer.store.sqlite import call_rows as rows
from dialer.store.sqlite.call_rows import CLAIM_FIELDS, check, load, push
from dialer.store.sqlite.documents import decode, encode, marks, stored

SKIPPED = CallStatus.SKIPPED.value
SUPPRESSED = "suppressed"


def _suppressed(doc: dict, now: dt.datetime, entry: dict) -> None:
    doc["status"] = check(doc, SKIPPED)
    doc.update(outcome=SUPPRESSED, updatedAt=now, finishedAt=now)
    doc.pop("activeKey", None)
    push(doc, {**entry, "result": SUPPRESSED})


class DncCalls:
    db: object

    async def suppress_claimed(self, call_id: ObjectId, token: str, entry: dict, now: dt.datetime) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            doc = load(conn, call_id)
            if (doc is None or doc.get("claimToken") != token or doc["status"] != CallStatus.DIALING.value
                    or "providerCallId" in doc):
                return None
            doc["attempts"] -= 1  # never reached the provider
            for name in CLAIM_FIELDS:
                doc.pop(name, None)
            _suppressed(doc, stored(now), entry)
            rows.save(conn, doc)
            return decode(encode(doc))

        return await self.db.write(work)

    async def suppress_waiting(self, batch_ids: list[ObjectId], e164: str, now: dt.datetime,
                               entry: dict) -> list[dict]:
        def work(conn: sqlite3.Connection) -> list[dict]:
            docs = []
            for batch_id in batch_ids:
                key = active_key(batch_id, e164, None)
                docs += rows.load_where(conn, f"(active_key = ? OR active_key GLOB ?) AND status IN "
                                              f"({marks(WAITING_VALUES)})", (key, f"{key}[;#]*", *WAITING_VALUES))
            for doc in docs:
                _suppressed(doc, stored(now), entry)
            rows.save_many(conn, docs)
            return [decode(encode(d)) for d in docs]

        return await self.db.write(work) if batch_ids else []
