"""Ingestion throughput: how close addCallsToBatch gets to the cost of phone parsing alone.

Run with `python -m bench.ingest` (or `make bench`). One run generates 100,000 deterministic records
(seeded): valid US numbers over sixteen area codes from Eastern to Hawaii time (212 305 617 404,
312 512 713, 303 801, 602, 415 702 206 503, 808, 907; most 907 numbers map to two zones, Anchorage and
Adak, and so take the agent's zone), written in four formats ("+1 (212) 555-0123", "12125550123", "+12125550123", "212-555-0123"), 5% of them
repeating an earlier number in another format, each with custom fields (a name with some unicode,
account_id, priority, amount) and no timezone field. It then measures, on those same records:

  A  floor     bare phonenumbers.parse(raw, "US") + is_possible_number + format_number(E164): the
               least any ingestion must do per record.
  B  pipeline  the ingestion pipeline without the database: orjson.loads of the request body,
               validate_envelope, Planner.plan (default window, agent zone America/New_York), then
               CallWriter.write_chunk for every chunk (settings.chunk_size = 1,000 records) against a
               counting null store whose `calls.find` yields nothing and whose `calls.bulk_write`
               answers at once; the store counts every database operation. The work runs inline on
               the event loop (the app offloads parsing and planning to a thread; that hand-off is
               not part of the cost measured here).
  HTTP         for information, end to end: the real app (create_app, in-memory MongoDB) on
               127.0.0.1, one addCallsToBatch request with all 100,000 records (all inserts), then the
               same request again (all updates), checking the answers.

A and B alternate (the order flips every round) for a few rounds, since the machine is shared and
noisy; the table shows the best and the median round of each, the ratios of those, and the median of
the per-round ratios (A and B measured back to back), which the final line reports. Goals: B/A >= 0.7 and
at most 2 database operations per 1,000-record chunk.

Options: --records N, --rounds N, --no-http, --profile (cProfile of one round of B, top functions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import gc
import io
import logging
import pstats
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
import phonenumbers
from bson import ObjectId
from phonenumbers import PhoneNumberFormat

from dialer.core.clock import FixedClock
from dialer.services.enqueue import CallWriter
from dialer.core.records import IngestContext, Planner, validate_envelope
from dialer.core.phones import PhoneNormaliser
from dialer.runtime import tune_gc
from dialer.settings import Settings
from dialer.core.windows import CallingWindow

SEED = 20261123
RECORDS = 100_000
DUPLICATE_SHARE = 0.05
ROUNDS = 5
GOAL_RATIO = 0.7
GOAL_OPS_PER_CHUNK = 2
# A Monday, 10:00 in New York (as in tests/conftest.py): the default window is open on the east coast.
T0 = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.timezone.utc)
AGENT_ZONE = "America/New_York"

# Area codes phonenumbers knows, spread over the US time zones (907 maps to two zones).
AREA_CODES = (212, 305, 617, 404,  # Eastern
              312, 512, 713,  # Central
              303, 801,  # Mountain
              602,  # Arizona (no DST)
              415, 702, 206, 503,  # Pacific
              808,  # Hawaii
              907)  # Alaska: mostly America/Anchorage + America/Adak -> the agent's zone
FORMATS: tuple[Callable[[int, int, int], str], ...] = (
    lambda a, e, n: f"+1 ({a}) {e}-{n:04d}",
    lambda a, e, n: f"1{a}{e}{n:04d}",
    lambda a, e, n: f"+1{a}{e}{n:04d}",
    lambda a, e, n: f"{a}-{e}-{n:04d}",
)
FIRST_NAMES = ("José", "Zoë", "Łukasz", "Chloé", "Søren", "Renée", "Ngozi", "Mário", "Ana", "John",
               "Mary", "Siobhán", "Dvořák", "Nguyễn", "李雷", "Priya", "Ahmed", "Grace")
LAST_NAMES = ("García", "Müller", "Smith", "Johnson", "Øster", "Brontë", "Nakamura", "O'Brien", "Kowalski",
              "Lee", "Pérez", "Ivanova", "Williams", "Schmidt")


# ---------------------------------------------------------------------------------------------- input

@dataclass
class Workload:
    records: list[dict]
    raws: list[str]
    distinct: int

    def body(self, batch_id: str) -> bytes:
        return orjson.dumps({"batchId": batch_id, "call_data": self.records})


def _valid_us(area: int, exchange: int, line: int) -> bool:
    number = phonenumbers.PhoneNumber(country_code=1, national_number=int(f"{area}{exchange}{line:04d}"))
    return phonenumbers.is_valid_number(number)


def generate(count: int, seed: int = SEED) -> Workload:
    rng = random.Random(seed)
    duplicates = int(count * DUPLICATE_SHARE)
    distinct = count - duplicates
    # Duplicates repeat an earlier number, so none among the first few records.
    dup_at = set(rng.sample(range(min(1000, count // 10), count), duplicates))
    seen: set[tuple[int, int, int]] = set()
    written: list[tuple[tuple[int, int, int], list[int]]] = []  # each distinct number, the formats used so far
    records: list[dict] = []
    for index in range(count):
        if index in dup_at:
            number, used = written[rng.randrange(len(written))]
            fmt = rng.choice([f for f in range(len(FORMATS)) if f not in used] or range(len(FORMATS)))
            used.append(fmt)  # written in a format not used yet for this number
        else:
            while True:
                number = (rng.choice(AREA_CODES), rng.randrange(200, 1000), rng.randrange(10_000))
                if number[1] % 100 != 11 and number not in seen and _valid_us(*number):
                    break
            seen.add(number)
            fmt = rng.randrange(len(FORMATS))
            written.append((number, [fmt]))
        records.append({
            "phoneNumber": FORMATS[fmt](*number),
            "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            "account_id": f"AC-{rng.randrange(10 ** 9):09d}",
            "priority": rng.randrange(1, 6),
            "amount": round(rng.uniform(5, 5000), 2),
        })
    return Workload(records, [r["phoneNumber"] for r in records], distinct)


# ------------------------------------------------------------------------------ counting null store

class _Empty:
    """An async cursor with no documents."""

    def __aiter__(self) -> "_Empty":
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration


@dataclass
class NullBulkResult:
    inserted_count: int = 0
    matched_count: int = 0
    modified_count: int = 0
    deleted_count: int = 0
    upserted_count: int = 0
    upserted_ids: dict = field(default_factory=dict)
    acknowledged: bool = True


class CountingCollection:
    """Answers find (nothing found) and bulk_write (done) at once, counting every operation."""

    def __init__(self, name: str, counts: dict[str, int]) -> None:
        self.name = name
        self.counts = counts

    def find(self, *args: Any, **kwargs: Any) -> _Empty:
        self.counts[f"{self.name}.find"] = self.counts.get(f"{self.name}.find", 0) + 1
        return _Empty()

    async def bulk_write(self, ops: list, ordered: bool = True, **kwargs: Any) -> NullBulkResult:
        self.counts[f"{self.name}.bulk_write"] = self.counts.get(f"{self.name}.bulk_write", 0) + 1
        self.counts["written_ops"] = self.counts.get("written_ops", 0) + len(ops)
        return NullBulkResult()  # "done" at once; nothing matched (CallWriter only reads matched_count)

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        # Any other operation would be a database round trip this bench does not model: say so loudly.
        raise NotImplementedError(f"the counting null store has no {self.name}.{method}(); extend bench/ingest.py")


class CountingNullStore:
    """Store-like: store.calls, store.batches, ... are counting null collections."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __getattr__(self, name: str) -> CountingCollection:
        if name.startswith("_"):
            raise AttributeError(name)
        return CountingCollection(name, self.counts)

    def operations(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "written_ops")


