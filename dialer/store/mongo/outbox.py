"""The MongoDB outbox: an event is pushed into the changed document itself, in the same update as the
change (`$push: {outbox: {id, type, at}}`), since the repositories write without multi-document
transactions; the relay (webhooks.py) copies it into `webhook_messages` under ids made from the event's,
then `$pull`s it: one message per change and endpoint, delivered at least once.

An event's id is its entry's id followed by its document's (one update may mark many documents with one
entry, as skip_held does). The relay renders the document as it reads then, a moment after the change.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId

from dialer.ports import OutboxEvent
from dialer.store.mongo.documents import aware, normalise

OUTBOX_COLLECTIONS = {"call": "calls", "batch": "batches", "intake": "intakes"}  # kind -> collection
PENDING = {"outbox.id": {"$exists": True}}  # served by each collection's sparse `outbox` index


def outbox(type_: str | None, now: dt.datetime) -> dict:
    """The `$push` clause recording one event of this type (none for a change that yields no event)."""
    return {"outbox": {"id": ObjectId(), "type": type_, "at": now}} if type_ else {}


async def pending_events(db: Any, limit: int) -> list[OutboxEvent]:
    events: list[OutboxEvent] = []
    for kind, name in OUTBOX_COLLECTIONS.items():
        async for doc in db[name].find(PENDING).limit(limit):
            entries = doc.pop("outbox", [])
            doc = normalise(doc)
            doc.pop("calls", None)  # an intake's planned calls (a blob): not part of any event
            events += [OutboxEvent(f"{e['id']}{doc['_id']}", kind, e["type"], aware(e["at"]), doc) for e in entries]
    events.sort(key=lambda e: e.id)
    return events[:limit]


async def drop_events(db: Any, events: list[OutboxEvent]) -> None:
    for event in events:
        await db[OUTBOX_COLLECTIONS[event.kind]].update_one(
            {"_id": event.doc["_id"]}, {"$pull": {"outbox": {"id": ObjectId(event.id[:24])}}})
