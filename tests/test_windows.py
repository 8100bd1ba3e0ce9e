"""Calling-window logic: parsing, local-time evaluation, DST, multi-zone intersection."""

from datetime import datetime, timedelta, timezone

import pytest

from dialer.core.windows import DAY_NAMES, DEFAULT_WINDOW, CallingWindow, WindowError, valid_zone

UTC = timezone.utc
NY, LA, KOLKATA, TOKYO = "America/New_York", "America/Los_Angeles", "Asia/Kolkata", "Asia/Tokyo"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def window(start="08:00", end="21:00", days=None):
    doc = {"start": start, "end": end}
    if days is not None:
        doc["days"] = days
    return CallingWindow.parse(doc)


# --- parsing -----------------------------------------------------------------------------


def test_parse_none_and_empty_give_default():
    assert CallingWindow.parse(None) is DEFAULT_WINDOW
    assert CallingWindow.parse({}) == DEFAULT_WINDOW
    assert DEFAULT_WINDOW == CallingWindow(480, 1260, frozenset(range(7)))


def test_parse_fields():
    parsed = CallingWindow.parse({"start": "09:30", "end": "24:00", "days": ["Mon", "FRI", "sat"]})
    assert parsed == CallingWindow(570, 1440, frozenset({0, 4, 5}))
    assert window(start="20:00", end="02:00") == CallingWindow(1200, 120, frozenset(range(7)))


def test_end_midnight_is_end_of_day():
    assert window(start="20:00", end="00:00").end_minute == 1440


@pytest.mark.parametrize(
    "doc, reason",
    [
        ("08:00-21:00", "must be an object"),
        (["08:00", "21:00"], "must be an object"),
        ({"start": "08:00", "stop": "21:00"}, "unknown calling window field(s) ['stop']"),
        ({"start": 800}, "start must be a string 'HH:MM'"),
        ({"start": "8:00"}, "start must be a string 'HH:MM'"),
        ({"start": "08:00:00"}, "start must be a string 'HH:MM'"),
        ({"end": "٠٩:٠٠"}, "end must be a string 'HH:MM'"),  # non-ASCII digits
        ({"start": "25:00"}, "start '25:00' is not a valid time of day"),
        ({"end": "12:60"}, "end '12:60' is not a valid time of day"),
        ({"end": "24:01"}, "end '24:01' is not a valid time of day"),
        ({"start": "24:00"}, "start cannot be '24:00'"),
        ({"start": "10:00", "end": "10:00"}, "start and end are both 10:00"),
        ({"start": "00:00", "end": "00:00"}, "start and end are both 00:00"),
        ({"days": []}, "days must not be empty"),
        ({"days": "mon"}, "days must be a list"),
        ({"days": ["mon", "funday"]}, "unknown day name(s) ['funday']"),
        ({"days": ["monday"]}, "unknown day name(s) ['monday']"),
        ({"days": [1]}, "unknown day name(s) [1]"),
    ],
)
def test_parse_errors(doc, reason):
    with pytest.raises(WindowError) as info:
        CallingWindow.parse(doc)
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError)


def test_constructor_validates():
    with pytest.raises(WindowError):
        CallingWindow(600, 600, frozenset({0}))
    with pytest.raises(WindowError):
        CallingWindow(0, 1441, frozenset({0}))
    with pytest.raises(WindowError):
        CallingWindow(0, 60, frozenset())
    with pytest.raises(WindowError):
        CallingWindow(0, 60, frozenset({7}))


@pytest.mark.parametrize(
    "doc",
    [
        None,
        {"start": "09:30", "end": "24:00", "days": ["sun", "mon"]},
        {"start": "22:00", "end": "02:00", "days": ["fri"]},
        {"start": "00:00", "end": "00:01", "days": list(DAY_NAMES)},
    ],
)
def test_round_trip(doc):
    parsed = CallingWindow.parse(doc)
    assert CallingWindow.parse(parsed.to_doc()) == parsed


def test_to_doc_lists_days_in_week_order():
    parsed = CallingWindow.parse({"start": "09:05", "end": "17:00", "days": ["SUN", "wed", "mon", "wed"]})
    assert parsed.to_doc() == {"start": "09:05", "end": "17:00", "days": ["mon", "wed", "sun"]}
    assert DEFAULT_WINDOW.to_doc() == {"start": "08:00", "end": "21:00", "days": list(DAY_NAMES)}