# ----------------------------------------------------------------------------------------- measures

def floor(raws: list[str]) -> float:
    """Measure A: seconds to parse, check and format every raw number."""
    parse, possible = phonenumbers.parse, phonenumbers.is_possible_number
    fmt, e164 = phonenumbers.format_number, PhoneNumberFormat.E164
    started = time.perf_counter()
    out = None
    for raw in raws:
        number = parse(raw, "US")
        if possible(number):
            out = fmt(number, e164)
    elapsed = time.perf_counter() - started
    assert out is not None
    return elapsed


@dataclass
class PipelineRun:
    seconds: float
    phases: dict[str, float]
    chunks: int
    calls: int
    collapsed: int
    counts: dict[str, int]  # per operation name, plus written_ops (documents in bulk writes)
    db_operations: int


def _context() -> IngestContext:
    return IngestContext(required_variables=[], window=CallingWindow.parse(None), batch_zone=None,
                         agent_zone=AGENT_ZONE, not_before=T0)


async def pipeline(body: bytes, settings: Settings, phones: PhoneNormaliser) -> PipelineRun:
    """Measure B: the whole ingestion of one request body, against the counting null store."""
    store = CountingNullStore()
    writer = CallWriter(store, FixedClock(T0))  # type: ignore[arg-type]  # Store-like
    batch = {"_id": ObjectId(), "workspaceId": ObjectId(), "status": "pending"}
    ctx = _context()
    clock = time.perf_counter
    started = clock()
    parsed = orjson.loads(body)
    _, call_data = validate_envelope(parsed, settings.max_records_per_request)
    parsed_at = clock()
    plan = Planner(phones, ctx).plan(call_data)
    planned_at = clock()
    assert not plan.errors, plan.error_view()
    chunks = 0
    for chunk in plan.chunks(settings.chunk_size):
        result = await writer.write_chunk(batch, chunk)
        assert result.error is None and result.inserted == len(chunk), result
        chunks += 1
    ended = clock()
    return PipelineRun(ended - started,
                       {"parse": parsed_at - started, "plan": planned_at - parsed_at, "write": ended - planned_at},
                       chunks, len(plan.calls), plan.collapsed, dict(store.counts), store.operations())


