"""What every MongoDB repository shares: datetimes made aware once, driver errors made StoreUnavailable,
aggregate() on either driver (PyMongo's async aggregate is a coroutine, mongomock-motor's is not), and
unordered bulk writes whose failure may leave part of the write applied (`unordered`, `refused`)."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from typing import Any

from pymongo.errors import BulkWriteError, PyMongoError, ServerSelectionTimeoutError

from dialer.ports import StoreUnavailable

DUPLICATE_KEY = 11000  # the server's code for a write a unique index refused

UTC = dt.timezone.utc


def aware(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def normalise(doc: dict | None) -> dict | None:
    """A stored document as repositories hand it out: every top-level datetime, and the `at` of each
    history entry, timezone-aware UTC (mongomock gives naive UTC, PyMongo tz_aware gives aware)."""
    if doc is None:
        return None
    doc.pop("outbox", None)  # events waiting for the relay (outbox.py): not part of the document's view
    for key, value in doc.items():
        if isinstance(value, dt.datetime):
            doc[key] = aware(value)
    history = doc.get("history")
    if history:
        doc["history"] = [{**h, "at": aware(h.get("at"))} if "at" in h else h for h in history]
    return doc


def unavailable(method):
    """Driver failures leave a repository as StoreUnavailable, named by type only (its text may quote
    documents or the connection string)."""

    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except PyMongoError as exc:
            raise StoreUnavailable(f"database error: {type(exc).__name__}") from exc

    return wrapper


async def aggregate(collection: Any, pipeline: list[dict], **options: Any) -> list[dict]:
    cursor = collection.aggregate(pipeline, **options)
    if inspect.isawaitable(cursor):
        cursor = await cursor
    return await cursor.to_list(None)


async def unordered(collection: Any, ops: list) -> PyMongoError | None:
    """One unordered bulk write. None when every op was applied; otherwise the error, returned (not
    raised) because part of the write may have landed: a BulkWriteError names the ops that were not
    applied (the others were), and after a timeout or a connection lost mid-write the outcome is
    unknown (the server may have applied any part of it). The caller reads back what landed. Raised
    when nothing was sent: no server could be selected (PyMongo reports a retry that could not select
    one with the first attempt's error, so this error always means "never attempted")."""
    try:
        await collection.bulk_write(ops, ordered=False)
    except ServerSelectionTimeoutError:
        raise
    except PyMongoError as exc:
        return exc
    return None


async def applied(collection: Any, ops: list) -> tuple[int, PyMongoError | None]:
    """`unordered`, and how many of its ops matched a document when it raised nothing (0 when it did)."""
    try:
        result = await collection.bulk_write(ops, ordered=False)
    except ServerSelectionTimeoutError:
        raise
    except PyMongoError as exc:
        return 0, exc
    return result.matched_count, None


def refused(error: PyMongoError | None) -> set[int] | None:
    """The indexes of the ops `error` (from `unordered`) says were not applied; None when it cannot say."""
    if error is None:
        return set()
    if isinstance(error, BulkWriteError):
        return {e["index"] for e in error.details.get("writeErrors", [])}
    return None
