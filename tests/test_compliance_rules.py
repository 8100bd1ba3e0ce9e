"""Compliance profiles on injected instants: state hours, banned days, holidays, both states, DST, midnight;
the rules table's validation (a row without its statute fails the suite)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from dialer.core.compliance import Profile
from dialer.core.compliance_table import PLACES, STATE_ZONES, TableError, parse_table, state_code, state_of_number
from dialer.core.windows import DEFAULT_WINDOW, CallingWindow
from workers.compliance_gate import TABLE_PATH, us_table

UTC = dt.timezone.utc
NY, CHI = "America/New_York", "America/Chicago"
STATES = Profile("us-states", us_table())
FEDERAL = Profile("us-federal", us_table())


def local(zone: str, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def decide(profile, phone, zone, at, window=DEFAULT_WINDOW, variables=None, field=None):
    return profile.decide(window, [zone], profile.states(phone, variables, field), at)


def test_the_shipped_table_parses_and_every_row_names_its_statute():
    table = parse_table(TABLE_PATH.read_text())
    assert table.as_of == "2026-12-05" and table.federal_source == "47 CFR 64.1200(c)(1)"
    assert {"FL", "OK", "MD", "AL", "TX"} <= set(table.states)
    assert all(row.source for row in table.states.values())
    assert {code: row.cap for code, row in table.states.items() if row.cap} == {"FL": 3, "OK": 3, "MD": 3}
    # Every state and territory keeps zones (a record's state is read in them), each a real IANA zone.
    assert {code for code in PLACES.values() if "-" not in code} == set(STATE_ZONES)
    assert all(ZoneInfo(zone) for zones in STATE_ZONES.values() for zone in zones)


@pytest.mark.parametrize("change, message", [
    ({"source": None}, "`source`"),
    ({"source": "  "}, "`source`"),
    ({"hours": "8-20"}, "HH:MM-HH:MM"),
    ({"hours": "20:00-08:00"}, "start before"),
    ({"hours": {"funday": "08:00-20:00"}}, "`hours`"),
    ({"cap": 0}, "`cap`"),
    ({"cap": "3"}, "`cap`"),
    ({"holidays": "yes"}, "`holidays`"),
    ({"statute": "x"}, "unknown field"),
])
def test_a_malformed_row_fails(change, message):
    import yaml

    doc = yaml.safe_load(TABLE_PATH.read_text())
    row = {**doc["states"]["FL"], **change}
    doc["states"]["FL"] = {k: v for k, v in row.items() if v is not None}
    with pytest.raises(TableError, match=message):
        parse_table(yaml.safe_dump(doc))


def test_states_from_numbers_and_records():
    assert state_of_number("+13055550100") == "FL"
    assert state_of_number("+12065550100") == "WA"  # "Washington State"
    assert state_of_number("+14165550100") == "CA-ON"
    assert state_of_number("+18005550100") is None  # toll free: nowhere
    assert state_code("Jersey City, NJ") == "NJ" and state_code(" fl ") == "FL" and state_code("Narnia") is None


def test_florida_after_eight_waits_for_eight_next_morning_with_its_rule():
    d = decide(STATES, "+13055550100", NY, local(NY, 2026, 11, 23, 20, 30))
    assert d.at == local(NY, 2026, 11, 24, 8, 0) and d.rule == "us-states/FL hours 08:00-20:00"
    assert decide(STATES, "+13055550100", NY, local(NY, 2026, 11, 23, 19, 59)).allowed(local(NY, 2026, 11, 23, 19, 59))
    # The federal profile alone lets it through until 21:00.
    assert decide(FEDERAL, "+13055550100", NY, local(NY, 2026, 11, 23, 20, 30)).rule is None


def test_federal_hours_move_a_call_at_night():
    d = decide(FEDERAL, "+12125550100", NY, local(NY, 2026, 11, 23, 22, 0))
    assert d.at == local(NY, 2026, 11, 24, 8, 0) and d.rule == "us-federal hours 08:00-21:00"


def test_alabama_sunday_and_holidays():
    sunday = decide(STATES, "+12055550100", CHI, local(CHI, 2026, 12, 6, 10, 0))
    assert sunday.at == local(CHI, 2026, 12, 7, 8, 0) and sunday.rule == "us-states/AL no calls on Sunday"
    christmas = decide(STATES, "+12055550100", CHI, local(CHI, 2026, 12, 25, 10, 0))
    assert christmas.at == local(CHI, 2026, 12, 26, 8, 0) and christmas.rule == "us-states/AL holiday Christmas Day"
    # Saturday evening: Sunday is skipped too, and that is what it says.
    saturday = decide(STATES, "+12055550100", CHI, local(CHI, 2026, 12, 5, 20, 30))
    assert saturday.at == local(CHI, 2026, 12, 7, 8, 0) and saturday.rule == "us-states/AL no calls on Sunday"


def test_an_observed_holiday_moves_with_its_weekday():
    # 2027-07-04 is a Sunday: observed on Monday 5 July, which the holidays package says, not us.
    d = decide(STATES, "+12055550100", CHI, local(CHI, 2027, 7, 5, 10, 0))
    assert d.at == local(CHI, 2027, 7, 6, 8, 0) and d.rule.startswith("us-states/AL holiday Independence Day")


def test_texas_sunday_starts_at_noon():
    d = decide(STATES, "+12145550100", CHI, local(CHI, 2026, 12, 6, 9, 30))
    assert d.at == local(CHI, 2026, 12, 6, 12, 0) and d.rule == "us-states/TX hours 09:00-21:00, sun 12:00-21:00"


def test_where_number_and_record_differ_both_states_apply():
    at = local(NY, 2026, 11, 23, 20, 30)
    assert decide(STATES, "+12125550100", NY, at).allowed(at)  # New York: federal hours
    d = decide(STATES, "+12125550100", NY, at, variables={"state": "Florida"})
    assert d.rule == "us-states/FL hours 08:00-20:00"
    d = decide(STATES, "+12125550100", NY, at, variables={"st": "FL"}, field="st")
    assert d.rule == "us-states/FL hours 08:00-20:00"
    assert decide(STATES, "+12125550100", NY, at, variables={"state": "FL"}, field="st").allowed(at)


def test_a_profile_only_narrows_the_batch_window():
    window = CallingWindow.parse({"start": "10:00", "end": "12:00"})
    d = decide(STATES, "+13055550100", NY, local(NY, 2026, 11, 23, 9, 0), window)
    assert d.at == local(NY, 2026, 11, 23, 10, 0) and d.rule is None  # the batch's own window moved it
    wide = CallingWindow.parse({"start": "00:00", "end": "24:00"})
    d = decide(STATES, "+13055550100", NY, local(NY, 2026, 11, 23, 6, 0), wide)
    assert d.at == local(NY, 2026, 11, 23, 8, 0)


def test_never_within_the_horizon_is_none_with_the_rule():
    late = CallingWindow.parse({"start": "20:30", "end": "21:00"})
    d = decide(STATES, "+13055550100", NY, local(NY, 2026, 11, 23, 12, 0), late)
    assert d.at is None and d.rule == "us-states/FL hours 08:00-20:00"
    overnight = CallingWindow.parse({"start": "22:00", "end": "02:00"})  # crosses midnight
    d = decide(FEDERAL, "+12125550100", NY, local(NY, 2026, 11, 23, 23, 0), overnight)
    assert d.at is None and d.rule == "us-federal hours 08:00-21:00"


def test_dst_both_ways():
    # Spring forward (2026-03-08): 07:30 EDT waits for 08:00 EDT (12:00 UTC), not 08:00 EST.
    d = decide(STATES, "+13055550100", NY, local(NY, 2026, 3, 8, 7, 30))
    assert d.at == dt.datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    # Fall back (2026-11-01): 01:30 happens twice; both wait for 08:00 EST (13:00 UTC).
    for fold in (0, 1):
        at = dt.datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo(NY), fold=fold).astimezone(UTC)
        assert decide(STATES, "+13055550100", NY, at).at == dt.datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
    # Florida's 20:00 the evening clocks went back is 01:00 UTC, an hour later than the evening before.
    d = decide(STATES, "+13055550100", NY, dt.datetime(2026, 11, 2, 0, 30, tzinfo=UTC))  # 19:30 EST
    assert d.allowed(dt.datetime(2026, 11, 2, 0, 30, tzinfo=UTC))
    d = decide(STATES, "+13055550100", NY, dt.datetime(2026, 11, 1, 0, 30, tzinfo=UTC))  # 20:30 EDT the day before
    assert d.at == dt.datetime(2026, 11, 1, 13, 0, tzinfo=UTC)


def test_the_none_profile_has_no_rules_and_no_caps():
    none = Profile("none", None)
    at = local(NY, 2026, 11, 23, 20, 30)
    assert none.states("+13055550100", {"state": "FL"}, None) == frozenset()
    assert decide(none, "+13055550100", NY, at).allowed(at)
    assert STATES.cap(frozenset({"FL", "NY"})) == 3 and STATES.cap(frozenset({"NY"})) is None
    with pytest.raises(ValueError, match="none, us-federal, us-states"):
        Profile("us-everything", us_table())


def test_a_window_that_never_opens_by_itself_is_not_blamed_on_a_rule():
    # Open only while both zones read Monday 08:00-08:30: never at once (Tokyo is 14 hours ahead).
    window = CallingWindow.parse({"start": "08:00", "end": "08:30", "days": ["mon"]})
    at = local(NY, 2026, 11, 23, 12, 0)
    d = FEDERAL.decide(window, [NY, "Asia/Tokyo"], frozenset(), at)
    assert d.at is None and d.rule is None
