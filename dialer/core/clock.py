"""Time, injected: the engine asks a Clock for "now" so tests can run across midnight and DST without sleeping."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

UTC = dt.timezone.utc


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to (tests and simulations)."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = as_utc(start)

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> None:
        self._now = as_utc(when)

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)


def as_utc(value: dt.datetime) -> dt.datetime:
    """MongoDB hands back naive UTC (mongomock) or aware UTC (PyMongo tz_aware): make both aware."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")
