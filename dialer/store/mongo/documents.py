"""What every MongoDB repository shares: datetimes made aware once, driver errors made StoreUnavailable,
and aggregate() on either driver (PyMongo's async aggregate is a coroutine, mongomock-motor's is not)."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from typing import Any

from pymongo.errors import PyMongoError

from dialer.ports import StoreUnavailable

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


async def aggregate(collection: Any, pipeline: list[dict]) -> list[dict]:
    cursor = collection.aggregate(pipeline)
    if inspect.isawaitable(cursor):
        cursor = await cursor
    return await cursor.to_list(None)
