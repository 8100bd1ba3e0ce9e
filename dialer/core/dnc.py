"""The do-not-call rules, pure: how a request's numbers are read, and what a stopped call says about why.

A listed number is the line itself (E.164, normalised as every number here by dialer/core/phones.py): an
extension given with it is dropped, since the person asked not to be called at that line. A call stopped
by the list ends `skipped` with outcome `suppressed` and a history entry `{at, event: "suppressed", rule}`
whose rule names the listing: `"dnc: <source> <YYYY-MM-DD listed>"` (e.g. `"dnc: opt-out 2026-12-05"`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from dialer.core.clock import as_utc
from dialer.core.phones import PhoneError, PhoneNormaliser

SUPPRESSED = "suppressed"  # the outcome and the history event of a call stopped by a rule
MAX_NUMBERS = 100_000  # per request
MAX_REASON = 500
SOURCE = re.compile(r"[a-z][a-z0-9-]{0,31}")  # manual, import, opt-out, api, or a partner's own word
OPT_OUT = "opt-out"


def rule(entry: dict) -> str:
    """The rule that stopped a call, from the listing that stopped it."""
    return f"dnc: {entry['source']} {as_utc(entry['listedAt']):%Y-%m-%d}"


def suppression(now: dt.datetime, entry: dict) -> dict:
    """The history entry of a call the listing `entry` stopped."""
    return {"at": now, "event": SUPPRESSED, "rule": rule(entry)}


@dataclass
class Numbers:
    """A request's numbers read: the distinct valid ones in E.164 (first-seen order), the impossible ones
    with their index and reason, and how many valid ones repeated an earlier one."""

    valid: list[str] = field(default_factory=list)
    invalid: list[dict] = field(default_factory=list)
    repeated: int = 0


def read_numbers(phones: PhoneNormaliser, raws: list[Any]) -> Numbers:
    out = Numbers()
    seen: set[str] = set()
    for index, raw in enumerate(raws):
        try:
            e164 = phones.normalise(raw, zones=False).e164
        except PhoneError as exc:
            out.invalid.append({"index": index, "phoneNumber": raw if isinstance(raw, str) else None,
                                "reason": str(exc)})
            continue
        if e164 in seen:
            out.repeated += 1
            continue
        seen.add(e164)
        out.valid.append(e164)
    return out
