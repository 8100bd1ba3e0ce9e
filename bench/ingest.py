"""Ingestion throughput and latency: addCallsToBatch against the cost of phone parsing and of bare HTTP.

Run with `python -m bench.ingest` (or `make bench`); one run measures everything side by side, since the
machine is shared and noisy (ratios matter, not absolute times). The process applies
dialer.runtime.tune_gc() first, as `dialer serve` does.

Input: 100,000 deterministic records (seeded) shaped like real traffic. About 80% of the distinct
numbers are plain North American numbers in four formats ("+1 (212) 555-0123", "12125550123",
"+12125550123", "212-555-0123") over sixteen area codes from Eastern to Hawaii time (most 907 numbers
map to two zones and take the agent's zone); the other 20% take phonenumbers' slow path (they do not
match the `_NANP` regex of dialer/core/phones.py): 8% foreign numbers (GB FR DE IN BR MX AU ES IT JP
PH, fixed and mobile, valid; first written the international way with the country's own spacing,
"+44 20 7946 0123", their duplicates in E.164 or after the US exit code, "011 44 20 ..."; a foreign
number that maps to several zones gets a "timezone" field, the others none),
6% NANP numbers with odd spacing ("+1  212  555  0123", "212.555.0123 " with a trailing space,
"+1 (212)-555-0123", ...), 3% vanity numbers ("+1 (800) FLOWERS", "1-877-356-CARS") and 3% numbers
with an extension ("... ext 12", "... x7", ";ext=3"; the number and its extension are the callee).
5% of the records repeat an earlier number in another format of its kind. Every record has custom
fields (a name with some unicode, account_id, priority, amount). Every record is checked at
generation: PhoneNormaliser("US") must give the expected E.164 and extension (otherwise another
format or number is drawn), and the Planner must find no error in the whole request. The run prints
the share of records that took the slow path.

  floor     bare phonenumbers.parse(raw, "US") + is_possible_number_with_reason + format_number(E164)
            on the same raw numbers: what ingestion would cost with no fast path and nothing else.
  pipeline  the ingestion pipeline with the embedded store, inline on the event loop: orjson.loads of
            the request body, validate_envelope, Planner.plan (the batch's default window, agent zone
            America/New_York, clock at Monday 2026-11-23 15:00 UTC), then repos.calls.enqueue for every
            chunk (settings.chunk_size = 1,000) into a fresh SQLite :memory: store per round holding the
            batch document (repos.batches.insert). The store's share is the enqueue time over the
            pipeline's. (The app also offloads parsing and planning to a thread; not measured here.)

The floor and the pipeline alternate for --rounds rounds (the order flips every round); reported:
their median records/s and the median of the per-round ratios pipeline/floor (goal >= 0.7).

Over HTTP (bench/ingest_http.py; skipped with --no-http). The real app, build_app(Settings.load(env={},
embedded_dispatcher="false"), FixedClock at the same instant), is served by a subprocess (aiohttp
AppRunner + TCPSite on 127.0.0.1, port 0, tune_gc applied, access log off); the subprocess creates a
workspace and its agent through app[TENANCY], as tests/conftest.py make_api does. The bench process is
the client (aiohttp ClientSession), timing from before the POST until the answer is read:

  e2e 10k / 100k  POST /api/call/createBatch, then one addCallsToBatch request with the first 10,000
            records, then (fresh batch) one with all 100,000; records/s of each and the growth
            time(100k) / time(10k) (goal <= 11: linear). A 10,000-record request to a third batch
            warms the server first (its body, over 1 MB, starts the worker process that parses large
            bodies). Every answer must be 200 with added = inserted = the distinct
            callees of its records and duplicatesCollapsed = the rest (else the run exits non-zero).
  HTTP floor the same 100,000-record body POSTed to a bare aiohttp app (another subprocess, same body
            limit) whose handler only does orjson.loads(await request.read()) and answers a small
            JSON; the median of 3 requests. Reported: ours / floor in records/s (goal >= 0.25).
  /health   during the 100,000-record request a second client (its own session) GETs /health, waiting
            20 ms after each answer; reported: the longest answer time (goal < 100 ms) and the count.
            The app offloads JSON parsing and planning of large requests to a thread, but the event
            loop thread still competes with it for the GIL, and the store writes run on the loop.

The run ends with a table of every figure, its goal and MET / MISSED ("info" where there is none). It
exits 0 whatever the figures, and non-zero if a correctness check fails.

Options: --records N (the small HTTP request has N/10), --rounds N, --no-http, --profile (cProfile of
one round of the pipeline, top functions, nothing else).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import logging
import pstats
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import orjson
import phonenumbers
from bson import ObjectId
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from dialer.core.phones import _NANP, PhoneError, PhoneNormaliser
from dialer.core.records import IngestContext, Planner, validate_envelope
from dialer.core.windows import CallingWindow
from dialer.runtime import tune_gc
from dialer.settings import Settings
from dialer.store.sqlite import open_sqlite

SEED = 20261123
RECORDS = 100_000
DUPLICATE_SHARE = 0.05
ROUNDS = 5
GOAL_PIPELINE_RATIO = 0.7
# A Monday, 10:00 in New York (as in tests/conftest.py): the default window is open on the east coast.
T0 = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.timezone.utc)
AGENT_ZONE = "America/New_York"

# Kinds of distinct numbers and their shares; all but "plain" take phonenumbers' slow path.
KINDS = (("plain", 0.80), ("foreign", 0.08), ("spaced", 0.06), ("vanity", 0.03), ("extension", 0.03))

# Area codes phonenumbers knows, spread over the US time zones (907 maps to two zones).
AREA_CODES = (212, 305, 617, 404,  # Eastern
              312, 512, 713,  # Central
              303, 801,  # Mountain
              602,  # Arizona (no DST)
              415, 702, 206, 503,  # Pacific
              808,  # Hawaii
              907)  # Alaska: mostly America/Anchorage + America/Adak -> the agent's zone
Nanp = Callable[[int, int, int], str]
FORMATS: tuple[Nanp, ...] = (  # the fast path's shapes
    lambda a, e, n: f"+1 ({a}) {e}-{n:04d}",
    lambda a, e, n: f"1{a}{e}{n:04d}",
    lambda a, e, n: f"+1{a}{e}{n:04d}",
    lambda a, e, n: f"{a}-{e}-{n:04d}",
)
SPACED: tuple[Nanp, ...] = (  # NANP numbers as people type them: valid, but not the fast path's shapes
    lambda a, e, n: f"+1  {a}  {e}  {n:04d}",
    lambda a, e, n: f"{a}.{e}.{n:04d} ",
    lambda a, e, n: f"+1 ({a})-{e}-{n:04d}",
    lambda a, e, n: f"+1 {a} {e} {n // 100:02d} {n % 100:02d}",
    lambda a, e, n: f"({a}) {e} - {n:04d}",
    lambda a, e, n: f"+1 {a} {e} {n:04d} ",
    lambda a, e, n: f" 1-{a}-{e}-{n:04d}",
)
EXTENDED: tuple[Callable[[int, int, int, str], str], ...] = (
    lambda a, e, n, x: f"+1 ({a}) {e}-{n:04d} ext {x}",
    lambda a, e, n, x: f"{a}-{e}-{n:04d} x{x}",
    lambda a, e, n, x: f"+1{a}{e}{n:04d};ext={x}",
    lambda a, e, n, x: f"1 {a} {e} {n:04d} ext. {x}",
    lambda a, e, n, x: f"+1 {a}.{e}.{n:04d} extension {x}",
)
TOLL_FREE = (800, 833, 844, 855, 866, 877, 888)
WORDS7 = ("FLOWERS", "PLUMBER", "DENTIST", "LAWYERS", "CALLNOW", "CARPETS", "DIAMOND", "FITNESS", "GARAGES",
          "HOLIDAY", "JEWELRY", "KITCHEN", "LIMOUSN", "MORTGAG", "PAINTER", "ROOFING", "SHIPPIN", "TICKETS")
WORDS4 = ("CARS", "TAXI", "HELP", "FOOD", "LOAN", "HOME", "SAVE", "WINE", "GOLF", "BIKE", "BOAT", "CASH",
          "DEAL", "FAST", "GIFT", "HAIR", "JOBS", "KEYS", "LAWN", "MOVE", "NEWS", "PETS", "ROOF", "SHOE",
          "TIRE", "VETS", "WASH", "YOGA", "ZOOM", "BAND")
KEYPAD = {c: d for d, letters in (("2", "ABC"), ("3", "DEF"), ("4", "GHI"), ("5", "JKL"), ("6", "MNO"),
                                  ("7", "PQRS"), ("8", "TUV"), ("9", "WXYZ")) for c in letters}
# Foreign regions and the zone a record gets when its number maps to several (or none).
REGIONS = {"GB": "Europe/London", "FR": "Europe/Paris", "DE": "Europe/Berlin", "IN": "Asia/Kolkata",
           "BR": "America/Sao_Paulo", "MX": "America/Mexico_City", "AU": "Australia/Sydney",
           "ES": "Europe/Madrid", "IT": "Europe/Rome", "JP": "Asia/Tokyo", "PH": "Asia/Manila"}
FIRST_NAMES = ("José", "Zoë", "Łukasz", "Chloé", "Søren", "Renée", "Ngozi", "Mário", "Ana", "John",
               "Mary", "Siobhán", "Dvořák", "Nguyễn", "李雷", "Priya", "Ahmed", "Grace")
LAST_NAMES = ("García", "Müller", "Smith", "Johnson", "Øster", "Brontë", "Nakamura", "O'Brien", "Kowalski",
              "Lee", "Pérez", "Ivanova", "Williams", "Schmidt")


# ---------------------------------------------------------------------------------------------- input

class CheckFailed(Exception):
    """A correctness check failed: the run exits non-zero."""


@dataclass
class Workload:
    records: list[dict]
    raws: list[str]
    callees: list[tuple[str, str | None]]  # per record: the (E.164, extension) it must normalise to
    kinds: list[str]  # per record

    def body(self, batch_id: str, count: int | None = None) -> bytes:
        return orjson.dumps({"batchId": batch_id, "call_data": self.records[:count]})

    def distinct(self, count: int | None = None) -> int:
        return len(set(self.callees[:count]))

    def slow_share(self) -> float:
        return sum(_NANP.fullmatch(raw) is None for raw in self.raws) / len(self.raws)


@dataclass
class Number:
    kind: str
    callee: tuple[str, str | None]
    renderings: list[str]  # ways of writing it; each checked before a record uses it
    timezone: str | None = None
    used: list[int] = field(default_factory=list)
    checked: set[int] = field(default_factory=set)  # renderings read as `callee` by the normaliser
    rejected: set[int] = field(default_factory=set)  # renderings read otherwise (never used)


def _valid_us(area: int, exchange: int, line: int) -> bool:
    number = phonenumbers.PhoneNumber(country_code=1, national_number=int(f"{area}{exchange}{line:04d}"))
    return phonenumbers.is_valid_number(number)


def _draw_nanp(rng: random.Random, areas: tuple[int, ...] = AREA_CODES) -> tuple[int, int, int]:
    while True:
        number = (rng.choice(areas), rng.randrange(200, 1000), rng.randrange(10_000))
        if number[1] % 100 != 11 and _valid_us(*number):
            return number


def _draw_candidate(kind: str, rng: random.Random) -> tuple[tuple[str, str | None], list[str], str | None]:
    """A number of this kind: (expected callee, candidate renderings, region for foreign numbers)."""
    if kind in ("plain", "spaced", "extension"):
        a, e, n = _draw_nanp(rng)
        e164 = f"+1{a}{e}{n:04d}"
        if kind == "plain":
            return (e164, None), [f(a, e, n) for f in FORMATS], None
        if kind == "spaced":
            return (e164, None), [f(a, e, n) for f in SPACED], None
        x = str(rng.randrange(1, 10_000) if rng.random() < 0.5 else rng.randrange(1, 100))
        return (e164, x), [f(a, e, n, x) for f in EXTENDED], None
    if kind == "vanity":
        if rng.random() < 0.15:
            area, word = rng.choice(TOLL_FREE), rng.choice(WORDS7)
            digits = "".join(KEYPAD[c] for c in word)
            if not _valid_us(area, int(digits[:3]), int(digits[3:])):
                return ("", None), [], None
            e164 = f"+1{area}{digits}"
            return (e164, None), [f"+1 ({area}) {word}", f"1-{area}-{word}", f"{area} {word}"], None
        area, exchange, _ = _draw_nanp(rng, AREA_CODES + TOLL_FREE)
        word = rng.choice(WORDS4)
        line = int("".join(KEYPAD[c] for c in word))
        if not _valid_us(area, exchange, line):
            return ("", None), [], None
        e164 = f"+1{area}{exchange}{line:04d}"
        return (e164, None), [f"+1 ({area}) {exchange}-{word}", f"1-{area}-{exchange}-{word}",
                              f"{area} {exchange} {word.lower()}"], None
    region = rng.choice(sorted(REGIONS))
    kind_of_line = rng.choice((PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE))
    example = phonenumbers.format_number(phonenumbers.example_number_for_type(region, kind_of_line),
                                         PhoneNumberFormat.E164)
    tail = 5 if len(example) > 10 else 4
    e164 = example[:-tail] + f"{rng.randrange(10 ** tail):0{tail}d}"
    number = phonenumbers.parse(e164)
    if not phonenumbers.is_valid_number(number) or phonenumbers.region_code_for_number(number) != region:
        return ("", None), [], None
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    return (e164, None), [international, e164, "011 " + international[1:]], region


def _accepts(number: Number, raw: str, phones: PhoneNormaliser) -> tuple[str, ...] | None:
    """The number's zones if the normaliser reads `raw` as this number (by the path of its kind), else None."""
    if (_NANP.fullmatch(raw) is not None) != (number.kind == "plain"):
        return None  # a kind's renderings all take the same path
    try:
        normal = phones.normalise(raw)
    except PhoneError:
        return None
    return normal.zones if (normal.e164, normal.extension) == number.callee else None