def _settled() -> None:
    """Start every measure from the same place: no garbage left over from the previous one."""
    gc.collect()


async def compare(work: Workload, settings: Settings, rounds: int) -> tuple[list[float], list[PipelineRun]]:
    phones = PhoneNormaliser(settings.default_region, settings.strict_numbers)
    body = work.body(str(ObjectId()))
    # Warm-up: phonenumbers loads its metadata and compiles its patterns lazily.
    floor(work.raws[:2000])
    await pipeline(orjson.dumps({"batchId": "warm-up", "call_data": work.records[:2000]}), settings, phones)
    floors: list[float] = []
    runs: list[PipelineRun] = []
    for r in range(rounds):
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        for which in order:
            _settled()
            if which == "A":
                floors.append(floor(work.raws))
            else:
                runs.append(await pipeline(body, settings, phones))
        print(f"  round {r + 1}/{rounds}: A {len(work.raws) / floors[-1]:>9,.0f} rec/s   "
              f"B {len(work.raws) / runs[-1].seconds:>9,.0f} rec/s", flush=True)
    return floors, runs


# ------------------------------------------------------------------------------------ end to end HTTP

@dataclass
class HttpRun:
    seconds: float
    status: int
    data: dict


async def end_to_end(work: Workload, settings: Settings, second: bool) -> list[HttpRun]:
    import aiohttp
    from aiohttp import web

    from dialer.api.app import create_app
    from dialer.api.appkeys import TENANCY

    app = create_app(settings, FixedClock(T0))
    runner = web.AppRunner(app, access_log=None)
    with contextlib.redirect_stdout(io.StringIO()):  # the in-memory store's demo tenant prints its key
        await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}"
    runs: list[HttpRun] = []
    try:
        tenancy = app[TENANCY]
        workspace, key = await tenancy.create_workspace("bench")
        agent = await tenancy.create_agent(workspace["_id"], {
            "name": "bench agent", "requiredVariables": [], "callingNumbers": ["+14155550100"],
            "timezones": [AGENT_ZONE]})
        headers = {"x-api-key": key, "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(f"{base}/api/call/createBatch", headers=headers,
                                    data=orjson.dumps({"name": "bench", "agentId": str(agent["_id"])})) as resp:
                doc = await resp.json(loads=orjson.loads)
                assert resp.status == 200, doc
                batch_id = doc["data"]["batchId"]
            body = work.body(batch_id)
            for _ in range(2 if second else 1):
                _settled()
                started = time.perf_counter()
                async with session.post(f"{base}/api/call/addCallsToBatch", headers=headers, data=body) as resp:
                    doc = orjson.loads(await resp.read())
                    status = resp.status
                runs.append(HttpRun(time.perf_counter() - started, status, doc.get("data", {})))
                if status != 200:
                    print(f"  addCallsToBatch answered {status}: {doc.get('message')} {doc.get('errorMessage')}")
                    break
    finally:
        await runner.cleanup()
    return runs


# -------------------------------------------------------------------------------------------- report

def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f}"


def http_ok(work: Workload, run: HttpRun, first: bool) -> bool:
    """200, every distinct number added, once: inserted by the first request, updated by the second."""
    data = run.data
    return (run.status == 200 and data.get("added") == work.distinct
            and data.get("inserted") == (work.distinct if first else 0)
            and data.get("updated") == (0 if first else work.distinct)
            and data.get("duplicatesCollapsed") == len(work.records) - work.distinct)


