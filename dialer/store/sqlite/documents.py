"""Documents in and out of SQLite rows: BSON blobs, millisecond columns, `IN (?, ?, ...)` lists.

A document is stored whole as BSON (ObjectIds, datetimes and nested values kept as MongoDB keeps them,
so both backends hand out the same shapes); datetimes are kept to the millisecond, BSON's precision,
and every column that holds a time holds the same milliseconds, so a value read back compares equal
to the stored one. Decoded datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

import bson
from bson.codec_options import CodecOptions

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = dt.timedelta(milliseconds=1)
OPTIONS = CodecOptions(tz_aware=True, tzinfo=UTC)


def encode(doc: dict) -> bytes:
    return bson.encode(doc)


def decode(blob: bytes) -> dict:
    return bson.decode(blob, OPTIONS)


def docs(rows: Iterable[tuple]) -> list[dict]:
    """Decode the first column of each row."""
    return [decode(row[0]) for row in rows]


def ms(value: dt.datetime | None) -> int | None:
    """Milliseconds since the epoch, rounded down as BSON does (naive datetimes are UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // ONE_MS


# Below this (2106), a float of seconds is within half a microsecond of the milliseconds it came from, so
# `fromtimestamp` (rounding to the nearest microsecond) is exact, and a third of the cost of the sum.
EXACT_FLOAT_MS = 2 ** 32 * 1000
_from_seconds = dt.datetime.fromtimestamp


def at(millis: int | None) -> dt.datetime | None:
    if millis is None:
        return None
    if 0 <= millis < EXACT_FLOAT_MS:
        return _from_seconds(millis / 1000, UTC)
    return EPOCH + dt.timedelta(milliseconds=millis)


def stored(value: Any) -> Any:
    """The value as it reads back from a document (datetimes to the millisecond, aware UTC)."""
    return at(ms(value)) if isinstance(value, dt.datetime) else value


def marks(values: Iterable[Any]) -> str:
    """`?, ?, ?` for an IN list of these values."""
    return ", ".join("?" for _ in values)


def one(conn: Any, sql: str, params: tuple = ()) -> dict | None:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else decode(row[0])
