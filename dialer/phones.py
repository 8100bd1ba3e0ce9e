"""Phone numbers: normalisation to E.164 and the candidate time zones of a number (phonenumbers metadata)."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberFormat, is_possible_number, is_valid_number
from phonenumbers.timezone import time_zones_for_geographical_number

UNKNOWN_ZONE = "Etc/Unknown"
MAX_RAW_LENGTH = 64


class PhoneError(ValueError):
    """The number cannot be dialled; the message says why (shown to the caller)."""


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    e164: str
    extension: str | None
    zones: tuple[str, ...]  # candidate IANA zones from the number's prefix; empty when unknown


class PhoneNormaliser:
    """Turns what partners send into E.164.

    Numbers without "+" are read in `default_region`. Possible numbers are accepted (the seeds dial
    "+1 (555) 123-4567", which is possible but not valid); `strict` also demands validity.
    """

    def __init__(self, default_region: str = "US", strict: bool = False) -> None:
        self.default_region = default_region.upper()
        self.strict = strict

    def normalise(self, raw: object) -> PhoneNumber:
        if not isinstance(raw, str):
            raise PhoneError("phoneNumber must be a string")
        if not raw.strip():
            raise PhoneError("phoneNumber is empty")
        if len(raw) > MAX_RAW_LENGTH:
            raise PhoneError(f"phoneNumber is longer than {MAX_RAW_LENGTH} characters")
        try:
            number = phonenumbers.parse(raw, self.default_region)
        except phonenumbers.NumberParseException as exc:
            raise PhoneError(f"not a phone number: {exc._msg}") from None
        if not is_possible_number(number):
            raise PhoneError("impossible phone number (wrong length for its country)")
        if self.strict and not is_valid_number(number):
            raise PhoneError("invalid phone number (strict numbers are on)")
        # The prefix lookup is ten times cheaper than time_zones_for_number (which first classifies
        # the number) and gives the same zones for valid geographic numbers; other numbers get the
        # zones of their whole country, which the multi-zone rule then treats as ambiguous.
        zones = time_zones_for_geographical_number(number)
        return PhoneNumber(
            e164=phonenumbers.format_number(number, PhoneNumberFormat.E164),
            extension=number.extension,
            zones=() if zones[0] == UNKNOWN_ZONE else tuple(zones),
        )
