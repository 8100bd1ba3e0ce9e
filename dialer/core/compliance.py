"""Compliance profiles: when a call may start under the law of the callee's place, and why not now.

Profiles: `none` (the batch's window alone), `us-federal` (also 08:00-21:00 at the callee's location,
47 CFR 64.1200(c)(1)) and `us-states` (federal, plus for each state the callee is in, by the number's
area code and by the record's state variable, that state's hours, banned weekdays, legal holidays and
frequency cap from the rules table, compliance_table.py). A profile only narrows the batch's window.

`Profile.decide` answers for one call at an instant: allowed now, else the next instant it is and the
rule that moved it, or never within the horizon (the call is then suppressed). Each rule is a set of
open intervals in UTC in every one of the call's zones (and, for the profile's rules, those of each of the
callee's states that its zones do not cover: a record's state may put the callee on another clock), so DST
changes and midnight are the windows'
(dialer/core/windows.py: no local time outside the rule counts as open). Holidays come from the
`holidays` package (state subdivisions, their observed-day rules). Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holiday_calendars

from dialer.core.compliance_table import RulesTable, StateRule, located_zones, state_code, state_of_number
from dialer.core.windows import CallingWindow, Interval, intersect

PROFILES = ("none", "us-federal", "us-states")
HORIZON = timedelta(days=15)  # no instant within this: the call can never be dialled under its profile
UTC = timezone.utc
_DAY_WORDS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Decision:
    at: datetime | None  # the first allowed instant >= now (now itself when allowed); None: never
    rule: str | None  # what moved or stopped it; None when the batch's own window did (or nothing)

    def allowed(self, now: datetime) -> bool:
        return self.at is not None and self.at <= now


class _Rule:
    """One constraint: its label and the instants it allows in every one of the zones."""

    label: str

    def is_open(self, at: datetime, zones: Sequence[str]) -> bool:
        raise NotImplementedError

    def intervals(self, zones: Sequence[str], since: datetime, until: datetime) -> list[Interval]:
        raise NotImplementedError

    def reason(self, now: datetime, opens: datetime | None, zones: Sequence[str]) -> str:
        return self.label


class _Window(_Rule):
    def __init__(self, window: CallingWindow, label: str | None) -> None:
        self.window, self.label = window, label

    def is_open(self, at, zones):
        return self.window.is_open_everywhere(at, zones)

    def intervals(self, zones, since, until):
        return self.window.intervals(zones, since, until)


class _StateHours(_Rule):
    """A state's hours per weekday (a banned weekday has none)."""

    def __init__(self, rule: StateRule) -> None:
        self.rule = rule
        self.label = f"us-states/{rule.code} hours {rule.hours_text}"

    def is_open(self, at, zones):
        return all(any(w.is_open(at, zone) for w in self.rule.windows) for zone in zones)

    def intervals(self, zones, since, until):
        common: list[Interval] | None = None
        for zone in zones:
            merged = _union([w.intervals([zone], since, until) for w in self.rule.windows])
            common = merged if common is None else intersect(common, merged)
        return common or []

    def reason(self, now, opens, zones):
        # A banned weekday between now and the opening (today included) is what moved the call.
        last = (opens or now + HORIZON)
        for zone in zones:
            day, end = now.astimezone(ZoneInfo(zone)).date(), last.astimezone(ZoneInfo(zone)).date()
            while day <= end:
                if day.weekday() in self.rule.banned_days:
                    return f"us-states/{self.rule.code} no calls on {_DAY_WORDS[day.weekday()]}"
                day += timedelta(days=1)
        return self.label


class _Holidays(_Rule):
    """No calls on the state's legal holidays, all day in the callee's local time."""

    def __init__(self, rule: StateRule) -> None:
        self.code = rule.code
        self.label = f"us-states/{rule.code} holiday"

    def is_open(self, at, zones):
        days = [at.astimezone(ZoneInfo(zone)).date() for zone in zones]
        return not any(day in _holidays(self.code, day.year) for day in days)

    def intervals(self, zones, since, until):
        common: list[Interval] = [(since - timedelta(days=2), until + timedelta(days=2))]
        for zone in zones:
            info = ZoneInfo(zone)
            day, last = since.astimezone(info).date() - timedelta(days=1), until.astimezone(info).date() + timedelta(days=1)
            closed = []
            while day <= last:
                if _holidays(self.code, day.year).get(day):
                    closed.append((_midnight(day, info, first=True), _midnight(day + timedelta(days=1), info, first=False)))
                day += timedelta(days=1)
            common = _minus(common, closed)
        return common

    def reason(self, now, opens, zones):
        for zone in zones:
            day = now.astimezone(ZoneInfo(zone)).date()
            end = (opens or now + HORIZON).astimezone(ZoneInfo(zone)).date()
            while day <= end:
                name = _holidays(self.code, day.year).get(day)
                if name:
                    return f"{self.label} {name}"
                day += timedelta(days=1)
        return self.label


