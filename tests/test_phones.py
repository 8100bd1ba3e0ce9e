"""PhoneNormaliser: the North American fast path against plain phonenumbers, and the error messages."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat
from phonenumbers.timezone import time_zones_for_geographical_number
from phonenumbers.tzdata import TIMEZONE_DATA

from dialer.core import phones
from dialer.core.phones import MAX_RAW_LENGTH, PhoneError, PhoneNormaliser

SEED = 20261123

FORMATS = (
    "+1 ({a}) {e}-{n}", "+1 ({a}){e}-{n}", "+1({a}) {e}-{n}", "1{a}{e}{n}", "+1{a}{e}{n}", "{a}{e}{n}",
    "{a}-{e}-{n}", "{a}.{e}.{n}", "{a} {e} {n}", "({a}) {e}-{n}", "({a}){e}-{n}", "({a}){e}{n}",
    "+1 {a} {e} {n}", "1 {a} {e} {n}", "+1-{a}-{e}-{n}", "1-{a}-{e}-{n}", "1.{a}.{e}.{n}", "+1.{a}.{e}.{n}",
    "1({a}) {e}-{n}", "1 ({a}) {e}.{n}", "{a}{e}-{n}", "{a}-{e}{n}", "{a} {e}.{n}", "+1{a}-{e} {n}",
)
TRICKY = (
    "+2125550123", "0212 555 0123", "1 212 555 0123 ext 4", "+1 212 555 01234", "2125550123 ", " +12125550123",
    "１２１２５５５０１２３", "212-555-0123x5", "(212)555-0123", "1-212-555-0123", "+1-212-555-0123",
    "+44 20 7183 8750", "12", "", "abc", "   ", "2125550123\n", "+12125550123\n", "212--555-0123", "212  555 0123",
    "(212 555-0123", "212) 555-0123", "((212)) 555-0123", "+ 1 212 555 0123", "++12125550123", "11 212 555 0123",
    "+11 212 555 0123", "1212555012", "212555012", "21255501234", "112125550123", "+112125550123",
    "1 112 555 0123", "+1 112 555 0123", "012 555 0123", "212 155 0123", "212 055 0123", "+1 212 055 0123",
    "2125550123#", "212-555-0123;ext=7", "tel:+1-212-555-0123", "+1 (212) 555-0123 x 12", "+1 212 555 0123 ",
    "1.2125550123", "+1/212/555/0123", "212/555/0123", "+1 ٢١٢ ٥٥٥ ٠١٢٣", "+1 212 555 0l23", "+1 (800) FLOWERS",
    "+1 800 356 9377", "+1 500 555 0123", "+1 900 555 0123", "+1 833 555 0123", "+1 911 911 9111",
    "+52 55 1234 5678", "+7 212 555 0123", "+12 125 550 123", "+1\u00a0212\u00a0555\u00a00123",
    "+1 212 555 0123" + " " * 60, "1" * 65,
    # Incomplete numbers (phonenumbers: "possible local only") and lengths around the NANP's ten digits.
    "555-0100", "+1 555 0100", "2125550", "+44 20 7946", "555 0100", "1 555 0100", "212 5550", "+1 212 5550",
    "21255501", "212555012", "+1212555012", "12125550123", "121255501234", "+121255501234", "2125550123456",
    "+1 (212) 555-012", "(212) 555-01234", "+44 20 7946 0958", "+44 7946 0958", "020 7946 0958",
)
REGIONS = ("US", "CA", "GB", "ZZ", "PR")


def reference(raw: object, region: str, strict: bool) -> tuple:
    """What normalise must answer, by plain phonenumbers: ("ok", e164, extension, zones) or ("error", message)."""
    if not isinstance(raw, str):
        return ("error", "phoneNumber must be a string")
    if not raw.strip():
        return ("error", "phoneNumber is empty")
    if len(raw) > MAX_RAW_LENGTH:
        return ("error", f"phoneNumber is longer than {MAX_RAW_LENGTH} characters")
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        return ("error", f"not a phone number: {exc._msg}")
    if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
        return ("error", "impossible phone number (wrong length for its country)")
    if strict and not phonenumbers.is_valid_number(number):
        return ("error", "invalid phone number (strict numbers are on)")
    zones = time_zones_for_geographical_number(number)
    zones = () if zones[0] == "Etc/Unknown" else tuple(zones)
    return ("ok", phonenumbers.format_number(number, PhoneNumberFormat.E164), number.extension, zones)


def actual(normaliser: PhoneNormaliser, raw: object) -> tuple:
    try:
        number = normaliser.normalise(raw)
    except PhoneError as exc:
        return ("error", str(exc))
    assert isinstance(number.zones, tuple)
    return ("ok", number.e164, number.extension, number.zones)


def random_numbers(count: int) -> list[tuple[str, str, str]]:
    """Random NXX-NXX-XXXX numbers, weighted towards special area codes and exchanges."""
    rng = random.Random(SEED)
    special_areas = ("500", "800", "833", "844", "855", "866", "877", "888", "900", "211", "411", "911", "555",
                     "907", "808", "212", "684", "671", "787", "939", "340", "670", "242", "876", "264", "600")
    special_exchanges = ("211", "311", "411", "511", "611", "711", "811", "911", "555", "200", "999", "976")
    # Area code and exchange prefixes that the zone data distinguishes (including the longest keys).
    zone_keys = sorted(key[1:] for key in TIMEZONE_DATA if key[0] == "1" and len(key) > 1 and key[1] in "23456789")
    out = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.3 and zone_keys:
            digits = rng.choice(zone_keys)
            if len(digits) >= 4 and digits[3] not in "23456789":
                digits = digits[:3]
            digits += "".join(rng.choice("0123456789") for _ in range(10 - len(digits)))
            if digits[3] not in "23456789":
                digits = digits[:3] + rng.choice("23456789") + digits[4:]
            area, exchange, line = digits[:3], digits[3:6], digits[6:]
        else:
            area = rng.choice(special_areas) if kind < 0.5 else str(rng.randrange(200, 1000))
            exchange = rng.choice(special_exchanges) if rng.random() < 0.3 else str(rng.randrange(200, 1000))
            line = f"{rng.randrange(10_000):04d}"
        out.append((area, exchange, line))
    return out


NUMBERS = random_numbers(3000)


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("strict", [False, True])
def test_formats_match_phonenumbers(region, strict):
    normaliser = PhoneNormaliser(region, strict)
    rng = random.Random(f"{SEED}-{region}-{strict}")
    for area, exchange, line in NUMBERS:
        for fmt in rng.sample(FORMATS, 6):
            raw = fmt.format(a=area, e=exchange, n=line)
            assert actual(normaliser, raw) == reference(raw, region, strict), raw


def test_every_format_of_some_numbers_matches_phonenumbers():
    normaliser = PhoneNormaliser("US")
    for area, exchange, line in NUMBERS[:300]:
        for fmt in FORMATS:
            raw = fmt.format(a=area, e=exchange, n=line)
            assert actual(normaliser, raw) == reference(raw, "US", False), raw


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("strict", [False, True])
def test_tricky_inputs_match_phonenumbers(region, strict):
    normaliser = PhoneNormaliser(region, strict)
    for raw in TRICKY:
        assert actual(normaliser, raw) == reference(raw, region, strict), raw


def test_zone_lookup_depends_only_on_the_cached_prefix():
    # The condition the fast path's cache relies on: no +1 zone key is longer than the cached prefix.
    assert all(len(key) <= phones._ZONE_PREFIX_DIGITS for key in TIMEZONE_DATA if key[0] == "1")
    normaliser = PhoneNormaliser("US")
    rng = random.Random(SEED)
    for key in (k for k in TIMEZONE_DATA if k[0] == "1" and len(k) >= 4 and k[1] in "23456789"):
        for _ in range(3):
            digits = key[1:] + "".join(rng.choice("0123456789") for _ in range(10 - len(key[1:])))
            if digits[3] in "01":
                continue
            raw = "+1" + digits
            assert actual(normaliser, raw) == reference(raw, "US", False), raw


def test_every_nanp_shape_is_possible():
    for area in range(200, 1000):
        for exchange in (200, 211, 555, 999, 200 + area % 800):
            number = phonenumbers.PhoneNumber(country_code=1, national_number=int(f"{area}{exchange}0000"))
            assert phonenumbers.is_possible_number(number)


@pytest.mark.parametrize("raw", ["+1 (212) 555-0123", "12125550123", "+12125550123", "212-555-0123",
                                 "212.555.0123", "(212) 555-0123", "+1 212 555 0123", "(212)555-0123"])
def test_common_shapes_take_the_fast_path(raw, monkeypatch):
    expected = reference(raw, "US", False)

    def no_parse(*args, **kwargs):
        raise AssertionError("slow path taken")

    monkeypatch.setattr(phonenumbers, "parse", no_parse)
    assert actual(PhoneNormaliser("US"), raw) == expected == ("ok", "+12125550123", None, ("America/New_York",))
    assert actual(PhoneNormaliser("ca"), raw) == expected
    if raw.startswith("+1"):
        assert actual(PhoneNormaliser("GB"), raw) == expected
    else:
        with pytest.raises(AssertionError, match="slow path taken"):
            PhoneNormaliser("GB").normalise(raw)
    with pytest.raises(AssertionError, match="slow path taken"):
        PhoneNormaliser("US", strict=True).normalise(raw)


@pytest.mark.parametrize("raw, message", [
    (12125550123, "phoneNumber must be a string"),
    (None, "phoneNumber must be a string"),
    (b"+12125550123", "phoneNumber must be a string"),
    ("", "phoneNumber is empty"),
    ("  \t", "phoneNumber is empty"),
    ("1" * 65, "phoneNumber is longer than 64 characters"),
    ("abc", "not a phone number: The string supplied did not seem to be a phone number."),
    ("1", "not a phone number: The string supplied did not seem to be a phone number."),
    ("12", "impossible phone number (wrong length for its country)"),
    ("+1 212 555 01234", "impossible phone number (wrong length for its country)"),
])
def test_error_messages(raw, message):
    with pytest.raises(PhoneError) as info:
        PhoneNormaliser("US").normalise(raw)
    assert str(info.value) == message


def test_strict_rejects_possible_but_invalid_numbers():
    assert PhoneNormaliser("US").normalise("+1 (555) 123-4567").e164 == "+15551234567"
    with pytest.raises(PhoneError, match=r"^invalid phone number \(strict numbers are on\)$"):
        PhoneNormaliser("US", strict=True).normalise("+1 (555) 123-4567")


def test_extension_and_unknown_zones():
    number = PhoneNormaliser("US").normalise("212-555-0123 ext 4")
    assert (number.e164, number.extension, number.zones) == ("+12125550123", "4", ("America/New_York",))
    assert PhoneNormaliser("US").normalise("+1 500 555 0123").zones == reference("+15005550123", "US", False)[3]


@pytest.mark.parametrize("raw", ["555-0100", "+1 555 0100", "2125550", "+44 20 7946", "555 0100", "+1 212 5550"])
def test_incomplete_numbers_are_impossible(raw):
    # phonenumbers calls these "possible local only": without their area code they reach nobody.
    with pytest.raises(PhoneError, match="impossible"):
        PhoneNormaliser("US").normalise(raw)
