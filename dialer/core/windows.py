"""Calling windows: when a contact may be called, in the contact's own local time.

Owns parsing/validation of window documents ({"start": "HH:MM", "end": "HH:MM", "days": [...]}),
their evaluation at an instant in one or more IANA zones (open only if open in every zone), and
time zone name checks. Pure and stdlib-only: callers pass the instants; nothing reads the clock.

Each local day named in `days` has one occurrence: `start` that day to `end` the same day, or the
next day when start > end (crossing midnight), so `days` names the opening day. Start inclusive,
end exclusive; end "24:00" (or "00:00") is the next midnight. DST is conservative: no instant whose
local clock reads outside the window counts as open. A boundary in a skipped hour moves to the first
real instant after the gap; a boundary that happens twice opens at the second and closes at the first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

__all__ = ["DAY_NAMES", "DEFAULT_WINDOW", "CallingWindow", "Interval", "WindowError", "intersect", "valid_zone"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
UTC = timezone.utc

_HHMM = re.compile(r"([0-9]{2}):([0-9]{2})")
_FIELDS = ("start", "end", "days")
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})  # in the zoneinfo dir, not places
_YEAR_SCAN_START = datetime(2026, 1, 1, tzinfo=UTC)  # never_open_together() scans this year

Interval = tuple[datetime, datetime]  # [open, close) in UTC


class WindowError(ValueError):
    """A calling window or time zone is invalid. The message is written for API clients."""


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def valid_zone(name: object) -> bool:
    """True if `name` is a str naming a real IANA zone; paths and directories are never listed."""
    return isinstance(name, str) and name in _known_zones()


def _zone(name: str) -> ZoneInfo:
    if not valid_zone(name):
        raise WindowError(f"unknown time zone {_show(name)}: expected an IANA name such as 'America/New_York'")
    return ZoneInfo(name)  # ZoneInfo caches instances itself


def _zone_list(zones: Sequence[str]) -> list[ZoneInfo]:
    if isinstance(zones, str):
        raise TypeError("zones must be a sequence of zone names, not a single string")
    if not zones:
        raise WindowError("at least one time zone is required")
    return [_zone(name) for name in zones]


def _show(value: object) -> str:  # a bounded repr for error messages sent to clients
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return at.astimezone(UTC)


def _parse_minute(value: object, field: str, default: int) -> int:
    if value is None:
        return default
    match = _HHMM.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise WindowError(f"calling window {field} must be a string 'HH:MM', got {_show(value)}")
    hours, minutes = int(match[1]), int(match[2])
    if (hours, minutes) == (24, 0):
        if field != "end":
            raise WindowError("calling window start cannot be '24:00'; use '00:00'")
        return MINUTES_PER_DAY
    if hours > 23 or minutes > 59:
        raise WindowError(f"calling window {field} {value!r} is not a valid time of day")
    return hours * 60 + minutes


def _parse_days(value: object) -> frozenset[int]:
    if value is None:
        return frozenset(range(7))
    if not isinstance(value, (list, tuple)):
        raise WindowError(f"calling window days must be a list of day names such as ['mon'], got {_show(value)}")
    if not value:
        raise WindowError("calling window days must not be empty")
    bad = [day for day in value if not isinstance(day, str) or day.lower() not in DAY_NAMES]
    if bad:
        raise WindowError(f"unknown day name(s) {_show(bad)} in calling window days; use {', '.join(DAY_NAMES)}")
    return frozenset(DAY_NAMES.index(day.lower()) for day in value)


def _format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _transition_instant(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """First instant (whole second) in (before, after] whose UTC offset is the one at `after`."""
    target = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _wall_to_utc(wall: datetime, zone: ZoneInfo, *, opening: bool) -> datetime:
    """Convert a naive local wall time to UTC, choosing conservatively around DST changes."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return first
    if first < second:  # clocks went back: this wall time happens twice
        return second if opening else first
    # Clocks jumped forward over this wall time: use the first real instant after the gap.
    # (In a gap, fold=1 maps to just before the jump and fold=0 to just after it.)
    return _transition_instant(zone, second, first)


