"""Calls as partners read them back: the public view of a call, pages of a batch's calls, and what an
answered call connects to (its agent's destination)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Mapping

from bson import ObjectId

from dialer.core.clock import as_utc, iso
from dialer.core.statuses import BatchStatus, CallStatus
from dialer.ports import BatchRepo, CallRepo, TenancyRepo
from dialer.services.paging import page_query
from dialer.services.tenancy import parse_id

MAX_PAGE = 1000
DEFAULT_PAGE = 100
STATUS_VALUES = {s.value for s in CallStatus}


def _history_time(entry: dict):
    at = entry.get("at")
    return as_utc(at) if at is not None else datetime.min.replace(tzinfo=timezone.utc)


def call_view(call: dict) -> dict:
    return {
        "callId": str(call["_id"]),
        "batchId": str(call["batchId"]),
        "phoneNumber": call["phoneNumber"],
        "extension": call.get("extension"),
        "input": call.get("input", {}),
        "variables": call.get("variables", {}),
        "timezones": call.get("timezones", []),
        "zoneSource": call.get("zoneSource"),
        "status": call["status"],
        "attempts": call.get("attempts", 0),
        "nextAttemptAt": iso(call.get("nextAttemptAt")),
        "providerCallId": call.get("providerCallId"),
        "outcome": call.get("outcome"),
        "duration": call.get("duration"),  # the last attempt's, once it has ended (seconds, as the provider says)
        "answeredBy": call.get("answeredBy"),
        **({"contact": call["meta"]["contact"]} if "contact" in (call.get("meta") or {}) else {}),
        **({"group": call["group"]} if call.get("group") else {}),
        **({"verdict": {**call["verdict"], "at": iso(call["verdict"].get("at"))}} if call.get("verdict") else {}),
        # In time order: the dispatcher records a placement after the fact, with its own time.
        "history": [{**h, "at": iso(h.get("at"))} for h in sorted(call.get("history", []), key=_history_time)],
        "createdAt": iso(call.get("createdAt")),
        "updatedAt": iso(call.get("updatedAt")),
    }


async def list_calls(calls: CallRepo, batch_id: ObjectId, query: Mapping[str, str]) -> dict:
    """A page of calls in enqueue order. Query: status (comma-separated), limit (1-1000), cursor (a callId)."""
    asked = page_query(query, STATUS_VALUES, DEFAULT_PAGE, MAX_PAGE, "callId")
    docs = await calls.page(batch_id, asked.statuses, asked.cursor, asked.limit + 1)
    more = len(docs) > asked.limit
    docs = docs[:asked.limit]
    return {
        "calls": [call_view(d) for d in docs],
        "count": len(docs),
        "nextCursor": str(docs[-1]["_id"]) if more else None,
    }


async def destination(calls: CallRepo, batches: BatchRepo, tenancy: TenancyRepo, call_id: object) -> tuple[dict, dict | None] | None:
    """An answered call and the agent it connects to (None when the call is unknown)."""
    oid = parse_id(call_id)
    call = None if oid is None else await calls.get(oid)
    if call is None:
        return None
    batch = await batches.get(call["batchId"])
    agent = await tenancy.get_agent(batch["agentId"]) if batch else None
    return call, agent


async def withdraw_all(calls: CallRepo, batch_id: ObjectId, now, event: str = "batch_cancelled",
                       chunk: int = 1000) -> int:
    """Every waiting call of the batch -> cancelled, a chunk at a time (letting others in between)."""
    entry, total = {"at": now, "event": event}, 0
    while done := await calls.withdraw(batch_id, now, entry, chunk):
        total += done
        await asyncio.sleep(0)
    return total


async def enqueued_or_withdrawn(calls: CallRepo, batches: BatchRepo, batch_id: ObjectId, now) -> bool:
    """Calls of the batch went back to its queue (a retry, a claim handed back, a provider's refusal, a crash's
    settlement): the batch is stamped so dispatchers elsewhere look again (BatchRepo.note_enqueued), and if it
    was cancelled (or deleted) meanwhile they are withdrawn, or they would wait for ever in a batch that never
    runs again. The status is read by that stamp, after they went back, so a cancel is seen whenever it landed
    (a cancel moves the batch first, then withdraws what waits). True if they were withdrawn so."""
    return await withdraw_unless_open(calls, batch_id, await batches.note_enqueued(batch_id, now), now)


async def withdraw_unless_open(calls: CallRepo, batch_id: ObjectId, status: str | None, now) -> bool:
    """Given the batch's status read after calls joined its queue: withdraw them if it is cancelled or gone."""
    if status is None or status == BatchStatus.CANCELLED.value:
        await withdraw_all(calls, batch_id, now)
        return True
    return False


async def all_calls(calls: CallRepo, batch_id: ObjectId, page_size: int = 1000) -> list[dict]:
    """Every call of the batch, in enqueue order, read a page at a time."""
    out: list[dict] = []
    after = None
    while True:
        page = await calls.page(batch_id, None, after, page_size)
        out += page
        if len(page) < page_size:
            return out
        after = page[-1]["_id"]