# --- is_open -----------------------------------------------------------------------------


def test_is_open_boundaries_new_york_vs_kolkata():
    # 2026-01-15 (Thursday). New York is UTC-5, Kolkata is UTC+5:30.
    w = DEFAULT_WINDOW
    assert not w.is_open(utc(2026, 1, 15, 2, 29, 59), KOLKATA)  # 07:59:59 IST
    assert w.is_open(utc(2026, 1, 15, 2, 30), KOLKATA)  # 08:00 IST: start inclusive
    assert w.is_open(utc(2026, 1, 15, 15, 29, 59), KOLKATA)  # 20:59:59 IST
    assert not w.is_open(utc(2026, 1, 15, 15, 30), KOLKATA)  # 21:00 IST: end exclusive

    assert not w.is_open(utc(2026, 1, 15, 12, 59, 59), NY)  # 07:59:59 EST
    assert w.is_open(utc(2026, 1, 15, 13, 0), NY)  # 08:00 EST
    assert w.is_open(utc(2026, 1, 16, 1, 59, 59), NY)  # 20:59:59 EST
    assert not w.is_open(utc(2026, 1, 16, 2, 0), NY)  # 21:00 EST

    # The same instant differs by zone.
    assert w.is_open(utc(2026, 1, 15, 14, 0), KOLKATA) and w.is_open(utc(2026, 1, 15, 14, 0), NY)
    assert w.is_open(utc(2026, 1, 15, 3, 0), KOLKATA) and not w.is_open(utc(2026, 1, 15, 3, 0), NY)
    assert not w.is_open(utc(2026, 1, 15, 20, 0), KOLKATA) and w.is_open(utc(2026, 1, 15, 20, 0), NY)


def test_is_open_accepts_any_aware_datetime():
    ist = timezone(timedelta(hours=5, minutes=30))
    assert DEFAULT_WINDOW.is_open(datetime(2026, 1, 15, 18, 30, tzinfo=ist), NY)  # = 08:00 EST
    with pytest.raises(ValueError):
        DEFAULT_WINDOW.is_open(datetime(2026, 1, 15, 13, 0), NY)


def test_weekdays_are_local():
    friday_2300_utc = utc(2026, 1, 16, 23, 0)  # Friday 18:00 New York, Saturday 08:00 Tokyo
    weekdays = window(days=["mon", "tue", "wed", "thu", "fri"])
    assert weekdays.is_open(friday_2300_utc, NY)
    assert not weekdays.is_open(friday_2300_utc, TOKYO)
    saturday = window(days=["sat"])
    assert saturday.is_open(friday_2300_utc, TOKYO)
    assert not saturday.is_open(friday_2300_utc, NY)
    assert not weekdays.is_open_everywhere(friday_2300_utc, [NY, TOKYO])


def test_unknown_zone_is_a_window_error():
    with pytest.raises(WindowError, match="unknown time zone 'Foo/Bar'"):
        DEFAULT_WINDOW.is_open(utc(2026, 1, 15, 14), "Foo/Bar")
    with pytest.raises(WindowError, match="at least one time zone"):
        DEFAULT_WINDOW.next_open(utc(2026, 1, 15, 14), [])


# --- windows crossing midnight -----------------------------------------------------------


def test_window_crossing_midnight_belongs_to_opening_day():
    friday_night = window(start="22:00", end="02:00", days=["fri"])
    # New York, January: UTC-5. 2026-01-16 is a Friday.
    assert not friday_night.is_open(utc(2026, 1, 16, 6, 0), NY)  # Fri 01:00: Thursday not in days
    assert not friday_night.is_open(utc(2026, 1, 17, 2, 59), NY)  # Fri 21:59
    assert friday_night.is_open(utc(2026, 1, 17, 3, 0), NY)  # Fri 22:00
    assert friday_night.is_open(utc(2026, 1, 17, 6, 0), NY)  # Sat 01:00: opened Friday
    assert not friday_night.is_open(utc(2026, 1, 17, 7, 0), NY)  # Sat 02:00: end exclusive
    assert not friday_night.is_open(utc(2026, 1, 17, 23, 0), NY)  # Sat 18:00
    assert not friday_night.is_open(utc(2026, 1, 18, 6, 0), NY)  # Sun 01:00: Saturday not in days

    assert friday_night.next_open(utc(2026, 1, 17, 7, 0), [NY]) == utc(2026, 1, 24, 3, 0)
    assert friday_night.closes_at(utc(2026, 1, 17, 3, 0), [NY]) == utc(2026, 1, 17, 7, 0)


