"""Helpers shared by the memory repositories: copying documents in and out, UTC datetimes, new ids."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId


UTC = dt.timezone.utc


def clone(value: Any) -> Any:
    """A copy of a JSON-like value: dicts and lists copied all the way down, everything else shared
    (strings, numbers, datetimes, ObjectIds are immutable)."""
    kind = type(value)
    if kind is dict:
        return {k: (v if type(v) not in (dict, list, tuple) else clone(v)) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) not in (dict, list, tuple) else clone(v) for v in value]
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clone(v) for v in value]
    return value


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """Aware UTC (naive datetimes are taken as UTC, as MongoDB does)."""
    if value is None:
        return None
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def normalised(value: Any) -> Any:
    """A value to keep: a copy, datetimes in UTC."""
    if isinstance(value, dt.datetime):
        return utc(value)
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalised(v) for v in value]
    return value


def copy_call(doc: dict) -> dict:
    """A copy the caller may change freely (history and timezones are kept as tuples: fewer objects
    for the garbage collector to walk; they go out as lists, as MongoDB returns them)."""
    out = dict(doc)
    out["history"] = [clone(e) for e in doc["history"]]
    out["input"] = dict(doc["input"])
    out["variables"] = copy_variables(doc["variables"])
    out["timezones"] = list(doc["timezones"])
    return out


def new_doc(batch_id: ObjectId, workspace_id: ObjectId, call: Any, call_id: ObjectId, key: str, status: str,
            earliest: dt.datetime | None, now: dt.datetime) -> dict:
    """A new call document from a planned call (dialer.core.records.PlannedCall), as both ways of
    writing calls store it (enqueue, insert_new)."""
    doc = {
        "_id": call_id,
        "batchId": batch_id,
        "workspaceId": workspace_id,
        "phoneNumber": call.e164,
        "extension": call.extension,
        "input": {"phoneNumber": call.raw_phone},
        "variables": copy_variables(call.variables),
        "timezones": tuple(call.zones),
        "zoneSource": call.zone_source,
        "status": status,
        "activeKey": key,
        "attempts": 0,
        "nextAttemptAt": earliest,
        "createdAt": now,
        "updatedAt": now,
        "history": (),
    }
    if call.meta is not None:
        doc["meta"] = clone(call.meta)
    return doc


def copy_variables(variables: dict) -> dict:
    copied = dict(variables)
    for value in copied.values():
        if type(value) in NESTED:
            return clone(variables)
    return copied


NESTED = (dict, list, tuple)
