"""Dispatch efficiency: how full the dispatcher keeps its slots, how fast it drains batches, at what cost.

Run with `python -m bench.dispatch` (or `make bench`). One deterministic run (seeded) of several
scenarios, each on a virtual clock (FixedClock) and driven like tests/dispatch_harness.py:
`engine.step()` (simulator pump + one dispatcher tick), then the clock moves by 0.5 s = the production
poll interval (settings.poll_interval_seconds), so the ticks per virtual second, and with them the
polling cost, are the production ones. The reaper runs at its production cadence (`engine.reaper.run()`
every lease_seconds / 2 = 60 virtual seconds). Storage is the embedded store (dialer.store.sqlite, on a
file in a temporary folder) unless said otherwise; "sqlite-memory" is the same store on SQLite's
`:memory:` (no file: the baseline the file is compared with).

Workloads (all numbers in America/New_York; clock at Monday 2026-11-23 15:00 UTC = 10:00 there, the
default 08:00-21:00 window open for the whole run; ringingTimeoutSeconds 30; no retries; 20 calls/s):

  single     2,000 calls in one batch, concurrencyLimit 50, account max_concurrent_calls 100 (the batch
             limit binds).
  account    20 batches x 1,000 calls, each concurrencyLimit 50, account max_concurrent_calls 100 (the
             account binds: 20 x 50 = 1,000 wanted, 100 allowed).

Each in three modes:

  embedded   the provider's events are applied in the dispatcher's process: Engine with the Simulator
             as provider (events_in_process defaults to True), so a call's end pokes the dispatcher.
  separate   a separate worker: the Engine is built with events_in_process=False and the simulator's
             sink applies the events through the CallEvents of a second Services over the same
             repositories (as the API process does with Twilio's callbacks); nothing pokes or wakes the
             dispatcher, which finds freed slots by looking again on its own (every 2 s): a worker on another
             machine (MongoDB).
  woken      separate, but the second Services tells the worker over a Unix datagram socket, as `dialer serve`
             and `dialer worker` do on one machine (dialer/wakeups.py): a call's end pokes the worker one step
             later (a process boundary), and the worker rechecks every 10 s.

Simulator outcomes: answered 0.55 and machine 0.05 (ring 3-25 s, then a talk time drawn exponentially
with mean 90 s, at least 5 s), busy 0.10 (2-6 s), no_answer 0.25 (rings the whole 30 s), failed 0.05
(1 s); time scale 1. Setup (workspace, agent, batches, calls written with CallRepo.enqueue in chunks of
1,000 from PlannedCall objects, batches started) is not measured.

The figures, per run:

  peak in flight      per batch (the highest of any batch) and for the account, from four views: the
                      slot ledger (calls in flight plus reservations whose claim has not landed, read
                      after every step), the store (calls in dialing / ringing / in_progress, from
                      CallRepo.tallies), the provider (placed and final event not yet applied) and an
                      exact sweep over the provider-side intervals [placed, ended). Goal: <= the batch
                      limit and <= the account cap in every view (a correctness check: exit 1 if not).
  makespan / FIFO     virtual time from the first step to the tick that marked the last batch completed,
                      against a zero-latency FIFO replay of the same calls: same placement order, same
                      provider-side occupied times (placement -> final event), same dial rate, same
                      batch limits and account cap, each call started the instant a slot and the rate
                      allow. Goal <= 1.02.
  utilisation         over the steps after which a call was still queued and due (not yet claimed: every
                      call is due from the start and none is requeued, checked), provider in-flight over
                      the bound, both summed over those steps (sampled after each), bound = the lesser of
                      the account cap and the batches' limits, each batch's up to the calls it has not
                      ended (a batch of limit 1 with calls left holds one slot). Goal >= 0.97. The time-weighted figure (exact integral of
                      provider-side calls over the same time) is shown beside it.
  db ops / placed     every awaited port method call (CallRepo, BatchRepo, SlotLedger, TenancyRepo,
                      IdempotencyRepo: each repository object of the Repositories given to the Engine
                      and to the CallEvents is wrapped by a counting proxy) divided by the calls placed
                      at the provider. Split into dispatcher (ticks: slot reads and reservations, due
                      reads, claims and placement records; and the reaper) and events (the CallEvents
                      applying the provider's events); listed by method below. Goal <= 4 in every mode.
                      The bench's own observations use the unwrapped repositories and are not counted.

Then:

  MongoDB round trips the single workload once more, embedded mode, on the MongoDB repositories over
                      mongomock (`mongomock_repositories()`): every call of a collection method (find
                      (one per cursor read), find_one, update_one, bulk_write, find_one_and_update,
                      insert_*, aggregate, delete_*, replace_one, count_documents, ...) of the calls,
                      batches, dispatch (ledger), idempotency, workspaces, api_keys and agents
                      collections, per placed call, next to the port calls per placed call of that run.
                      Goal <= 4. It runs 1,000 calls by default, not 2,000 (--mongo-calls): mongomock has
                      no indexes, so every query walks the collection (2,000 calls take ~2 minutes; the
                      per-call figures do not depend on the size). The store view of the peaks is read
                      every 20 steps there (an aggregate); the other views every step.
  CPU per placed call one batch, limit 50, with 1,000 / 10,000 / 50,000 calls queued, run until 500 calls
                      are placed: time.process_time of the engine steps (pump, events, tick) divided by
                      the calls placed (the reaper runs at its cadence, not timed; one unreported warm-up
                      run first). Goal: the 50k figure within 1.5x the 1k one.

  Running batches    the same calls/s (account cap 1,000 binds, 100 calls/s budget) from 1 batch (10,000 calls,
                      limit 1,000) to 1,000 batches (10 calls each, limit 1) and 10,000 batches (1 call each):
                      CPU per placed call (steps + reaper) side by side, goal: within 1.5x of the 1-batch figure
                      (the 1-batch row runs before, between and after the others; each is compared with the
                      mean of the two 1-batch runs beside it: the machine's speed drifts within minutes);
                      port calls per placed call, goal <= 4. The store view of the peaks is read every 20 steps.

The final table lists every figure, its goal and MET / MISSED. Correctness checks (limits never passed,
every number dialled once, every call final and every batch completed, no slot left taken, nothing went
back to the queue, "queued and due" confirmed against the store every 20 steps) make the run exit 1 if
they fail; a missed performance goal does not.

Modules: bench/dispatch_workload.py (Workload, the runs' constants, setup), bench/port_counting.py (what
a port call is and how it is counted, by phase; MongoDB round trips), bench/dispatch_run.py (running one
workload on the virtual clock, observing and verifying it: Run, run_workload, the peaks in flight),
bench/dispatch_figures.py (a run's figures: FIFO replay, utilisation, port calls, report_run); this one:
the goals, CPU per placed call and the command line.

Options: --quick (smaller workloads, for a smoke run), --mongo-calls N, --seed N. One workload instead of
the table: --batches N [--calls-per-batch M --limit L --account A --cps C --mode embedded|separate
--backend sqlite|sqlite-memory|mongomock --dispatchers K] [--json] (K dispatchers racing on one store: the JSON
adds reservations, cas_retries_per_reservation, calls_per_second in virtual and real time; `port_calls` is the
port calls per placed call by repository method, `port_calls_by_phase` by ticks / reaper / events;
`mongo_round_trips_per_placed` with --backend mongomock), e.g. `python -m bench.dispatch --batches 200
--calls-per-batch 100 --limit 10 --account 1000 --cps 50 --json`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import time

from bench.dispatch_figures import Figures, figures, report_run
from bench.dispatch_run import Run, open_backend, run_workload, sweep_peaks
from bench.dispatch_workload import (CPS, CROSS_CHECK_EVERY, MEAN_DURATION, OUTCOMES, RINGING_TIMEOUT, SEED, STEP,
                                     T0, Workload, settings_for, setup, virtual_seconds)
from dialer.composition import services_over
from dialer.core.clock import FixedClock
from workers.engine import Engine
from workers.telephony.simulator import Simulator

GOAL_UTILISATION = 0.97
GOAL_MAKESPAN = 1.02
GOAL_OPS = 4.0
GOAL_CPU_RATIO = 1.5
CPU_QUEUES = (1_000, 10_000, 50_000)
CPU_PLACED = 500


# ------------------------------------------------------------------------------------ CPU scaling

async def cpu_per_placed(queued: int, seed: int, backend: str = "sqlite") -> tuple[float, int, int, float]:
    """(CPU seconds per placed call, calls placed, steps, database transactions per placed call) with
    `queued` calls waiting in one batch. CPU is the whole process's, the store's threads included."""
    wl = Workload(f"cpu-{queued}", 1, queued, 50, 100)
    clock = FixedClock(T0)
    settings = settings_for(wl)
    raw = await open_backend(backend)
    services = services_over(raw, settings, clock)
    await setup(services, wl)
    operations = raw.database.operations
    sim = Simulator(clock, OUTCOMES, mean_duration=MEAN_DURATION, time_scale=1.0, seed=seed)
    engine = Engine(raw, clock, settings, sim, services.events, name="bench-cpu")
    reaper_every = max(1.0, settings.lease_seconds / 2)
    next_reaper = reaper_every
    target = min(CPU_PLACED, queued // 2)
    gc.collect()
    cpu = 0.0
    steps = 0
    while len(sim.placed) < target:
        start = time.process_time()
        await engine.step()
        cpu += time.process_time() - start
        steps += 1
        clock.advance(STEP)
        if virtual_seconds(clock.now()) >= next_reaper:
            next_reaper += reaper_every
            await engine.reaper.run()
    placed = len(sim.placed)
    operations = raw.database.operations - operations
    await raw.close()
    return cpu / placed, placed, steps, operations / placed


# ------------------------------------------------------------------------------------------- main

def goal_row(rows: list, name: str, value: str, goal: str, met: bool) -> None:
    rows.append((name, value, goal, "MET" if met else "MISSED"))


async def main_async(args: argparse.Namespace) -> int:
    scale = 10 if args.quick else 1
    workloads = [Workload("single", 1, 2000 // scale, 50, 100), Workload("account", 20, 1000 // scale, 50, 100)]
    runs: list[tuple[Run, Figures]] = []
    print(f"dispatch bench: virtual clock, {STEP:g} s steps (the poll interval), reaper every 60 virtual s, "
          f"seed {args.seed}")
    print(f"  outcomes {', '.join(f'{k} {v:g}' for k, v in OUTCOMES.items())}; mean talk {MEAN_DURATION:g} s; "
          f"ringing timeout {RINGING_TIMEOUT} s")
    for wl in workloads:
        for mode in ("embedded", "separate", "woken"):
            out = await run_workload(wl, mode, seed=args.seed)
            f = figures(out)
            report_run(out, f)
            runs.append((out, f))
    mongo_wl = Workload("single", 1, args.mongo_calls // scale, 50, 100)
    mongo = await run_workload(mongo_wl, "embedded", backend="mongomock", seed=args.seed,
                               store_view_every=CROSS_CHECK_EVERY)
    mongo_f = figures(mongo)
    report_run(mongo, mongo_f)
    print(f"\n== CPU per placed call, one batch, limit 50, until {CPU_PLACED} calls are placed (embedded, SQLite file)")
    cpu: dict[int, float] = {}
    queues = tuple(q // scale for q in CPU_QUEUES)
    await cpu_per_placed(queues[0], args.seed)  # warm-up (imports, caches), not reported
    for queued in queues:
        per, placed, steps, _ = await cpu_per_placed(queued, args.seed)
        cpu[queued] = per
        print(f"   {queued:>6,} queued: {per * 1e3:.3f} ms CPU per placed call ({placed} placed in {steps:,} steps)")

    rows: list[tuple[str, str, str, str]] = []
    for out, f in runs + [(mongo, mongo_f)]:
        wl = out.wl
        sb, sa = sweep_peaks(out)
        pb = max([*out.peak_batch.values(), sb])
        pa = max([*out.peak_account.values(), sa])
        goal_row(rows, f"{out.label}: peak in flight, batch / account", f"{pb} / {pa}",
                 f"<= {wl.limit} / {wl.account}", pb <= wl.limit and pa <= wl.account)
        if out.backend == "sqlite":
            goal_row(rows, f"{out.label}: makespan / zero-latency FIFO", f"{f.ratio:.3f}", f"<= {GOAL_MAKESPAN}",
                     f.ratio <= GOAL_MAKESPAN)
            goal_row(rows, f"{out.label}: utilisation (bound {wl.bound})", f"{f.utilisation:.3f}",
                     f">= {GOAL_UTILISATION}", f.utilisation >= GOAL_UTILISATION)
        goal_row(rows, f"{out.label}: port calls / placed call", f"{f.ops_per:.2f}", f"<= {GOAL_OPS:g}",
                 f.ops_per <= GOAL_OPS)
        if out.round_trips is not None:
            rt = out.round_trips.total / out.placed
            goal_row(rows, f"{out.label}: MongoDB round trips / placed call ({wl.calls:,} calls)", f"{rt:.2f}",
                     f"<= {GOAL_OPS:g}", rt <= GOAL_OPS)
    # Scale in running batches: the same calls/s (the account binds: 1,000 in flight, 100 calls/s budget)
    # from one batch to 1,000 and 10,000 running batches. The 1-batch row runs before, between and after the
    # others, and each is compared with the mean of the 1-batch runs on either side of it: this machine's
    # speed drifts by 10-20% within minutes, and a single 1-batch run set every ratio.
    print("\n== Running batches: CPU per placed call at the same calls/s (embedded, SQLite file)")
    one = (1, 10_000 // scale, 1000 // scale)
    order = [one, (1000 // scale, 10, 1), one, (10_000 // scale, 1, 1), one]
    done: list[tuple[Run, Figures]] = []
    for n, per_batch, limit in order:
        wl = Workload(f"{n:,} batch" + "es" * (n > 1), n, per_batch, limit, 1000 // scale, 100.0)
        out = await run_workload(wl, "embedded", seed=args.seed, store_view_every=CROSS_CHECK_EVERY)
        f = figures(out)
        done.append((out, f))
        print(f"   {wl.describe()}: {out.cpu_seconds * 1e3 / out.placed:.3f} ms CPU per placed call, "
              f"{f.ops_per:.2f} port calls per placed call, {out.placed / f.makespan:.1f} calls/s, "
              f"checks {'passed' if all(ok for _, ok in out.checks) else 'FAILED'}")
    ratio = cpu[queues[-1]] / cpu[queues[0]]
    for queued in queues:
        rows.append((f"CPU per placed call, {queued:,} queued", f"{cpu[queued] * 1e3:.3f} ms", "", ""))
    goal_row(rows, f"CPU per placed call, {queues[-1]:,} / {queues[0]:,} queued", f"{ratio:.2f}x",
             f"<= {GOAL_CPU_RATIO}x", ratio <= GOAL_CPU_RATIO)
    per = [out.cpu_seconds / out.placed for out, _ in done]
    rows.append((f"{done[0][0].wl.name}: CPU per placed call (3 runs)",
                 " / ".join(f"{per[i] * 1e3:.2f}" for i in (0, 2, 4)) + " ms", "", ""))
    for i in (1, 3):
        rows.append((f"{done[i][0].wl.name}: CPU per placed call", f"{per[i] * 1e3:.3f} ms", "", ""))
    for out, f in (done[0], done[1], done[3]):
        goal_row(rows, f"{out.wl.name}: port calls / placed call", f"{f.ops_per:.2f}", f"<= {GOAL_OPS:g}",
                 f.ops_per <= GOAL_OPS)
    for i in (1, 3):
        ratio_n = per[i] / ((per[i - 1] + per[i + 1]) / 2)
        goal_row(rows, f"CPU per placed call, {done[i][0].wl.name} / 1 batch (the runs beside it)",
                 f"{ratio_n:.2f}x", f"<= {GOAL_CPU_RATIO}x", ratio_n <= GOAL_CPU_RATIO)
    runs += done
    width = max(len(r[0]) for r in rows)
    print(f"\n  {'figure':<{width}}  {'value':>10}  {'goal':>14}")
    for name, value, goal, verdict in rows:
        print(f"  {name:<{width}}  {value:>10}  {goal:>14}  {verdict}")
    failed = [(out.label, name) for out, _ in runs + [(mongo, mongo_f)] for name, ok in out.checks if not ok]
    missed = [r[0] for r in rows if r[3] == "MISSED"]
    print(f"\n  correctness checks: {'all passed' if not failed else 'FAILED: ' + '; '.join(f'{l}: {n}' for l, n in failed)}")
    print(f"  goals missed: {len(missed)} of {sum(1 for r in rows if r[3])}" + (f" ({'; '.join(missed)})" if missed else ""))
    return 1 if failed else 0


async def one_workload(args: argparse.Namespace) -> int:
    """One workload from the command line, its figures as one JSON object (exit 1 on a broken limit)."""
    import json

    wl = Workload("cli", args.batches, args.calls_per_batch, args.limit, args.account, args.cps)
    every = 1 if args.backend.startswith("sqlite") and wl.batches <= 100 else CROSS_CHECK_EVERY
    profile = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
    out = await run_workload(wl, args.mode, backend=args.backend, seed=args.seed, store_view_every=every,
                             dispatchers=args.dispatchers, profile=profile)
    if profile is not None:
        profile.dump_stats(args.profile)
    f = figures(out)
    sb, sa = sweep_peaks(out)
    peak_batch, peak_account = max([*out.peak_batch.values(), sb]), max([*out.peak_account.values(), sa])
    violations = [name for name, ok in out.checks if not ok]
    violations += [f"peak per batch {peak_batch} > {wl.limit}"] * (peak_batch > wl.limit)
    violations += [f"peak for the account {peak_account} > {wl.account}"] * (peak_account > wl.account)
    report = {"batches": wl.batches, "callsPerBatch": wl.calls_per_batch, "limit": wl.limit, "account": wl.account,
              "cps": wl.cps, "mode": args.mode, "backend": args.backend, "dispatchers": args.dispatchers, "placed": out.placed,
              "makespan_ratio": round(f.ratio, 4), "utilisation": round(f.utilisation, 4),
              "port_calls_per_placed": round(f.ops_per, 3),
              # Where they go: per placed call, by repository method and by phase (ticks, reaper, events).
              "port_calls": {what: round(n / out.placed, 3) for what, n in out.counter.by_what().most_common()}
              if out.placed else {},
              "port_calls_by_phase": {phase: round(out.counter.in_phases(phase) / out.placed, 3)
                                      for phase in ("tick", "reaper", "events")} if out.placed else {},
              # On the MongoDB repositories (mongomock): the collection methods called, per placed call.
              "mongo_round_trips_per_placed": round(out.round_trips.total / out.placed, 3)
              if out.round_trips is not None and out.placed else None,
              "cpu_ms_per_placed": round(out.cpu_seconds * 1e3 / out.placed, 3) if out.placed else None,
              "reaper_cpu_ms_per_placed": round(out.cpu_reaper * 1e3 / out.placed, 3) if out.placed else None,
              "peak_batch": peak_batch, "peak_account": peak_account, "violations": violations,
              # The group: reservations (one compare-and-set each), those lost to another dispatcher (retried
              # at the next tick) per reservation written, calls/s placed in virtual time, and in real time.
              "reservations": out.reserved, "cas_retries_per_reservation": round(out.lost / out.reserved, 4)
              if out.reserved else None,
              "calls_per_second": round(out.placed / f.makespan, 2) if f.makespan else None,
              "real_calls_per_second": round(out.placed / out.real_seconds, 1) if out.real_seconds else None}
    if args.json:
        print(json.dumps(report))
    else:
        report_run(out, f)
    return 1 if violations else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="workloads a tenth the size (smoke run)")
    parser.add_argument("--mongo-calls", type=int, default=1000, help="calls in the mongomock run")
    parser.add_argument("--seed", type=int, default=SEED)
    one = parser.add_argument_group("one workload (instead of the whole table)")
    one.add_argument("--batches", type=int, help="running batches")
    one.add_argument("--calls-per-batch", type=int, default=100)
    one.add_argument("--limit", type=int, default=10, help="each batch's concurrency limit")
    one.add_argument("--account", type=int, default=100, help="the account's calls in flight")
    one.add_argument("--cps", type=float, default=CPS, help="the account's calls per second")
    one.add_argument("--mode", choices=("embedded", "separate", "woken"), default="embedded")
    one.add_argument("--backend", choices=("sqlite", "sqlite-memory", "mongomock"), default="sqlite")
    one.add_argument("--dispatchers", type=int, default=1, help="dispatchers racing on one store (their ticks "
                     "run concurrently, each its own Engine)")
    one.add_argument("--json", action="store_true", help="print one JSON object")
    one.add_argument("--profile", metavar="FILE", help="cProfile the dispatcher's steps only (pstats file)")
    args = parser.parse_args()
    logging.getLogger("dialer.store").setLevel(logging.ERROR)
    logging.getLogger("workers").setLevel(logging.WARNING)
    logging.getLogger("dialer").setLevel(logging.WARNING)
    if args.batches:
        if args.dispatchers < 1:
            parser.error("--dispatchers: at least 1")
        sys.exit(asyncio.run(one_workload(args)))
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