class Profile:
    """A named profile over the rules table; `decide` and `cap` per call."""

    def __init__(self, name: str, table: RulesTable | None) -> None:
        if name not in PROFILES:
            raise ValueError(f"unknown compliance profile {name!r}: use one of {', '.join(PROFILES)}")
        if name != "none" and table is None:
            raise ValueError(f"the {name} profile needs the rules table")
        self.name = name
        self.table = table
        self._federal = None if table is None else _Window(table.federal, "us-federal hours " + _hours(table.federal))

    def states(self, phone: str, variables: dict | None, state_field: str | None) -> frozenset[str]:
        """Where the callee may be: the number's state and the record's (both apply when they differ)."""
        if self.name != "us-states":
            return frozenset()
        found = {state_of_number(phone)}
        given = (variables or {}).get(state_field or "state")
        found.add(state_code(given))
        return frozenset(code for code in found if code)

    def rules(self, states: frozenset[str]) -> list[_Rule]:
        if self.name == "none":
            return []
        out: list[_Rule] = []
        if self.name == "us-states":
            for code in sorted(states):
                row = self.table.states.get(code)
                if row is not None:
                    out.append(_StateHours(row))
                    if row.holidays:
                        out.append(_Holidays(row))
        out.append(self._federal)
        return out

    def cap(self, states: frozenset[str]) -> int | None:
        """The strictest frequency cap of the callee's states (attempts per rolling 24 h), if any."""
        caps = [row.cap for code in states if (row := self.table.states.get(code)) and row.cap]
        return min(caps) if caps and self.name == "us-states" else None

    def decide(self, window: CallingWindow, zones: Sequence[str], states: frozenset[str], now: datetime) -> Decision:
        """Allowed now (at = now), or the first instant within the horizon when the batch's window and
        every rule allow it, with the rule that moved it; at = None when there is none."""
        located = located_zones(zones, states)  # the profile's rules hold where the callee may be
        rules = [(_Window(window, None), zones), *((r, located) for r in self.rules(states))]
        closed = [r for r, where in rules if not r.is_open(now, where)]
        if not closed:
            return Decision(now, None)
        until = now + HORIZON
        sets = [(r, r.intervals(where, now, until)) for r, where in rules]
        common = sets[0][1]
        for _, intervals in sets[1:]:
            common = intersect(common, intervals)
        opens = next((max(o, now) for o, c in common if c > now and max(o, now) <= until), None)
        mover = self._mover(sets, closed, now, window, zones, until, opens)
        return Decision(opens, None if mover is None else mover.reason(now, opens, located))

    @staticmethod
    def _mover(sets, closed, now, window, zones, until, opens) -> _Rule | None:
        """The rule that moved the call: never open together with the batch's window (when never), else
        the closed rule that opens last; a profile's rule before the batch window's on a tie."""
        if opens is None:
            base = sets[0][1]
            if not any(c > now for _, c in base):
                return None  # the batch's own window never opens in these zones: not a rule's doing
            for rule, intervals in sets[1:]:
                if not any(c > now for _, c in intersect(base, intervals)):
                    return rule
            return next((r for r, _ in reversed(sets) if r in closed and r.label), sets[-1][0] if len(sets) > 1 else None)

        def next_open(intervals):
            return next((max(o, now) for o, c in intervals if c > now), until)

        ranked = sorted(((next_open(iv), rule.label is not None, i, rule) for i, (rule, iv) in enumerate(sets)
                         if rule in closed), key=lambda t: (t[0], t[1], -t[2]))
        mover = ranked[-1][3]
        if mover.label is None:  # the batch's own window: a profile rule closed now still moved it too
            return next((r for r in closed if r.label is not None), None)
        return mover


def _hours(window: CallingWindow) -> str:
    doc = window.to_doc()
    return f"{doc['start']}-{doc['end']}"


@lru_cache(maxsize=512)
def _holidays(code: str, year: int) -> dict[date, str]:
    return dict(holiday_calendars.country_holidays("US", subdiv=code, years=year, observed=True))


def _midnight(day: date, zone: ZoneInfo, first: bool) -> datetime:
    """Local midnight starting `day` in UTC; where it is ambiguous or skipped, the earlier (`first`) or
    the later reading, so a whole-day ban never shrinks."""
    wall = datetime.combine(day, time())
    a = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    b = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return min(a, b) if first else max(a, b)


def _union(lists: list[list[Interval]]) -> list[Interval]:
    merged: list[Interval] = []
    for opens, closes in sorted(iv for intervals in lists for iv in intervals):
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return merged


def _minus(left: list[Interval], holes: list[Interval]) -> list[Interval]:
    out = []
    for opens, closes in left:
        pieces = [(opens, closes)]
        for h_open, h_close in holes:
            pieces = [p for a, b in pieces for p in ((a, min(b, h_open)), (max(a, h_close), b)) if p[0] < p[1]]
        out.extend(pieces)
    return out


def profile_names() -> str:
    return ", ".join(PROFILES)


__all__ = ["Decision", "HORIZON", "PROFILES", "Profile", "profile_names"]
