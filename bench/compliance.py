"""What compliance costs: the dispatcher's port calls per placed call with frequency caps off and on, and
the ingestion and dispatch cost with the `us-states` profile off and on, measured side by side in one run.

Run with `python -m bench.compliance`. Each dispatch run drives one Engine on a virtual clock
(FixedClock, 0.5 s per step, the simulator as provider, its events applied in the dispatcher's process)
over the embedded store (SQLite on a file) until every batch is completed: 10 batches x 300 calls,
concurrencyLimit 20 each, account cap 100, 20 calls/s, distinct numbers spread over 12 area codes of
several states (NY, FL, TX, CA, IL, WA, ...), clock at Monday 2026-11-23 17:00 UTC (the states' hours
open). Port calls are counted as bench/dispatch counts them (bench/port_counting.py's CountingRepo proxy
around every repository, the cap ledger included), in the dispatcher's ticks and the reaper; the
provider's events are counted apart.

  caps off    the workspace without caps, profile none
  caps on     the workspace's maxAttemptsPerNumberPerDay = 3 (every attempt reserved; none refused)
  us-states   the batches under `us-states` (state hours checked per due call; FL/OK/MD numbers capped)

Ingestion: Ingestion.add_calls (the addCallsToBatch use case: parse, plan, enqueue) of 20,000 records into a
batch with compliance none and one with us-states, alternating for --rounds rounds; the median ratio.
Goals (issue 15): caps on costs at most one more port call per placed call; us-states within 1.2x.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time

import orjson

from bench.dispatch_run import open_backend
from bench.port_counting import OpCounter, counted
from dialer.composition import services_over
from dialer.core.batch_spec import parse_batch_spec
from dialer.core.clock import FixedClock
from dialer.core.records import PlannedCall
from dialer.services.tenancy import Principal
from dialer.settings import Settings
from workers.engine import Engine
from workers.telephony.simulator import Simulator

T0 = dt.datetime(2026, 11, 23, 17, 0, tzinfo=dt.timezone.utc)
STEP = 0.5
AREAS = ("212", "305", "214", "415", "312", "206", "405", "410", "617", "602", "303", "404")
ZONES = {"212": "America/New_York", "305": "America/New_York", "214": "America/Chicago", "415": "America/Los_Angeles",
         "312": "America/Chicago", "206": "America/Los_Angeles", "405": "America/Chicago", "410": "America/New_York",
         "617": "America/New_York", "602": "America/Phoenix", "303": "America/Denver", "404": "America/New_York"}
BATCHES, PER_BATCH, LIMIT, ACCOUNT, CPS = 10, 300, 20, 100, 20.0
INGEST_RECORDS = 20_000


def number(n: int) -> str:
    return f"+1{AREAS[n % len(AREAS)]}{5550000 + n // len(AREAS):07d}"


def settings() -> Settings:
    return Settings.load(env={}, embedded_dispatcher="false", provider="simulator", sim_time_scale=1.0,
                         calls_per_second=CPS, max_concurrent_calls=ACCOUNT, poll_interval_seconds=STEP)


async def dispatch_run(mode: str, seed: int = 7) -> dict:
    clock = FixedClock(T0)
    raw = await open_backend("sqlite")
    s = settings()
    services = services_over(raw, s, clock)
    workspace, _ = await services.tenancy.create_workspace("compliance bench")
    if mode == "caps on":
        await services.tenancy.update_settings(workspace["_id"], {"maxAttemptsPerNumberPerDay": 3})
    agent = await services.tenancy.create_agent(workspace["_id"], {
        "name": "a", "requiredVariables": [], "callingNumbers": ["+14155550100"], "timezones": ["America/New_York"]})
    n = 0
    for b in range(BATCHES):
        body = {"name": f"b{b}", "agentId": str(agent["_id"]), "concurrencyLimit": LIMIT, "ringingTimeoutSeconds": 30,
                **({"compliance": "us-states"} if mode == "us-states" else {})}
        batch = await services.batches.create(workspace["_id"], agent, parse_batch_spec(body, services.phones))
        chunk = [PlannedCall(index=i, e164=number(n + i), raw_phone=number(n + i), extension=None, variables={},
                             zones=(ZONES[number(n + i)[2:5]],), zone_source="number", earliest=T0)
                 for i in range(PER_BATCH)]
        n += PER_BATCH
        assert (await raw.calls.enqueue(batch, chunk, clock.now())).error is None
        await services.batches.start_after_insert(batch)
    counter = OpCounter()
    repos = counted(raw, counter)
    counted_services = services_over(repos, s, clock)
    sim = Simulator(clock, {"answered": 0.6, "busy": 0.15, "no_answer": 0.25}, mean_duration=60, seed=seed)
    engine = Engine(repos, clock, s, sim, counted_services.events, name="bench")
    deliver = sim.sink

    async def sink(event) -> None:
        counter.phase = "events"
        try:
            await deliver(event)
        finally:
            counter.phase = "tick"

    sim.sink = sink
    counter.active = True
    cpu = 0.0
    next_reaper = 60.0
    while engine.dispatcher.stats.completed_batches < BATCHES:
        started = time.process_time()
        await engine.step()
        cpu += time.process_time() - started
        clock.advance(STEP)
        if (clock.now() - T0).total_seconds() >= next_reaper:
            next_reaper += 60
            counter.phase = "tick"
            await engine.reaper.run()
        if (clock.now() - T0).total_seconds() > 6 * 3600:
            raise RuntimeError(f"{mode}: not done in 6 virtual hours")
    counter.active = False
    placed = engine.dispatcher.stats.placed
    await raw.close()
    by_what = counter.by_what()
    return {"mode": mode, "placed": placed, "dispatcher": counter.in_phases("tick") / placed,
            "events": counter.in_phases("events") / placed, "cpu_ms": 1000 * cpu / placed,
            "caps_calls": by_what.get("caps.reserve", 0), "tenancy_calls": by_what.get("tenancy.list_workspaces", 0)}


async def ingest_round(profile: str) -> float:
    clock = FixedClock(T0)
    raw = await open_backend("sqlite-memory")
    services = services_over(raw, settings(), clock)
    workspace, _ = await services.tenancy.create_workspace("ingest")
    agent = await services.tenancy.create_agent(workspace["_id"], {
        "name": "a", "requiredVariables": [], "callingNumbers": ["+14155550100"], "timezones": ["America/New_York"]})
    spec = parse_batch_spec({"name": "b", "agentId": str(agent["_id"]), "compliance": profile}, services.phones)
    batch = await services.batches.create(workspace["_id"], agent, spec)
    body = orjson.dumps({"batchId": str(batch["_id"]),
                         "call_data": [{"phoneNumber": number(i), "name": f"n{i}"} for i in range(INGEST_RECORDS)]})
    principal = Principal(workspace_id=workspace["_id"], key_id=None)
    started = time.perf_counter()
    outcome = await services.ingestion.add_calls(principal, body)
    elapsed = time.perf_counter() - started
    assert outcome.data["added"] == INGEST_RECORDS, outcome.body
    await raw.close()
    return INGEST_RECORDS / elapsed


async def main_async(args: argparse.Namespace) -> None:
    runs = [await dispatch_run(mode) for mode in ("caps off", "caps on", "us-states")]
    print(f"dispatch: {BATCHES} batches x {PER_BATCH} calls, limit {LIMIT}, account {ACCOUNT}, {CPS:g} calls/s")
    print(f"{'mode':<10} {'placed':>7} {'port calls/placed':>18} {'events/placed':>14} {'cpu ms/placed':>14} "
          f"{'caps.reserve':>13} {'list_workspaces':>16}")
    for r in runs:
        print(f"{r['mode']:<10} {r['placed']:>7} {r['dispatcher']:>18.3f} {r['events']:>14.3f} {r['cpu_ms']:>14.3f} "
              f"{r['caps_calls']:>13} {r['tenancy_calls']:>16}")
    off, on, states = runs
    print(f"caps on - caps off: {on['dispatcher'] - off['dispatcher']:+.3f} port calls per placed call (goal <= +1)")
    print(f"us-states / none: dispatcher CPU per placed call x{states['cpu_ms'] / off['cpu_ms']:.2f}, "
          f"port calls x{states['dispatcher'] / off['dispatcher']:.2f} (goal <= 1.2)")
    ratios = []
    for i in range(args.rounds):
        order = ("none", "us-states") if i % 2 == 0 else ("us-states", "none")
        rates = {p: await ingest_round(p) for p in order}
        ratios.append(rates["none"] / rates["us-states"])
        print(f"ingest round {i + 1}: none {rates['none']:,.0f} rec/s, us-states {rates['us-states']:,.0f} rec/s")
    print(f"ingestion time us-states / none: median x{statistics.median(ratios):.2f} over {args.rounds} rounds "
          f"(goal <= 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
