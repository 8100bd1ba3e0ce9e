"""What partners and operators do, drawn from the run's seed: numbers in many zones, batches with random
limits, windows, days, zones, scheduled starts and retry policies; the expected zones of each record,
computed here from the record, the number (phonenumbers) and the batch, by DESIGN.md's precedence."""

from __future__ import annotations

import datetime as dt
import random
from functools import lru_cache

import phonenumbers
from phonenumbers import timezone as pn_timezone

from dialer.core.clock import iso

# Area prefixes and how many digits follow: single-zone and multi-zone NANP area codes (208 Boise/Los
# Angeles, 701 Denver/North Dakota, 907 Adak/Anchorage), zones without DST (Regina, Phoenix, Honolulu,
# Kolkata, Tokyo), the southern hemisphere (Sydney, Santiago: DST the other way round), London's four.
AREAS = (("+1212", 7), ("+1850", 7), ("+1208", 7), ("+1306", 7), ("+1701", 7), ("+1928", 7), ("+1808", 7),
         ("+1907", 7), ("+1402", 7), ("+1541", 7), ("+44207", 7), ("+6129", 7), ("+8135", 7), ("+5622", 7),
         ("+9198", 8))
US_AREAS = AREAS[:10]  # North America only: mostly open at the same time (denser runs)
ZONE_CHOICES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "Europe/London",
                "Australia/Sydney", "America/Santiago", "Asia/Tokyo", "Pacific/Honolulu")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OUTCOMES = ("busy", "failed", "machine", "no_answer")
# Sundays of DST changes in 2026 (the run starts the evening before, UTC): US back and forward, Europe
# back, Australia and Chile forward and back.
DST_EVES = (dt.datetime(2026, 3, 7, tzinfo=dt.timezone.utc), dt.datetime(2026, 3, 28, tzinfo=dt.timezone.utc),
            dt.datetime(2026, 4, 4, tzinfo=dt.timezone.utc), dt.datetime(2026, 9, 5, tzinfo=dt.timezone.utc),
            dt.datetime(2026, 10, 3, tzinfo=dt.timezone.utc), dt.datetime(2026, 10, 24, tzinfo=dt.timezone.utc),
            dt.datetime(2026, 10, 31, tzinfo=dt.timezone.utc))


def start_instant(rng: random.Random) -> dt.datetime:
    """The evening before a DST change (UTC), at a random minute between 18:00 and 23:59."""
    return rng.choice(DST_EVES) + dt.timedelta(hours=18, minutes=rng.randrange(360))


@lru_cache(maxsize=4096)
def _zones_of_prefix(prefix: str) -> tuple[str, ...]:
    return tuple(pn_timezone.time_zones_for_number(phonenumbers.parse(prefix + "0000")))


def number_zones(number: str) -> tuple[str, ...]:
    """The zones phonenumbers gives for the number (by its first digits, cached)."""
    return _zones_of_prefix(number[:-4])


class Numbers:
    """Numbers round the areas, mostly new; now and then one given lately, as a person on two lists is (the same
    callee in two batches: never in two calls at once)."""

    AGAIN = 0.03  # the share of numbers given again
    RECENT = 5000  # from among the latest this many

    def __init__(self, rng: random.Random, areas: tuple = AREAS) -> None:
        self.rng = rng
        self.areas = areas
        self.n = 0
        self.recent: list[str] = []

    def fresh(self, avoid: set | frozenset = frozenset()) -> str:
        """A number; one of `avoid` (the batch's own) only as a new one would never be."""
        if self.recent and self.rng.random() < self.AGAIN:
            again = self.rng.choice(self.recent)
            if again not in avoid:
                return again
        area, digits = self.rng.choice(self.areas)
        self.n += 1
        n = self.n
        if area.startswith("+1"):  # NANP: the exchange starts with 2-9
            number = f"{area}{200 + (n // 10000) % 800:03d}{n % 10000:04d}"
        else:
            number = f"{area}{n % 10 ** digits:0{digits}d}"
        if len(self.recent) < self.RECENT:
            self.recent.append(number)
        else:
            self.recent[n % self.RECENT] = number
        return number


def expected_zones(record_zone: str | None, number: str, batch_zone: str | None,
                   agent_zone: str | None) -> tuple[str, ...]:
    """DESIGN.md: the record's zone > the number's single zone > the batch's > the agent's > all of the number's."""
    if record_zone:
        return (record_zone,)
    zones = number_zones(number)
    if len(zones) == 1:
        return zones
    if batch_zone:
        return (batch_zone,)
    if agent_zone:
        return (agent_zone,)
    return zones


def random_window(rng: random.Random, wide: float = 0.35) -> dict:
    """The default window with probability `wide`, else one near or across midnight, or a random one."""
    kind = rng.random()
    if kind < wide:
        return {"start": "08:00", "end": "21:00", "days": list(DAYS)}
    if kind < wide + (1 - wide) * 0.3:  # near midnight, or across it
        start, end = rng.choice([("22:00", "02:00"), ("00:00", "06:00"), ("20:00", "24:00"), ("23:30", "08:30"),
                                 ("18:00", "00:00")])
    else:
        first = rng.randrange(5, 20) * 60 + rng.choice([0, 30])
        length = rng.randrange(3, 15) * 60
        start, end = f"{first // 60:02d}:{first % 60:02d}", f"{(first + length) // 60 % 24:02d}:{first % 60:02d}"
        if end == "00:00":
            end = "24:00"
    days = sorted(rng.sample(range(7), rng.randrange(3, 8)))
    return {"start": start, "end": end, "days": [DAYS[d] for d in days]}


def random_retry(rng: random.Random) -> dict:
    if rng.random() < 0.3:
        return {"maxAttempts": 1, "on": []}
    return {"maxAttempts": rng.randrange(2, 4), "delaySeconds": rng.choice([0, 10, 60, 300]),
            "on": sorted(rng.sample(OUTCOMES, rng.randrange(1, 5)))}


def batch_body(rng: random.Random, n: int, agent_id: str, now: dt.datetime, limit_scale: int,
               wide: float) -> dict:
    body = {"name": f"sim batch {n}", "agentId": agent_id,
            "concurrencyLimit": rng.choice([1, 2, 5, 10, 20, 50]) * limit_scale,
            "callingWindow": random_window(rng, wide), "retry": random_retry(rng),
            "ringingTimeoutSeconds": rng.choice([10, 20, 30])}
    if rng.random() < 0.3:
        body["timezone"] = rng.choice(ZONE_CHOICES)
    if rng.random() < 0.2:
        body["scheduledAt"] = iso(now + dt.timedelta(seconds=rng.randrange(30, 3600)))
    return body


def patch_body(rng: random.Random, limit_scale: int, wide: float) -> dict:
    pick = rng.random()
    if pick < 0.4:
        return {"concurrencyLimit": rng.choice([1, 2, 5, 10, 20, 50]) * limit_scale}
    if pick < 0.7:
        return {"callingWindow": random_window(rng, wide)}
    if pick < 0.9:
        return {"retry": random_retry(rng)}
    return {"ringingTimeoutSeconds": rng.choice([10, 20, 30]), "name": "renamed"}