def _draw_number(kind: str, rng: random.Random, phones: PhoneNormaliser, seen: set) -> tuple[Number, int]:
    """A new distinct number of this kind and the rendering its first record uses, checked."""
    while True:
        callee, candidates, region = _draw_candidate(kind, rng)
        if not candidates or callee in seen:
            continue
        number = Number(kind, callee, candidates)
        order = list(range(len(candidates)))
        rng.shuffle(order)
        if kind == "foreign":  # first written the international way, with its country's spacing
            order.remove(0)
            order.insert(0, 0)
        for fmt in order:
            zones = _accepts(number, candidates[fmt], phones)
            if zones is not None:
                break
            number.rejected.add(fmt)
        else:
            continue  # no rendering of it is read as expected: draw another number
        seen.add(callee)
        if region is not None and len(zones) != 1:
            number.timezone = REGIONS[region] if REGIONS[region] in zones or not zones else zones[0]
        number.checked.add(fmt)
        return number, fmt


def _other_rendering(number: Number, rng: random.Random, phones: PhoneNormaliser) -> int:
    """A rendering not used yet for this number (checked now if never checked), else any used one."""
    while True:
        unused = [f for f in range(len(number.renderings)) if f not in number.used and f not in number.rejected]
        if not unused:
            return rng.choice(number.used)
        fmt = rng.choice(unused)
        if fmt in number.checked or _accepts(number, number.renderings[fmt], phones) is not None:
            number.checked.add(fmt)
            return fmt
        number.rejected.add(fmt)