def test_next_open_across_midnight():
    after = utc(2026, 1, 15, 3, 0)  # Wed 22:00 New York
    assert DEFAULT_WINDOW.next_open(after, [NY]) == utc(2026, 1, 15, 13, 0)  # Thu 08:00 EST


def test_next_open_returns_after_when_already_open():
    after = datetime(2026, 1, 15, 10, 15, 7, tzinfo=timezone(timedelta(hours=-5)))
    result = DEFAULT_WINDOW.next_open(after, [NY])
    assert result == after and result.tzinfo == UTC


def test_next_open_skips_days_not_listed():
    weekend = window(days=["sat", "sun"])
    assert weekend.next_open(utc(2026, 1, 14, 12), [NY]) == utc(2026, 1, 17, 13, 0)  # Sat 08:00 EST


# --- DST (US 2026: spring forward March 8, fall back November 1) -------------------------


def test_opening_around_spring_forward():
    assert DEFAULT_WINDOW.next_open(utc(2026, 3, 7, 2), [NY]) == utc(2026, 3, 7, 13, 0)  # Sat 08:00 EST
    assert DEFAULT_WINDOW.next_open(utc(2026, 3, 8, 2), [NY]) == utc(2026, 3, 8, 12, 0)  # Sun 08:00 EDT
    # Still 08:00-21:00 local on the day itself.
    assert DEFAULT_WINDOW.closes_at(utc(2026, 3, 8, 12), [NY]) == utc(2026, 3, 9, 1, 0)  # 21:00 EDT


def test_opening_around_fall_back():
    assert DEFAULT_WINDOW.next_open(utc(2026, 10, 31, 2), [NY]) == utc(2026, 10, 31, 12, 0)  # Sat 08:00 EDT
    assert DEFAULT_WINDOW.next_open(utc(2026, 11, 1, 2), [NY]) == utc(2026, 11, 1, 13, 0)  # Sun 08:00 EST
    assert DEFAULT_WINDOW.closes_at(utc(2026, 11, 1, 13), [NY]) == utc(2026, 11, 2, 2, 0)  # 21:00 EST


def test_start_in_spring_gap_opens_after_the_gap():
    night = window(start="02:30", end="05:00")
    assert night.next_open(utc(2026, 3, 7, 0), [NY]) == utc(2026, 3, 7, 7, 30)  # 02:30 EST
    assert night.next_open(utc(2026, 3, 8, 0), [NY]) == utc(2026, 3, 8, 7, 0)  # 03:00 EDT (02:30 skipped)
    assert night.next_open(utc(2026, 3, 9, 0), [NY]) == utc(2026, 3, 9, 6, 30)  # 02:30 EDT
    assert not night.is_open(utc(2026, 3, 8, 6, 59, 59), NY)  # 01:59:59 EST
    assert night.is_open(utc(2026, 3, 8, 7, 0), NY)


def test_end_in_spring_gap_closes_at_the_jump():
    w = window(start="01:00", end="02:30")
    assert w.closes_at(utc(2026, 3, 8, 6, 30), [NY]) == utc(2026, 3, 8, 7, 0)  # 01:59:59 EST -> 03:00 EDT


def test_end_in_repeated_hour_closes_at_first_occurrence():
    w = window(start="00:00", end="01:30")
    assert w.closes_at(utc(2026, 11, 1, 4, 30), [NY]) == utc(2026, 11, 1, 5, 30)  # first 01:30 (EDT)
    assert not w.is_open(utc(2026, 11, 1, 6, 15), NY)  # 01:15 EST, second pass: not counted as open


