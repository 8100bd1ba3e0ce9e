"""Phone numbers: normalisation to E.164 and the candidate time zones of a number (phonenumbers metadata).

Fast path. Almost everything partners send is a plain North American number ("+1 (212) 555-0123",
"12125550123", "+12125550123", "212-555-0123", ...), and phonenumbers.parse costs most of the time of
normalising one. `_NANP` recognises exactly those shapes: an optional "+1" or "1" (with "+" only when
followed by "1"), then area code NXX, exchange NXX and four digits (N = 2-9, ASCII digits only), the
groups separated by nothing, one space, one "-" or one ".", the area code optionally in parentheses.
For such a string (and `strict` off; without "+" only when the default region is US or CA, whose
national prefix is "1") the slow path's answer is known without parsing:

* parse gives country code 1 and national number NXXNXXXXXX: the separators are punctuation it drops,
  a leading "1" without "+" is the national prefix (or the country code; either way it is dropped,
  since 11 digits are too long for US/CA), and a national number starting with 2-9 has no national
  prefix to strip and no extension;
* is_possible_number_with_reason is IS_POSSIBLE: the US metadata (which country code 1 uses) allows
  every 10-digit national number (shorter ones are at best "local only", which we refuse);
* E.164 is "+1" followed by the ten digits;
* time_zones_for_geographical_number looks up the longest E.164 digit prefix (at most
  TIMEZONE_LONGEST_PREFIX digits) present in TIMEZONE_DATA. Every candidate prefix starts with "1",
  and no key starting with "1" is longer than `_ZONE_PREFIX_DIGITS` digits, so the answer depends only
  on the first `_ZONE_PREFIX_DIGITS` digits of "1NXXNXXXXXX" (with today's data: country code, area
  code and exchange). The lookup is cached on exactly that prefix.

tests/test_phones.py checks the fast path against plain phonenumbers, and everything else (strict
numbers, other regions or shapes, extensions, whitespace, non-ASCII digits) takes the slow path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberFormat, ValidationResult, is_possible_number_with_reason, is_valid_number
from phonenumbers.timezone import time_zones_for_geographical_number
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

UNKNOWN_ZONE = "Etc/Unknown"
MAX_RAW_LENGTH = 64

_NANP = re.compile(r"(\+?1[-. ]?)?(?:\(([2-9][0-9]{2})\) ?|([2-9][0-9]{2})[-. ]?)([2-9][0-9]{2})[-. ]?([0-9]{4})")
_NANP_REGIONS = frozenset({"US", "CA"})
# Digits of "1NXXNXXXXXX" that the zone lookup can read (see the module docstring); at most all 11.
_ZONE_PREFIX_DIGITS = min(TIMEZONE_LONGEST_PREFIX, 11, max(len(key) for key in TIMEZONE_DATA if key[0] == "1"))


class PhoneError(ValueError):
    """The number cannot be dialled; the message says why (shown to the caller)."""


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    e164: str
    extension: str | None
    zones: tuple[str, ...]  # candidate IANA zones from the number's prefix; empty when unknown


def _zones(number: phonenumbers.PhoneNumber) -> tuple[str, ...]:
    # The prefix lookup is ten times cheaper than time_zones_for_number (which first classifies the
    # number) and gives the same zones for valid geographic numbers; other numbers get the zones of
    # their whole country, which the multi-zone rule then treats as ambiguous.
    zones = time_zones_for_geographical_number(number)
    return () if zones[0] == UNKNOWN_ZONE else tuple(zones)


@lru_cache(maxsize=1 << 16)
def _nanp_zones(prefix: str) -> tuple[str, ...]:
    """Zones of every +1 number whose E.164 digits start with `prefix` (`_ZONE_PREFIX_DIGITS` long)."""
    return _zones(phonenumbers.PhoneNumber(country_code=1, national_number=int(prefix[1:].ljust(10, "0"))))


class PhoneNormaliser:
    """Turns what partners send into E.164.

    Numbers without "+" are read in `default_region`. Possible numbers are accepted (the seeds dial
    "+1 (555) 123-4567", which is possible but not valid); `strict` also demands validity.
    """

    def __init__(self, default_region: str = "US", strict: bool = False) -> None:
        self.default_region = default_region.upper()
        self.strict = strict
        self._fast = not strict
        self._fast_national = not strict and self.default_region in _NANP_REGIONS

    def e164_each(self, raws: list) -> list[str]:
        """Several numbers in E.164, in order; a PhoneError naming the first that is not a number."""
        out = []
        for raw in raws:
            try:
                out.append(self.normalise(raw).e164)
            except PhoneError as exc:
                raise PhoneError(f"{raw!r}: {exc}") from None
        return out

    def normalise(self, raw: object, zones: bool = True) -> PhoneNumber:
        """`zones=False`: the number only (its `zones` left empty), for a caller that never dials it."""
        if not isinstance(raw, str):
            raise PhoneError("phoneNumber must be a string")
        # A match is non-empty, short and unpadded, so the checks below could not reject it.
        if self._fast and (match := _NANP.fullmatch(raw)) is not None:
            prefix, area_paren, area, exchange, line = match.groups()
            if self._fast_national or (prefix is not None and prefix[0] == "+"):
                digits = "1" + (area or area_paren) + exchange + line
                return PhoneNumber("+" + digits, None, _nanp_zones(digits[:_ZONE_PREFIX_DIGITS]) if zones else ())
        if not raw.strip():
            raise PhoneError("phoneNumber is empty")
        if len(raw) > MAX_RAW_LENGTH:
            raise PhoneError(f"phoneNumber is longer than {MAX_RAW_LENGTH} characters")
        try:
            number = phonenumbers.parse(raw, self.default_region)
        except phonenumbers.NumberParseException as exc:
            raise PhoneError(f"not a phone number: {exc._msg}") from None
        # IS_POSSIBLE only: a number phonenumbers calls "possible local only" ("555-0100", "+44 20 7946")
        # lacks its area code, and dialling it from elsewhere reaches nobody (or someone else).
        if is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
            raise PhoneError("impossible phone number (wrong length for its country)")
        if self.strict and not is_valid_number(number):
            raise PhoneError("invalid phone number (strict numbers are on)")
        return PhoneNumber(
            e164=phonenumbers.format_number(number, PhoneNumberFormat.E164),
            extension=number.extension,
            zones=_zones(number) if zones else (),
        )