def generate(count: int, seed: int = SEED) -> Workload:
    rng = random.Random(seed)
    phones = PhoneNormaliser("US")
    names, weights = zip(*KINDS)
    duplicates = int(count * DUPLICATE_SHARE)
    # Duplicates repeat an earlier number, so none among the first few records.
    dup_at = set(rng.sample(range(min(1000, count // 10), count), duplicates))
    seen: set[tuple[str, str | None]] = set()
    numbers: list[Number] = []
    records: list[dict] = []
    work = Workload(records, [], [], [])
    for index in range(count):
        if index in dup_at:
            number = numbers[rng.randrange(len(numbers))]
            fmt = _other_rendering(number, rng, phones)  # another format, when it has one
        else:
            number, fmt = _draw_number(rng.choices(names, weights)[0], rng, phones, seen)
            numbers.append(number)
        number.used.append(fmt)
        raw = number.renderings[fmt]
        record = {
            "phoneNumber": raw,
            "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            "account_id": f"AC-{rng.randrange(10 ** 9):09d}",
            "priority": rng.randrange(1, 6),
            "amount": round(rng.uniform(5, 5000), 2),
        }
        if number.timezone is not None:
            record["timezone"] = number.timezone
        records.append(record)
        work.raws.append(raw)
        work.callees.append(number.callee)
        work.kinds.append(number.kind)
    # The check the brief asks for, on every record as sent: the normaliser accepts it as expected...
    for raw, callee in zip(work.raws, work.callees):
        number = phones.normalise(raw)
        if (number.e164, number.extension) != callee:
            raise CheckFailed(f"{raw!r} normalises to {number}, expected {callee}")
    # ...and the whole request validates.
    plan = Planner(phones, _context(_batch_doc(ObjectId()))).plan(records)
    if plan.errors or len(plan.calls) != work.distinct():
        raise CheckFailed(f"the generated request does not validate: {plan.error_view()}")
    return work


# ----------------------------------------------------------------------------------------- measures

def floor(raws: list[str]) -> float:
    """Seconds to parse, check and format every raw number with bare phonenumbers."""
    parse, possible = phonenumbers.parse, phonenumbers.is_possible_number_with_reason
    fmt, e164, ok = phonenumbers.format_number, PhoneNumberFormat.E164, phonenumbers.ValidationResult.IS_POSSIBLE
    started = time.perf_counter()
    out = None
    for raw in raws:
        number = parse(raw, "US")
        if possible(number) == ok:
            out = fmt(number, e164)
    elapsed = time.perf_counter() - started
    assert out is not None
    return elapsed


def _batch_doc(workspace_id: ObjectId) -> dict:
    """A batch as Batches.create writes it (default window, no zone, not scheduled)."""
    return {"_id": ObjectId(), "workspaceId": workspace_id, "agentId": ObjectId(), "name": "bench",
            "callingNumbers": ["+14155550100"], "concurrencyLimit": None,
            "callingWindow": CallingWindow.parse(None).to_doc(), "timezone": None, "scheduledAt": None,
            "retry": None, "ringingTimeoutSeconds": None, "status": "pending", "createdAt": T0, "updatedAt": T0}


def _context(batch: dict) -> IngestContext:
    """As Ingestion._context builds it, for an agent in AGENT_ZONE with no required variables."""
    return IngestContext(required_variables=[], window=CallingWindow.parse(batch["callingWindow"]),
                         batch_zone=batch.get("timezone"), agent_zone=AGENT_ZONE, not_before=T0)


@dataclass
class PipelineRun:
    seconds: float
    phases: dict[str, float]
    chunks: int
    calls: int
    collapsed: int
    inserted: int

    @property
    def store_share(self) -> float:
        return self.phases["store"] / self.seconds


async def pipeline(body: bytes, settings: Settings, phones: PhoneNormaliser, distinct: int) -> PipelineRun:
    """One request body through parsing, planning and the embedded store's enqueue."""
    repos = await open_sqlite(":memory:")
    batch = _batch_doc(ObjectId())
    await repos.batches.insert(batch)
    batch = await repos.batches.get(batch["_id"])  # as the ingestion reads it
    clock = time.perf_counter
    started = clock()
    parsed = orjson.loads(body)
    _, call_data = validate_envelope(parsed, settings.max_records_per_request)
    parsed_at = clock()
    plan = Planner(phones, _context(batch)).plan(call_data)
    planned_at = clock()
    chunks = inserted = 0
    for chunk in plan.chunks(settings.chunk_size):
        result = await repos.calls.enqueue(batch, chunk, T0)
        if result.error is not None or result.inserted != len(chunk):
            raise CheckFailed(f"chunk {chunks + 1}: {result.error}, {result.inserted} of {len(chunk)} inserted")
        inserted += result.inserted
        chunks += 1
    ended = clock()
    await repos.close()
    if plan.errors or inserted != distinct:
        raise CheckFailed(f"pipeline: {len(plan.errors)} invalid records, {inserted} inserted, {distinct} expected")
    return PipelineRun(ended - started,
                       {"parse": parsed_at - started, "plan": planned_at - parsed_at, "store": ended - planned_at},
                       chunks, len(plan.calls), plan.collapsed, inserted)


def _settled() -> None:
    """Start every measure from the same place: no garbage left over from the previous one."""
    gc.collect()


async def compare(work: Workload, settings: Settings, rounds: int) -> tuple[list[float], list[PipelineRun]]:
    phones = PhoneNormaliser(settings.default_region, settings.strict_numbers)
    body = work.body(str(ObjectId()))
    distinct = work.distinct()
    # Warm-up: phonenumbers loads its metadata and compiles its patterns lazily.
    floor(work.raws[:2000])
    await pipeline(work.body("warm-up", 2000), settings, phones, work.distinct(2000))
    floors: list[float] = []
    runs: list[PipelineRun] = []
    n = len(work.raws)
    for r in range(rounds):
        order = ("floor", "pipeline") if r % 2 == 0 else ("pipeline", "floor")
        for which in order:
            _settled()
            if which == "floor":
                floors.append(floor(work.raws))
            else:
                runs.append(await pipeline(body, settings, phones, distinct))
        print(f"  round {r + 1}/{rounds} ({order[0]} first): floor {n / floors[-1]:>9,.0f} rec/s   "
              f"pipeline {n / runs[-1].seconds:>9,.0f} rec/s (store {runs[-1].store_share:.0%})", flush=True)
    return floors, runs


# -------------------------------------------------------------------------------------------- report

@dataclass
class Row:
    figure: str
    value: str
    goal: str = "info"
    met: bool | None = None  # None: no goal


def report(work: Workload, floors: list[float], runs: list[PipelineRun], http, started: float) -> list[Row]:
    n = len(work.records)
    med_floor = statistics.median(floors)
    med_pipe = statistics.median(r.seconds for r in runs)
    paired = statistics.median(f / r.seconds for f, r in zip(floors, runs))  # same round, back to back
    median_run = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    store_share = statistics.median(r.store_share for r in runs)
    slow = work.slow_share()
    kinds = {k: work.kinds.count(k) / n for k, _ in KINDS}
    print()
    print(f"ingestion bench: {n:,} records ({work.distinct():,} distinct callees), seed {SEED}; "
          f"{slow:.1%} take the slow path (" + ", ".join(f"{k} {v:.1%}" for k, v in kinds.items()) + "), "
          f"{sum('timezone' in r for r in work.records):,} with a timezone field")
    print(f"  {'measure (' + str(len(floors)) + ' alternating rounds)':<46} {'median rec/s':>12} {'best rec/s':>11}")
    print(f"  {'floor: parse + possible + format E164':<46} {n / med_floor:>12,.0f} {n / min(floors):>11,.0f}")
    print(f"  {'pipeline with the embedded store':<46} {n / med_pipe:>12,.0f} "
          f"{n / min(r.seconds for r in runs):>11,.0f}")
    phases = "  ".join(f"{k} {v:.3f}s ({v / median_run.seconds:.0%})" for k, v in median_run.phases.items())
    print(f"    median round: {median_run.seconds:.3f}s = {phases}; {median_run.calls:,} calls "
          f"({median_run.collapsed:,} duplicates collapsed) in {median_run.chunks} chunks")
    print(f"  pipeline/floor: median of per-round ratios {paired:.2f} (ratio of medians {med_floor / med_pipe:.2f})")
    rows = [
        Row("slow-path share of records", f"{slow:.1%}", "20% +- 2", abs(slow - 0.20) <= 0.02),
        Row("floor records/s (median)", f"{n / med_floor:,.0f}"),
        Row("pipeline records/s (median)", f"{n / med_pipe:,.0f}"),
        Row("pipeline/floor (median per-round ratio)", f"{paired:.2f}", f">= {GOAL_PIPELINE_RATIO}",
            paired >= GOAL_PIPELINE_RATIO),
        Row("store share of pipeline time (median)", f"{store_share:.0%}"),
    ]
    if http is not None:
        rows += http.report(work)
    print(f"\nsummary (whole bench {time.perf_counter() - started:.0f}s)")
    print(f"  {'figure':<46} {'value':>12}  {'goal':<10} result")
    for row in rows:
        result = "info" if row.met is None else ("MET" if row.met else "MISSED")
        print(f"  {row.figure:<46} {row.value:>12}  {row.goal:<10} {result}")
    return rows


def profile(work: Workload, settings: Settings, top: int = 30) -> None:
    phones = PhoneNormaliser(settings.default_region, settings.strict_numbers)
    body = work.body(str(ObjectId()))
    asyncio.run(pipeline(work.body("warm-up", 2000), settings, phones, work.distinct(2000)))
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(pipeline(body, settings, phones, work.distinct()))
    profiler.disable()
    stats = pstats.Stats(profiler)
    print("\ncProfile of the pipeline, by own time:")
    stats.sort_stats("tottime").print_stats(top)
    print("cProfile of the pipeline, by cumulative time:")
    stats.sort_stats("cumulative").print_stats(top)


async def run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    settings = Settings.load(env={}, embedded_dispatcher="false")
    work = generate(args.records)
    print(f"generated {len(work.records):,} records in {time.perf_counter() - started:.1f}s (checked); "
          f"floor and pipeline alternate for {args.rounds} rounds", flush=True)
    floors, runs = await compare(work, settings, args.rounds)
    http = None
    if not args.no_http:
        from bench.ingest_http import measure_http

        http = await measure_http(work)
    report(work, floors, runs, http, started)
    if http is not None and http.failures:
        raise CheckFailed("; ".join(http.failures))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP measures")
    parser.add_argument("--profile", action="store_true", help="only profile the pipeline with cProfile")
    args = parser.parse_args()
    logging.getLogger("dialer.store").setLevel(logging.ERROR)
    tune_gc()  # as `dialer serve` does
    try:
        if args.profile:
            profile(generate(args.records), Settings.load(env={}, embedded_dispatcher="false"))
            return
        asyncio.run(run(args))
    except CheckFailed as exc:
        print(f"CHECK FAILED: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
