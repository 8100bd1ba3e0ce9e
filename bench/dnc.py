"""The do-not-call list's costs: importing a million numbers, and ingestion with such a list against without.

Run with `python -m bench.dnc` (`--numbers`, `--records`, `--rounds` to shrink it). Two real app servers
(bench/ingest_http.py: the embedded SQLite store in a fresh folder each, a FixedClock, a workspace and its
agent) run side by side; the bench process is their client.

  import    a file of N numbers (default 1,000,000 distinct NANP numbers in E.164, one per line; among them
            5% of the ingestion workload's callees, --listed-share; 0 measures the look-up's cost alone)
            listed on server A through `dialer dnc import`'s own code (dialer/dnc_import.py: POST /api/dnc
            in chunks of 50,000 under Idempotency-Keys).
            Reported: seconds and numbers/s (goal: under 60 s for 1,000,000), and the list's size as
            GET /api/dnc reads it (must be N).
  ingest    bench/ingest.py's realistic 100,000-record addCallsToBatch request (80% plain NANP numbers
            in four formats, 20% slow-path numbers, 5% repeats, custom fields), POSTed to a fresh batch on
            A (the list of N) and on B (no list), alternately for --rounds rounds (the order flips each
            round). Each answer must be 200 with every distinct callee either added or (A only)
            suppressed. Reported: median seconds on each and the median of the per-round ratios A / B
            (goal <= 1.2), and each round's ratio (the machine's noise).

Output is a short table; the exit code is non-zero when a correctness check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from bench.ingest import generate
from bench.ingest_http import create_batch, server
from dialer.dnc_import import DncFile, import_numbers

GOAL_IMPORT_SECONDS = 60.0
GOAL_RATIO = 1.2
LISTED_SHARE = 0.05  # of the workload's distinct callees, on the list


def list_file(count: int, callees: list[str], folder: str) -> tuple[str, set[str]]:
    """A one-number-per-line file: `callees` first, then distinct random NANP numbers (area code and exchange
    2-9XX, as real ones) up to `count`."""
    rng = random.Random(15)
    numbers = dict.fromkeys(callees)
    while len(numbers) < count:
        numbers.setdefault(f"+1{rng.randrange(200, 1000)}{rng.randrange(200, 1000)}{rng.randrange(10_000):04d}", None)
    path = Path(folder) / "dnc.txt"
    path.write_text("\n".join(numbers) + "\n")
    return str(path), set(numbers)  # (random numbers may be callees of the workload too)


async def add(session, base: str, headers: dict, agent: str, body_for) -> tuple[float, dict]:
    batch = await create_batch(session, base, headers, agent)
    body = body_for(batch)
    started = time.perf_counter()
    async with session.post(f"{base}/api/call/addCallsToBatch", headers=headers, data=body) as resp:
        doc = orjson.loads(await resp.read())
        status = resp.status
    seconds = time.perf_counter() - started
    if status != 200:
        raise SystemExit(f"addCallsToBatch answered {status}: {doc.get('errorMessage')}")
    return seconds, doc["data"]


async def run(numbers: int, records: int, rounds: int, listed_share: float) -> int:
    print(f"generating {records:,} records and a list of {numbers:,} numbers ...", flush=True)
    work = generate(records)
    distinct = sorted({e164 for e164, ext in work.callees if ext is None})
    rng = random.Random(16)
    listed_callees = rng.sample(distinct, int(len(distinct) * listed_share))
    failures: list[str] = []
    timeout = aiohttp.ClientTimeout(total=1200)
    with tempfile.TemporaryDirectory(prefix="dialer-bench-dnc-") as folder:
        path, listed = list_file(numbers, listed_callees, folder)
        suppressed_expected = sum(1 for callee in set(work.callees) if callee[0] in listed)
        async with server("app") as a, server("app") as b, aiohttp.ClientSession(timeout=timeout) as session:
            base_a, base_b = (f"http://127.0.0.1:{s['port']}" for s in (a, b))
            head_a, head_b = ({"x-api-key": s["key"], "Content-Type": "application/json"} for s in (a, b))
            file = DncFile.read(path)
            started = time.perf_counter()
            result = await import_numbers(session, base_a, a["key"], file)
            import_seconds = time.perf_counter() - started
            async with session.get(f"{base_a}/api/dnc?limit=1", headers=head_a) as resp:
                total = (await resp.json())["data"]["total"]
            if total != numbers or result.added != numbers:
                failures.append(f"import: {result.added} added, the list holds {total}; expected {numbers}")
            print(f"  imported {numbers:,} numbers in {import_seconds:.1f} s", flush=True)
            times: dict[str, list[float]] = {"with": [], "without": []}
            ratios = []
            for r in range(rounds):
                order = [("with", base_a, head_a, a), ("without", base_b, head_b, b)]
                round_times = {}
                for label, base, headers, info in (order if r % 2 == 0 else order[::-1]):
                    seconds, data = await add(session, base, headers, info["agentId"], work.body)
                    added, stopped = data["added"], len(data["suppressed"])
                    want = (work.distinct() - suppressed_expected, suppressed_expected) if label == "with" \
                        else (work.distinct(), 0)
                    if (added, stopped) != want:
                        failures.append(f"{label} list, round {r}: added {added}, suppressed {stopped}; expected {want}")
                    round_times[label] = seconds
                    times[label].append(seconds)
                ratios.append(round_times["with"] / round_times["without"])
                print(f"  round {r + 1}: with {round_times['with']:.2f} s, without {round_times['without']:.2f} s",
                      flush=True)
    ratio = statistics.median(ratios)
    rows = [
        (f"import {numbers:,} numbers (dialer dnc import)", f"{import_seconds:.1f} s ({numbers / import_seconds:,.0f}/s)",
         f"< {GOAL_IMPORT_SECONDS:g} s" if numbers == 1_000_000 else "info",
         import_seconds < GOAL_IMPORT_SECONDS if numbers == 1_000_000 else None),
        (f"addCallsToBatch {records:,} records, list of {numbers:,}", f"{statistics.median(times['with']):.2f} s", "info", None),
        (f"addCallsToBatch {records:,} records, no list", f"{statistics.median(times['without']):.2f} s", "info", None),
        ("with / without (median of paired rounds)", f"{ratio:.2f}", f"<= {GOAL_RATIO}", ratio <= GOAL_RATIO),
        ("  each round", " ".join(f"{r:.2f}" for r in ratios), "info", None),
        ("records suppressed per request", f"{suppressed_expected:,}", "info", None),
    ]
    print()
    for figure, value, goal, met in rows:
        verdict = "" if met is None else ("MET" if met else "MISSED")
        print(f"  {figure:<52} {value:>22}  {goal:>8} {verdict}")
    for failure in failures:
        print(f"  CHECK FAILED: {failure}")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--listed-share", type=float, default=LISTED_SHARE,
                        help="share of the workload's callees put on the list (0: the look-up's cost alone)")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.numbers, args.records, args.rounds, args.listed_share)))


if __name__ == "__main__":
    main()