def test_start_in_repeated_hour_opens_at_second_occurrence():
    w = window(start="01:30", end="03:00")
    assert not w.is_open(utc(2026, 11, 1, 5, 45), NY)  # first 01:45 (EDT)
    assert not w.is_open(utc(2026, 11, 1, 6, 15), NY)  # 01:15 EST reads before 01:30
    assert w.next_open(utc(2026, 11, 1, 5, 0), [NY]) == utc(2026, 11, 1, 6, 30)  # second 01:30 (EST)


# --- several zones -----------------------------------------------------------------------


def test_multi_zone_intersection_new_york_los_angeles():
    zones = [NY, LA]
    opens = DEFAULT_WINDOW.next_open(utc(2026, 1, 15, 5, 0), zones)
    assert opens == utc(2026, 1, 15, 16, 0)  # 11:00 New York = 08:00 Los Angeles
    assert not DEFAULT_WINDOW.is_open_everywhere(opens - timedelta(seconds=1), zones)
    assert DEFAULT_WINDOW.is_open_everywhere(opens, zones)
    # New York closes first: 21:00 EST = 02:00 UTC (Los Angeles is open until 05:00 UTC).
    closes = DEFAULT_WINDOW.closes_at(utc(2026, 1, 15, 20, 0), zones)
    assert closes == utc(2026, 1, 16, 2, 0)
    assert DEFAULT_WINDOW.is_open_everywhere(closes - timedelta(seconds=1), zones)
    assert not DEFAULT_WINDOW.is_open_everywhere(closes, zones)
    assert DEFAULT_WINDOW.closes_at(utc(2026, 1, 15, 15, 0), zones) is None  # not open in Los Angeles yet


def test_never_overlapping_zones():
    # Kiritimati is UTC+14 and Pago Pago UTC-11: 09:00-10:00 is 19:00-20:00 UTC in one and
    # 20:00-21:00 UTC in the other. They touch but never overlap (end is exclusive).
    zones = ["Pacific/Kiritimati", "Pacific/Pago_Pago"]
    narrow = window(start="09:00", end="10:00")
    assert narrow.next_open(utc(2026, 1, 15), zones) is None
    assert narrow.never_open_together(zones)
    wider = window(start="09:00", end="11:00")
    assert wider.next_open(utc(2026, 1, 15), zones) == utc(2026, 1, 15, 20, 0)
    assert not wider.never_open_together(zones)
    assert not DEFAULT_WINDOW.never_open_together([NY, LA])


def test_never_open_together_scans_the_whole_year():
    # 09:00-10:00 in New York and Puerto Rico (UTC-4, no DST) only overlaps while New York is on EDT.
    zones = [NY, "America/Puerto_Rico"]
    narrow = window(start="09:00", end="10:00")
    assert narrow.next_open(utc(2026, 1, 15), zones) is None
    assert narrow.next_open(utc(2026, 1, 15), zones, horizon_days=60) == utc(2026, 3, 8, 13, 0)
    assert not narrow.never_open_together(zones)


def test_next_open_respects_horizon():
    sunday_only = window(days=["sun"])
    after = utc(2026, 1, 12, 12)  # Monday
    assert sunday_only.next_open(after, [NY], horizon_days=5) is None
    assert sunday_only.next_open(after, [NY], horizon_days=7) == utc(2026, 1, 18, 13, 0)


def test_round_the_clock_window():
    always = window(start="00:00", end="24:00")
    at = utc(2026, 3, 8, 7, 0)
    assert always.is_open_everywhere(at, [NY, KOLKATA])
    assert always.next_open(at, [NY, KOLKATA]) == at
    assert always.closes_at(at, [NY, KOLKATA], horizon_days=3) == at + timedelta(days=3)


# --- zone names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["America/New_York", "Asia/Kolkata", "UTC", "Pacific/Kiritimati"])
def test_valid_zone_accepts_real_zones(name):
    assert valid_zone(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Foo/Bar",
        "America",
        "localtime",
        "../zoneinfo/UTC",
        "/usr/share/zoneinfo/UTC",
        "America/../America/New_York",
        "America/New_York\x00",
        None,
        5,
        ["America/New_York"],
        {"zone": "UTC"},
    ],
)
def test_valid_zone_rejects(name):
    assert not valid_zone(name)
