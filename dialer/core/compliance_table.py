"""The US calling-rules table (config/compliance/us.yaml) read into rules, and a callee's state.

Owns the table's format and its validation (a row without its statute, an unknown field, malformed
hours or a cap that is not a positive integer is a TableError naming the row), and the mapping of
what phonenumbers' geocoder answers for a +1 number (`Florida`, `Washington State`, `Jersey City, NJ`,
`Ontario`) or what a record's `state` variable says (`FL`, `florida`) to a two-letter code, and the
zones a state keeps (`located_zones`: a state the call's zones do not cover is read in its own). Pure:
the caller reads the file and passes its text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
import yaml
from phonenumbers import geocoder

from dialer.core.windows import DAY_NAMES, CallingWindow

_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]|24):([0-5][0-9])$")
_ROW_FIELDS = {"name", "hours", "holidays", "cap", "source", "note"}
_DAY_KEYS = set(DAY_NAMES) | {"default"}

# US states, DC and territories, and Canada's provinces and territories (for +1 numbers): name -> code.
PLACES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA", "Colorado": "CO",
    "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA", "Hawaii": "HI", "Idaho": "ID",
    "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA",
    "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN",
    "Mississippi": "MS", "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV",
    "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY", "North Carolina": "NC",
    "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA",
    "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX",
    "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington": "WA", "Washington State": "WA",
    "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY", "District of Columbia": "DC",
    "Washington D.C.": "DC", "Washington DC": "DC", "Puerto Rico": "PR", "Guam": "GU",
    "U.S. Virgin Islands": "VI", "Northern Mariana Islands": "MP", "American Samoa": "AS",
    # Canada (no state rows: the federal hours still apply to them under a US profile)
    "Alberta": "CA-AB", "British Columbia": "CA-BC", "Manitoba": "CA-MB", "New Brunswick": "CA-NB",
    "Newfoundland and Labrador": "CA-NL", "Nova Scotia": "CA-NS", "Ontario": "CA-ON",
    "Prince Edward Island": "CA-PE", "Quebec": "CA-QC", "Saskatchewan": "CA-SK",
    "Northwest Territories": "CA-NT", "Nunavut": "CA-NU", "Yukon": "CA-YT",
}
# The zones each US state, DC and territory keeps (the canonical ones phonenumbers answers for their numbers,
# and those of their parts on another clock: the Florida panhandle, west Texas, Indiana's corners, ...).
STATE_ZONES = {code: tuple(f"America/{z}" if "/" not in z else z for z in zones.split()) for code, zones in {
    "AK": "Anchorage Adak", "AL": "Chicago", "AR": "Chicago", "AZ": "Phoenix Denver", "CA": "Los_Angeles",
    "CO": "Denver", "CT": "New_York", "DC": "New_York", "DE": "New_York", "FL": "New_York Chicago",
    "GA": "New_York", "HI": "Pacific/Honolulu", "IA": "Chicago", "ID": "Denver Los_Angeles", "IL": "Chicago",
    "IN": "New_York Chicago", "KS": "Chicago Denver", "KY": "New_York Chicago", "LA": "Chicago",
    "MA": "New_York", "MD": "New_York", "ME": "New_York", "MI": "New_York Chicago", "MN": "Chicago",
    "MO": "Chicago", "MS": "Chicago", "MT": "Denver", "NC": "New_York", "ND": "Chicago Denver",
    "NE": "Chicago Denver", "NH": "New_York", "NJ": "New_York", "NM": "Denver", "NV": "Los_Angeles Denver",
    "NY": "New_York", "OH": "New_York", "OK": "Chicago", "OR": "Los_Angeles Denver", "PA": "New_York",
    "RI": "New_York", "SC": "New_York", "SD": "Chicago Denver", "TN": "New_York Chicago", "TX": "Chicago Denver",
    "UT": "Denver", "VA": "New_York", "VT": "New_York", "WA": "Los_Angeles", "WI": "Chicago", "WV": "New_York",
    "WY": "Denver", "PR": "Puerto_Rico", "GU": "Pacific/Guam", "VI": "St_Thomas", "MP": "Pacific/Saipan",
    "AS": "Pacific/Pago_Pago"}.items()}
_BY_NAME = {name.lower(): code for name, code in PLACES.items()}
_CODES = {code for code in PLACES.values() if "-" not in code}


class TableError(ValueError):
    """The rules table is malformed; the message names the row and the field."""


@dataclass(frozen=True)
class StateRule:
    code: str
    name: str
    windows: tuple[CallingWindow, ...]  # when calls may start, by weekday; together they are the hours
    hours_text: str  # e.g. "08:00-20:00" or "09:00-21:00, sun 12:00-21:00"
    banned_days: frozenset[int]  # 0 = Monday
    holidays: bool
    cap: int | None
    source: str


@dataclass(frozen=True)
class RulesTable:
    as_of: str
    federal: CallingWindow
    federal_source: str
    states: dict[str, StateRule]


def parse_table(text: str) -> RulesTable:
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("states"), dict):
        raise TableError("the table must be a mapping with `as_of`, `federal` and `states`")
    if not isinstance(doc.get("as_of"), str):
        raise TableError("`as_of` must be a date string saying how current the table is")
    federal = doc.get("federal") or {}
    if not isinstance(federal, dict) or not federal.get("source"):
        raise TableError("`federal` needs `hours` and `source`")
    states = {}
    for code, row in doc["states"].items():
        states[code] = _row(code, row)
    return RulesTable(doc["as_of"], _window(federal.get("hours"), "federal", set(range(7))), federal["source"], states)


def _row(code: object, row: object) -> StateRule:
    if code not in _CODES:
        raise TableError(f"row {code!r}: not a US state code")
    if not isinstance(row, dict):
        raise TableError(f"row {code}: must be a mapping")
    unknown = set(row) - _ROW_FIELDS
    if unknown:
        raise TableError(f"row {code}: unknown field(s) {sorted(unknown)}")
    source = row.get("source")
    if not isinstance(source, str) or not source.strip():
        raise TableError(f"row {code}: `source` (the statute the row comes from) is missing")
    if not isinstance(row.get("name"), str):
        raise TableError(f"row {code}: `name` must be a string")
    holidays = row.get("holidays", False)
    if not isinstance(holidays, bool):
        raise TableError(f"row {code}: `holidays` must be true or false")
    cap = row.get("cap")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise TableError(f"row {code}: `cap` must be a positive integer (calls per 24 hours)")
    hours = row.get("hours")
    if isinstance(hours, str):
        hours = {"default": hours}
    if not isinstance(hours, dict) or not hours or set(hours) - _DAY_KEYS:
        raise TableError(f"row {code}: `hours` must be 'HH:MM-HH:MM' or a map of {sorted(_DAY_KEYS)} to hours")
    default = hours.get("default")
    per_day = {day: hours.get(DAY_NAMES[day], default) for day in range(7)}
    if any(text is None and DAY_NAMES[day] not in hours for day, text in per_day.items()):
        raise TableError(f"row {code}: `hours` needs a `default` or every weekday")
    banned = frozenset(day for day, text in per_day.items() if text is None)
    groups: dict[str, set[int]] = {}
    for day, text in per_day.items():
        if text is not None:
            groups.setdefault(text, set()).add(day)
    windows = tuple(_window(text, f"row {code}", days) for text, days in groups.items())
    extra = [f"{DAY_NAMES[d]} {per_day[d]}" for d in range(7) if per_day[d] is not None and per_day[d] != default]
    hours_text = ", ".join([default, *extra] if default else extra)
    return StateRule(code, row["name"], windows, hours_text, banned, holidays, cap, source.strip())


def _window(text: object, where: str, days: set[int]) -> CallingWindow:
    match = _HOURS.match(text) if isinstance(text, str) else None
    if match is None:
        raise TableError(f"{where}: hours {text!r} must be 'HH:MM-HH:MM'")
    start, end = int(match[1]) * 60 + int(match[2]), int(match[3]) * 60 + int(match[4])
    if not start < end <= 24 * 60:
        raise TableError(f"{where}: hours {text!r} must start before they end, within one day")
    return CallingWindow(start, end, frozenset(days))


def located_zones(zones: tuple[str, ...] | list[str], states: frozenset[str]) -> tuple[str, ...]:
    """Where the callee's local time is read for the calling rules: the call's zones, plus the zones of each
    of its states that none of the call's zones belongs to (a record saying TX for a New York number: the
    callee may be in Texas, whose Sunday noon is Central or Mountain noon, not Eastern)."""
    out = list(zones)
    for code in sorted(states):
        theirs = STATE_ZONES.get(code, ())
        if theirs and not set(theirs) & set(zones):
            out += [zone for zone in theirs if zone not in out]
    return tuple(out)


def state_code(text: object) -> str | None:
    """A place as a code: a code itself (`fl`), a name (`Florida`, `Washington State`) or a city with its
    state (`Jersey City, NJ`). None when it names no US state, territory or Canadian province."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if text.upper() in _CODES:
        return text.upper()
    if text.lower() in _BY_NAME:
        return _BY_NAME[text.lower()]
    if "," in text:
        return state_code(text.rsplit(",", 1)[1])
    return None


@lru_cache(maxsize=65536)
def _state_of_prefix(prefix: str) -> str | None:
    number = phonenumbers.parse(prefix + "0" * (12 - len(prefix)))
    return state_code(geocoder.description_for_number(number, "en"))


def state_of_number(e164: str) -> str | None:
    """The state (or province) of a +1 number's area code and exchange, by phonenumbers' geocoder."""
    if not e164.startswith("+1") or len(e164) != 12:
        return None
    return _state_of_prefix(e164[:8])  # +1 NPA NXX: the geocoder knows no finer place