def report(work: Workload, floors: list[float], runs: list[PipelineRun], http: list[HttpRun], started: float) -> None:
    n = len(work.records)
    best_a, med_a = min(floors), statistics.median(floors)
    best_run = min(runs, key=lambda r: r.seconds)
    best_b, med_b = best_run.seconds, statistics.median(r.seconds for r in runs)
    ratio_best, ratio_med = best_a / best_b, med_a / med_b
    chunks = best_run.chunks
    finds = best_run.counts.get("calls.find", 0)
    writes = best_run.counts.get("calls.bulk_write", 0)
    ops_per_chunk = best_run.db_operations / chunks
    print()
    print(f"ingestion bench: {n:,} records ({work.distinct:,} distinct numbers), seed {SEED}, "
          f"{len(floors)} alternating rounds; records/s (best | median)")
    print(f"  {'measure':<44} {'best':>10} {'median':>10}  {'best s':>7}")
    print(f"  {'A floor: parse + possible + format E164':<44} {_rate(n, best_a)} {_rate(n, med_a)}  {best_a:>7.2f}")
    print(f"  {'B pipeline without the database':<44} {_rate(n, best_b)} {_rate(n, med_b)}  {best_b:>7.2f}")
    phases = "  ".join(f"{k} {v:.2f}s ({v / best_b:.0%})" for k, v in best_run.phases.items())
    print(f"    B phases (best round): {phases}")
    paired = statistics.median(a / b.seconds for a, b in zip(floors, runs))  # A and B of the same round
    print(f"  {'ratio B/A':<44} {ratio_best:>10.2f} {ratio_med:>10.2f}  (median of per-round ratios {paired:.2f})")
    others = best_run.db_operations - finds - writes
    print(f"  B wrote {best_run.calls:,} calls ({best_run.collapsed:,} duplicates collapsed) in {chunks} chunks: "
          f"{finds} finds + {writes} bulk writes ({best_run.counts.get('written_ops', 0):,} ops)"
          f"{f' + {others} other operations' if others else ''} = {ops_per_chunk:.2f} database operations per chunk")
    for label, run in zip(("HTTP, in-memory store, all inserts", "HTTP, same request again, all updates"), http):
        data = run.data
        ok = http_ok(work, run, first=run is http[0])
        print(f"  {label:<44} {_rate(n, run.seconds)} {'':>10}  {run.seconds:>7.2f}  "
              f"status {run.status}, added {data.get('added')}, inserted {data.get('inserted')}, "
              f"updated {data.get('updated')}, collapsed {data.get('duplicatesCollapsed')} "
              f"[{'ok' if ok else 'UNEXPECTED'}]")
    print(f"  (whole bench {time.perf_counter() - started:.0f}s; below, B/A is the median of the per-round ratios: "
          f"A and B back to back, robust to load changes)")
    print(f"ratio B/A = {paired:.2f} (goal >= {GOAL_RATIO}); db ops per chunk = {ops_per_chunk:g} "
          f"(goal <= {GOAL_OPS_PER_CHUNK})")


def profile(work: Workload, settings: Settings, top: int = 30) -> None:
    phones = PhoneNormaliser(settings.default_region, settings.strict_numbers)
    body = work.body(str(ObjectId()))
    warm_up = orjson.dumps({"batchId": "warm-up", "call_data": work.records[:2000]})
    asyncio.run(pipeline(warm_up, settings, phones))
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(pipeline(body, settings, phones))
    profiler.disable()
    stats = pstats.Stats(profiler)
    print("\ncProfile of measure B, by own time:")
    stats.sort_stats("tottime").print_stats(top)
    print("cProfile of measure B, by cumulative time:")
    stats.sort_stats("cumulative").print_stats(top)


async def run(args: argparse.Namespace) -> bool:
    started = time.perf_counter()
    settings = Settings.load(env={}, embedded_dispatcher="false")
    work = generate(args.records)
    print(f"generated {len(work.records):,} records in {time.perf_counter() - started:.1f}s; "
          f"A and B alternate for {args.rounds} rounds", flush=True)
    floors, runs = await compare(work, settings, args.rounds)
    http: list[HttpRun] = []
    if not args.no_http:
        print("end to end over HTTP (in-memory store): one request with every record, then the same again", flush=True)
        http = await end_to_end(work, settings, second=True)
    report(work, floors, runs, http, started)
    return all(http_ok(work, r, first=i == 0) for i, r in enumerate(http))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--no-http", action="store_true", help="skip the end-to-end HTTP measure")
    parser.add_argument("--profile", action="store_true", help="only profile measure B with cProfile")
    args = parser.parse_args()
    # The in-memory store warns that data does not survive a restart: expected here.
    logging.getLogger("dialer.store").setLevel(logging.ERROR)
    tune_gc()  # as `dialer serve` does
    if args.profile:
        profile(generate(args.records), Settings.load(env={}, embedded_dispatcher="false"))
        return
    if not asyncio.run(run(args)):
        raise SystemExit("the end-to-end answers were not as expected (see the HTTP rows)")


if __name__ == "__main__":
    main()