@dataclass(frozen=True)
class CallingWindow:
    start_minute: int  # minutes after local midnight, 0..1439
    end_minute: int  # 1..1440 (1440 = "24:00" = end of day)
    days: frozenset[int]  # 0=Monday .. 6=Sunday; the day the window OPENS on

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", frozenset(self.days))
        if not (0 <= self.start_minute < MINUTES_PER_DAY and 0 < self.end_minute <= MINUTES_PER_DAY):
            raise WindowError("calling window start must be within 00:00..23:59 and end within 00:01..24:00")
        if self.start_minute == self.end_minute:
            raise WindowError("calling window start and end must differ")
        if not self.days or not self.days <= frozenset(range(7)):
            raise WindowError("calling window days must be a non-empty set of weekdays 0..6")

    @classmethod
    def parse(cls, obj: object) -> CallingWindow:
        """Build a window from its API document; None means DEFAULT_WINDOW."""
        if obj is None:
            return DEFAULT_WINDOW
        if not isinstance(obj, dict):
            raise WindowError("calling window must be an object with optional 'start', 'end' and 'days'")
        unknown = sorted(str(key) for key in obj if key not in _FIELDS)
        if unknown:
            raise WindowError(f"unknown calling window field(s) {_show(unknown)}; allowed: start, end, days")
        start = _parse_minute(obj.get("start"), "start", DEFAULT_WINDOW.start_minute)
        end = _parse_minute(obj.get("end"), "end", DEFAULT_WINDOW.end_minute)
        if start == end:
            raise WindowError(f"calling window start and end are both {_format_minute(start)}; it would be empty")
        if end == 0:  # "00:00" as an end is the next midnight
            end = MINUTES_PER_DAY
        return cls(start, end, _parse_days(obj.get("days")))

    def to_doc(self) -> dict:
        days = [DAY_NAMES[day] for day in sorted(self.days)]
        return {"start": _format_minute(self.start_minute), "end": _format_minute(self.end_minute), "days": days}

    def _occurrence(self, day: date, zone: ZoneInfo) -> Interval | None:
        """The UTC interval of the window opening on local `day`, or None if it doesn't open then."""
        if day.weekday() not in self.days:
            return None
        midnight = datetime.combine(day, time())
        close_minute = self.end_minute + (MINUTES_PER_DAY if self.start_minute > self.end_minute else 0)
        opens = _wall_to_utc(midnight + timedelta(minutes=self.start_minute), zone, opening=True)
        closes = _wall_to_utc(midnight + timedelta(minutes=close_minute), zone, opening=False)
        return (opens, closes) if opens < closes else None  # empty if DST swallowed it

    def _zone_intervals(self, zone: ZoneInfo, since: datetime, until: datetime) -> list[Interval]:
        """Merged open intervals in one zone, covering at least [since, until]."""
        day = since.astimezone(zone).date() - timedelta(days=1)
        last = until.astimezone(zone).date() + timedelta(days=1)
        merged: list[Interval] = []
        while day <= last:
            occurrence = self._occurrence(day, zone)
            if occurrence is not None:
                if merged and occurrence[0] <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], occurrence[1]))
                else:
                    merged.append(occurrence)
            day += timedelta(days=1)
        return merged

    def _common_intervals(self, zones: Sequence[str], since: datetime, until: datetime) -> list[Interval]:
        """Intervals (UTC, sorted, disjoint) during which the window is open in every zone."""
        first, *others = _zone_list(zones)
        common = self._zone_intervals(first, since, until)
        for zone in others:
            common = intersect(common, self._zone_intervals(zone, since, until))
        return common

    def intervals(self, zones: Sequence[str], since: datetime, until: datetime) -> list[Interval]:
        """The instants (UTC [open, close) pairs, sorted, disjoint) when open in every zone, covering at
        least [since, until] (compliance.py intersects them with its rules')."""
        return self._common_intervals(zones, _as_utc(since), _as_utc(until))

    def is_open(self, at: datetime, zone: str) -> bool:
        instant = _as_utc(at)
        zone_info = _zone(zone)
        today = instant.astimezone(zone_info).date()
        for day in (today - timedelta(days=1), today):
            occurrence = self._occurrence(day, zone_info)
            if occurrence is not None and occurrence[0] <= instant < occurrence[1]:
                return True
        return False

    def is_open_everywhere(self, at: datetime, zones: Sequence[str]) -> bool:
        _zone_list(zones)  # validate all names, reject an empty list
        return all(self.is_open(at, zone) for zone in zones)

    def next_open(self, after: datetime, zones: Sequence[str], horizon_days: int = 15) -> datetime | None:
        """Earliest instant >= `after` (UTC) open in every zone; `after` itself if open now, None if
        the window does not open everywhere at once within `horizon_days`."""
        start = _as_utc(after)
        limit = start + _horizon(horizon_days)
        for opens, closes in self._common_intervals(zones, start, limit):
            if closes > start:
                first = max(opens, start)
                return first if first <= limit else None
        return None

    def closes_at(self, at: datetime, zones: Sequence[str], horizon_days: int = 15) -> datetime | None:
        """If open everywhere at `at`, the first later instant (UTC) when closed in some zone, else None.
        A window that never closes (00:00-24:00 daily) is capped at `at + horizon_days`."""
        instant = _as_utc(at)
        limit = instant + _horizon(horizon_days)
        for opens, closes in self._common_intervals(zones, instant, limit):
            if opens <= instant < closes:
                return min(closes, limit)
        return None

    def never_open_together(self, zones: Sequence[str]) -> bool:
        """True if never open in all `zones` at once during a whole year (2026), so pairs that overlap
        only while one zone is on summer time are still accepted. Used to reject records."""
        _zone_list(zones)
        return _never_open_together(self, tuple(sorted(set(zones))))


def _horizon(days: int) -> timedelta:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError("horizon_days must be a positive integer")
    return timedelta(days=days)


def intersect(left: list[Interval], right: list[Interval]) -> list[Interval]:
    """Intersection of two sorted lists of disjoint half-open intervals."""
    result: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        opens, closes = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if opens < closes:
            result.append((opens, closes))
        i, j = (i + 1, j) if left[i][1] <= right[j][1] else (i, j + 1)  # drop the one ending first
    return result


@lru_cache(maxsize=4096)
def _never_open_together(window: CallingWindow, zones: tuple[str, ...]) -> bool:
    step = 14  # overlapping 15-day scans cover the year; most pairs succeed on the first one
    for offset in range(0, 366, step):
        if window.next_open(_YEAR_SCAN_START + timedelta(days=offset), zones, horizon_days=step + 1) is not None:
            return False
    return True


DEFAULT_WINDOW = CallingWindow(8 * 60, 21 * 60, frozenset(range(7)))  # 08:00-21:00 every day (US TCPA hours)
