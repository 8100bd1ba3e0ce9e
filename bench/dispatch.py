"""Dispatch efficiency: how full the dispatcher keeps its slots, how fast it drains a batch, at what cost.

Run with `python -m bench.dispatch` (or `make bench`). One deterministic run (seeded): the in-memory
store, the simulated provider and one Engine on a virtual clock (FixedClock), driven like
tests/dispatch_harness.py: `engine.step()` (simulator pump + one dispatcher tick), then the clock
moves by a fixed step, 0.5 s by default = the production poll interval (settings.poll_interval_seconds),
so the number of ticks per virtual second, and with it the polling cost, is the production one. The
reaper runs at its production cadence too (every lease_seconds / 2 = 60 virtual seconds).

Workload: 2,000 calls (+1212555xxxx, all America/New_York) in one batch, concurrencyLimit 50,
ringingTimeoutSeconds 30, no retries; account max_concurrent_calls 100 and 20 calls per second (so
neither binds); clock at Monday 2026-11-23 15:00 UTC = 10:00 in New York, the default window
(08:00-21:00) open for the whole run. Simulator outcomes: answered 0.55 and machine 0.05 (ring 3-25 s,
then a talk time drawn exponentially with mean 90 s, at least 5 s), busy 0.10 (2-6 s), no_answer 0.25
(rings the whole 30 s timeout), failed 0.05 (1 s); sim time scale 1 (virtual seconds = call seconds).
Ingestion (Tenancy, Batches, Planner + CallWriter, as addCallsToBatch does) is not measured.

The figures:

  peak in flight      the highest number of calls in flight, sampled after every step from three
                      views: the slot document (`dispatch.all`, what the dispatcher reserved, including
                      calls claimed but not yet placed), the store (calls in dialing / ringing /
                      in_progress) and the simulator (calls placed and not yet ended at the provider);
                      an exact sweep over the provider-side intervals [placed, ended) checks the last
                      one between samples. Goal: <= 50 (the batch limit), in every view.
  utilisation         over the steps after which at least one call was still queued and due (the
                      dispatcher had work it could have started), the average of in-flight / limit,
                      in-flight as the provider sees it after the step. Goal >= 0.95. Sampled after
                      the step's tick, this misses the time a slot stays empty between a call's end at
                      the provider and the tick that refills it, so the table also shows the
                      time-weighted figure (exact integral of provider-side calls over the same time)
                      and where the empty slot-seconds went (end -> event delivered by the next pump ->
                      replacement placed).
  makespan / ideal    measured: virtual time from the first step to the tick that marked the batch
                      completed. Ideal: max(sum over calls of their provider-side occupied time
                      (placement -> final event) / limit, the longest single call): no dispatcher can
                      beat it. Goal <= 1.05. For reference, the table also shows a zero-latency FIFO
                      dispatcher replayed on the same calls (same order, same occupied times, same
                      dial rate): what is lost to the tail (the last calls of a FIFO queue end at
                      different times) rather than to the dispatcher's latency.
  db ops / placed     every awaited collection operation of the dispatch phase (find cursors iterated,
                      find_one, update_one, bulk_write, find_one_and_update, count_documents, aggregate,
                      insert_*, ...), counted by a wrapper around the store the Engine is given (events
                      applied by the pump, dispatcher ticks, reaper runs), divided by the calls placed
                      at the provider (re-placements of retries included). Goal <= 4. The bench's own
                      observations use the unwrapped store and are not counted.

Below the table: the operations by phase (events applied by the pump, ticks, reaper) and by
collection method, the ticks by what they did (idle with the slots full, idle after the queue emptied,
claimed and placed, ...) with their own cost, and the empty slot-seconds while calls waited split into
the ramp-up, the time from a call's end at the provider to the pump that applies its final event, and
the time from there to the replacement's placement. Checks (every number dialled once, all calls
final, no slot left taken, "queued and due" confirmed against the store every 20 steps, ...) make the
run exit non-zero if they fail.

Options: --calls N, --limit N, --step SECONDS, --cps N, --mean-duration SECONDS, --seed N,
--profile (also cProfile the run's CPU time, top functions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import heapq
import inspect
import io
import logging
import pstats
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from dialer.core.batch_spec import parse_batch_spec
from dialer.services.batches import Batches
from dialer.core.clock import FixedClock
from dialer.services.enqueue import CallWriter
from dialer.core.records import IngestContext, Planner
from dialer.core.phones import PhoneNormaliser
from dialer.settings import Settings
from workers.slots import ACCOUNT, Slots
from dialer.core.statuses import IN_FLIGHT_VALUES, BatchStatus, CallStatus
from dialer.store import Store, open_store
from dialer.services.tenancy import Tenancy
from dialer.core.windows import CallingWindow
from workers.engine import Engine
from workers.telephony.simulator import Simulator

SEED = 20261123
CALLS = 2000
LIMIT = 50
STEP = 0.5  # seconds of virtual time between steps: the production poll interval
CPS = 20.0
MAX_CONCURRENT = 100
RINGING_TIMEOUT = 30
MEAN_DURATION = 90.0
OUTCOMES = {"answered": 0.55, "busy": 0.10, "no_answer": 0.25, "failed": 0.05, "machine": 0.05}
GOAL_UTILISATION = 0.95
GOAL_MAKESPAN = 1.05
GOAL_OPS = 4.0
# A Monday, 10:00 in New York (as in tests/conftest.py): the default 08:00-21:00 window is open there
# for eleven hours, far longer than the run.
T0 = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.timezone.utc)
ZONE = "America/New_York"
PROVIDER_FINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
CROSS_CHECK_EVERY = 20  # steps between two checks of "queued and due" against the store
MAX_VIRTUAL_SECONDS = 6 * 3600  # give up (and say so) rather than loop for ever


# ------------------------------------------------------------------------------- counting store

class OpCounter:
    """Counts operations by (phase, collection.method); counts only while `active`."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self._by_phase: Counter = Counter()
        self.phase = "tick"
        self.active = False

    def hit(self, what: str) -> None:
        if self.active:
            self.counts[(self.phase, what)] += 1
            self._by_phase[self.phase] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def phase_total(self, phase: str) -> int:
        return self._by_phase[phase]


class CountingCursor:
    """A find() cursor: chained modifiers pass through; one operation when it is first read."""

    def __init__(self, inner: Any, counter: OpCounter, what: str) -> None:
        self._inner = inner
        self._counter = counter
        self._what = what
        self._counted = False

    def _count(self) -> None:
        if not self._counted:
            self._counted = True
            self._counter.hit(self._what)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in ("sort", "limit", "skip", "batch_size", "hint", "max_time_ms", "collation"):
            def chained(*args: Any, **kwargs: Any) -> "CountingCursor":
                self._inner = attr(*args, **kwargs)
                return self
            return chained
        return attr

    async def to_list(self, length: int | None = None) -> list:
        self._count()
        return await self._inner.to_list(length)

    def __aiter__(self) -> Any:
        self._count()
        return self._inner.__aiter__()


class CountingCollection:
    def __init__(self, inner: Any, name: str, counter: OpCounter) -> None:
        self._inner = inner
        self._name = name
        self._counter = counter

    def find(self, *args: Any, **kwargs: Any) -> CountingCursor:
        return CountingCursor(self._inner.find(*args, **kwargs), self._counter, f"{self._name}.find")

    def __getattr__(self, method: str) -> Any:
        attr = getattr(self._inner, method)
        if not callable(attr):
            return attr
        what = f"{self._name}.{method}"

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            # Coroutines (find_one, update_one, bulk_write, ...) and aggregate's cursor are round trips.
            if inspect.isawaitable(result) or method == "aggregate":
                self._counter.hit(what)
            return result

        return call


class CountingStore:
    """Store-like: store.calls, store.batches, ... are counting proxies of the real collections."""

    def __init__(self, store: Store, counter: OpCounter) -> None:
        self._store = store
        self._counter = counter
        self._collections: dict[str, CountingCollection] = {}
        self.in_memory = store.in_memory

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in ("db", "client"):  # would bypass the counting: say so rather than miscount
            raise AttributeError(f"the counting store does not expose store.{name}")
        if name not in self._collections:
            self._collections[name] = CountingCollection(getattr(self._store, name), name, self._counter)
        return self._collections[name]


# --------------------------------------------------------------------------- recording simulator

class RecordingSimulator(Simulator):
    """The simulator, also noting when each call ends at the provider (its final event's due time)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ends: dict[str, dt.datetime] = {}
        self.order: list[str] = []  # provider call ids, in placement order

    async def place_call(self, request: Any) -> Any:
        placed = await super().place_call(request)
        self.order.append(placed.provider_call_id)
        return placed

    def _schedule(self, at: dt.datetime, call: Any, status: str, **kw: Any) -> None:
        if status in PROVIDER_FINAL:
            self.ends[call.sid] = at
        super()._schedule(at, call, status, **kw)


# ------------------------------------------------------------------------------------------ setup

def numbers(n: int) -> list[dict]:
    return [{"phoneNumber": f"+1212555{i:04d}", "account_id": f"AC-{i:06d}"} for i in range(n)]


async def ingest(store: Store, clock: FixedClock, settings: Settings, args: argparse.Namespace) -> dict:
    """Workspace, agent, batch and its calls, the way addCallsToBatch writes them; returns the batch."""
    phones = PhoneNormaliser(settings.default_region, settings.strict_numbers)
    tenancy = Tenancy(store, clock, phones)
    batches = Batches(store, clock)
    workspace, _ = await tenancy.create_workspace("dispatch bench")
    agent = await tenancy.create_agent(workspace["_id"], {
        "name": "bench agent", "requiredVariables": [], "callingNumbers": ["+14155550100"], "timezones": [ZONE]})
    spec = parse_batch_spec({"name": "dispatch bench", "agentId": str(agent["_id"]), "concurrencyLimit": args.limit,
                             "ringingTimeoutSeconds": RINGING_TIMEOUT, "retry": {"maxAttempts": 1, "on": []}}, phones)
    batch = await batches.create(workspace["_id"], agent, spec)
    ctx = IngestContext(required_variables=[], window=CallingWindow.parse(batch["callingWindow"]), batch_zone=None,
                        agent_zone=ZONE, not_before=clock.now())
    plan = Planner(phones, ctx).plan(numbers(args.calls))
    assert not plan.errors and len(plan.calls) == args.calls, plan.error_view()
    assert all(c.zones == (ZONE,) and c.earliest == clock.now() for c in plan.calls), "window not open everywhere"
    writer = CallWriter(store, clock)
    for chunk in plan.chunks(settings.chunk_size):
        result = await writer.write_chunk(batch, chunk)
        assert result.error is None and result.inserted == len(chunk), result
    assert await batches.start_after_insert(batch) == BatchStatus.RUNNING.value
    return batch


# -------------------------------------------------------------------------------------------- run

@dataclass
class Sample:
    at: float  # virtual seconds since start, after the step's tick
    slots: int  # entries in the slot document (reserved: claimed or placed)
    store: int  # calls in flight in the store
    provider: int  # calls placed and not yet ended at the provider
    waiting: bool  # at least one call still queued and due


@dataclass
class TickCost:
    kind: str  # idle | idle-tail | claim | place | claim+place | complete
    ops: int  # the tick's own operations
    event_ops: int  # operations of the events the step's pump applied


@dataclass
class Run:
    args: argparse.Namespace
    samples: list[Sample] = field(default_factory=list)
    ticks: list[TickCost] = field(default_factory=list)
    counter: OpCounter = field(default_factory=OpCounter)
    placed_at: dict[str, float] = field(default_factory=dict)  # sid -> virtual seconds
    ended_at: dict[str, float] = field(default_factory=dict)  # sid -> virtual seconds (provider side)
    delivered_at: dict[str, float] = field(default_factory=dict)  # sid -> when its final event was applied
    placement_order: list[str] = field(default_factory=list)
    completed_at: float | None = None
    steps: int = 0
    reaper_runs: int = 0
    real_seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    stats: Any = None
    checks: list[tuple[str, bool]] = field(default_factory=list)
    cross_checks: int = 0
    cross_check_failures: int = 0
    stats_claimed: Any = None  # () -> calls claimed so far by the dispatcher


def _seconds(at: dt.datetime) -> float:
    return (at - T0).total_seconds()


async def run(args: argparse.Namespace) -> Run:
    clock = FixedClock(T0)
    settings = Settings.load(env={}, embedded_dispatcher="false", provider="simulator", sim_time_scale=1.0,
                             calls_per_second=args.cps, max_concurrent_calls=max(MAX_CONCURRENT, args.limit),
                             poll_interval_seconds=args.step)
    store = await open_store(settings)
    batch = await ingest(store, clock, settings, args)
    out = Run(args)
    counter = out.counter
    sim = RecordingSimulator(clock, OUTCOMES, mean_duration=args.mean_duration, time_scale=1.0, seed=args.seed)
    engine = Engine(CountingStore(store, counter), clock, settings, sim, name="bench")  # type: ignore[arg-type]
    deliver = sim.sink
    assert deliver is not None

    async def sink(event: Any) -> None:
        counter.phase = "events"
        try:
            await deliver(event)
        finally:
            counter.phase = "tick"
        if event.status in PROVIDER_FINAL:
            out.delivered_at[event.provider_call_id] = _seconds(clock.now())

    sim.sink = sink
    reaper_every = max(1.0, settings.lease_seconds / 2)  # as Engine.start schedules it
    next_reaper = reaper_every
    placed_before = 0
    stats = engine.dispatcher.stats
    out.stats_claimed = lambda: stats.claimed
    started = time.perf_counter()
    counter.active = True
    try:
        while True:
            now = _seconds(clock.now())
            if now > MAX_VIRTUAL_SECONDS:
                raise RuntimeError(f"the batch did not complete within {MAX_VIRTUAL_SECONDS} virtual seconds")
            before_ops, before_events = counter.total, counter.phase_total("events")
            before_claimed, before_done = stats.claimed, stats.completed_batches
            queue_empty = stats.claimed >= args.calls
            await engine.step()
            out.steps += 1
            placed = len(sim.placed)
            event_ops = counter.phase_total("events") - before_events
            kind = _tick_kind(stats.claimed > before_claimed, placed > placed_before,
                              stats.completed_batches > before_done)
            if kind == "idle" and queue_empty:
                kind = "idle-tail"
            out.ticks.append(TickCost(kind, counter.total - before_ops - event_ops, event_ops))
            for sid in sim.order[placed_before:]:
                out.placed_at[sid] = _seconds(sim.calls[sid].created)
                out.placement_order.append(sid)
            placed_before = placed
            counter.active = False  # the bench's own look at the state is not the dispatcher's cost
            out.samples.append(await _sample(store, sim, batch["_id"], clock, out))
            if stats.completed_batches:
                out.completed_at = now
                break
            counter.active = True
            clock.advance(args.step)
            if _seconds(clock.now()) >= next_reaper:
                next_reaper += reaper_every
                counter.phase = "reaper"
                await engine.reaper.run()
                counter.phase = "tick"
                out.reaper_runs += 1
    finally:
        counter.active = False
    out.real_seconds = time.perf_counter() - started
    out.ended_at = {sid: _seconds(at) for sid, at in sim.ends.items()}
    out.stats = stats
    await _verify(store, sim, batch, out)
    await store.close()
    return out


def _tick_kind(claimed: bool, placed: bool, completed: bool) -> str:
    if completed:
        return "complete"
    if claimed and placed:
        return "claim+place"
    return "claim" if claimed else "place" if placed else "idle"


async def _sample(store: Store, sim: RecordingSimulator, batch_id: Any, clock: FixedClock, out: Run) -> Sample:
    slot_doc = await store.dispatch.find_one({"_id": ACCOUNT}, {"all": 1})
    reserved = len((slot_doc or {}).get("all", []))
    flying = await store.calls.count_documents({"status": {"$in": IN_FLIGHT_VALUES}})
    # The simulator's own view: placed, minus those whose final status it has delivered (every event due
    # by now has been pumped, so this is exact at the sample instant).
    provider = len(sim.order) - len(out.delivered_at)
    # Queued and due: every call is due from the start (checked at ingestion) and none goes back to the
    # queue (no retry policy, no provider error, window open: checked at the end), so the calls not yet
    # claimed are exactly the queued and due ones. mongomock answers the equivalent query in ~15 ms with
    # 2,000 calls, so it is only asked every CROSS_CHECK_EVERY steps, to confirm.
    waiting = out.stats_claimed() < out.args.calls
    if len(out.samples) % CROSS_CHECK_EVERY == 0:
        due = await store.calls.find_one({"batchId": batch_id, "status": CallStatus.QUEUED.value,
                                          "nextAttemptAt": {"$lte": clock.now()}}, {"_id": 1})
        out.cross_checks += 1
        if (due is not None) != waiting:
            out.cross_check_failures += 1
    return Sample(_seconds(clock.now()), reserved, flying, provider, waiting)


async def _verify(store: Store, sim: RecordingSimulator, batch: dict, out: Run) -> None:
    doc = await store.batches.find_one({"_id": batch["_id"]})
    out.checks.append(("batch completed", doc["status"] == BatchStatus.COMPLETED.value))
    calls = await store.calls.find({"batchId": batch["_id"]}, {"status": 1, "outcome": 1, "attempts": 1}).to_list(None)
    out.outcomes = Counter(c.get("outcome", c["status"]) for c in calls)
    out.checks.append((f"all {out.args.calls} calls finished",
                       len(calls) == out.args.calls and all(c["status"] not in ("queued", *IN_FLIGHT_VALUES) for c in calls)))
    dialled = Counter(r.to for r in sim.placed)
    out.checks.append(("every number dialled exactly once", len(dialled) == out.args.calls and set(dialled.values()) == {1}))
    # Slots are freed lazily (by the next reservation); as that reservation would see them:
    held = await Slots(store, grace_seconds=0).state(dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))
    out.checks.append(("no slot left taken", held.total == 0 and not any(held.slots.values())))
    out.checks.append(("every call ended at the provider", len(out.ended_at) == len(out.placed_at)))
    stats = out.stats
    out.checks.append(("nothing went back to the queue (so queued and due = not yet claimed)",
                       stats.deferred == 0 and stats.provider_errors == 0 and stats.placed == stats.claimed
                       and all(c["attempts"] == 1 for c in calls)))
    out.checks.append((f"queued and due agreed with the store at {out.cross_checks} cross-checks",
                       out.cross_checks > 0 and out.cross_check_failures == 0))


# ---------------------------------------------------------------------------------------- figures

@dataclass
class Figures:
    peak_slots: int
    peak_store: int
    peak_provider: int
    peak_sweep: int
    waiting_steps: int
    utilisation: float  # brief's definition: provider view, sampled after each waiting step
    utilisation_slots: float
    utilisation_time: float  # exact, time-weighted, provider side
    waiting_seconds: float
    makespan: float
    ideal: float
    occupied_sum: float
    occupied_max: float
    fifo: float  # zero-latency FIFO replay
    placed: int
    ops: int
    gaps: dict[str, float]


def sweep_peak(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(e, -1) for _, e in intervals] + [(p, 1) for p, _ in intervals])  # ends first on ties
    peak = level = 0
    for _, delta in points:
        level += delta
        peak = max(peak, level)
    return peak


def active_integral(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(e, end) - max(p, start)) for p, e in intervals)


def fifo_replay(occupied: list[float], limit: int, cps: float) -> float:
    """Makespan of a dispatcher with no latency: each call placed the instant a slot and the rate allow."""
    free = [0.0] * limit
    last = -1.0 / cps
    end = 0.0
    for busy in occupied:
        at = max(heapq.heappop(free), last + 1.0 / cps)
        last = at
        heapq.heappush(free, at + busy)
        end = max(end, at + busy)
    return end


def gap_analysis(out: Run, limit: int, waiting_until: float) -> dict[str, float]:
    """Empty slot-seconds while calls waited, by cause. A freed slot (a call's end at the provider) is
    refilled by the next placement, first freed first refilled; the first `limit` slots are free at 0."""
    freed: list[tuple[float, float]] = [(0.0, 0.0)] * limit  # (ended at provider, end delivered)
    by_end = sorted((out.ended_at[s], out.delivered_at.get(s, out.ended_at[s])) for s in out.placement_order)
    ends = iter(by_end)
    pending_end = next(ends, None)
    detect = claim_to_place = ramp = 0.0
    refills = 0
    for sid in out.placement_order:
        at = out.placed_at[sid]
        while pending_end is not None and pending_end[1] <= at:
            freed.append(pending_end)
            pending_end = next(ends, None)
        ended, delivered = freed.pop(0)
        if at > waiting_until:
            continue
        if ended == 0.0 and delivered == 0.0:
            ramp += at
            continue
        refills += 1
        detect += delivered - ended
        claim_to_place += at - delivered
    return {"ramp": ramp, "detect": detect, "place": claim_to_place, "refills": refills}


def figures(out: Run) -> Figures:
    limit = out.args.limit
    samples = out.samples
    waiting = [s for s in samples if s.waiting]
    intervals = [(out.placed_at[s], out.ended_at[s]) for s in out.placement_order]
    # Waiting time: the step intervals [t, t + step) after which calls were still queued and due.
    waiting_seconds = len(waiting) * out.args.step
    weighted = 0.0
    for s in waiting:
        weighted += active_integral(intervals, s.at, s.at + out.args.step)
    occupied = [e - p for p, e in intervals]
    occupied_sum = sum(occupied)
    ideal = max(occupied_sum / limit, max(occupied))
    waiting_until = max((s.at for s in waiting), default=0.0) + out.args.step
    return Figures(
        peak_slots=max(s.slots for s in samples),
        peak_store=max(s.store for s in samples),
        peak_provider=max(s.provider for s in samples),
        peak_sweep=sweep_peak(intervals),
        waiting_steps=len(waiting),
        utilisation=sum(s.provider for s in waiting) / (limit * len(waiting)) if waiting else 0.0,
        utilisation_slots=sum(s.slots for s in waiting) / (limit * len(waiting)) if waiting else 0.0,
        utilisation_time=weighted / (limit * waiting_seconds) if waiting_seconds else 0.0,
        waiting_seconds=waiting_seconds,
        makespan=out.completed_at or 0.0,
        ideal=ideal,
        occupied_sum=occupied_sum,
        occupied_max=max(occupied),
        fifo=fifo_replay(occupied, limit, out.args.cps),
        placed=len(out.placement_order),
        ops=out.counter.total,
        gaps=gap_analysis(out, limit, waiting_until),
    )


# ----------------------------------------------------------------------------------------- report

def report(out: Run, f: Figures) -> None:
    a = out.args
    limit = a.limit
    print()
    print(f"dispatch bench: {a.calls:,} calls in one batch, limit {limit}, simulator on a virtual clock "
          f"(step {a.step:g} s), seed {a.seed}")
    print(f"  outcomes drawn: {', '.join(f'{k} {v:g}' for k, v in OUTCOMES.items())}; mean talk {a.mean_duration:g} s; "
          f"ringing timeout {RINGING_TIMEOUT} s; {a.cps:g} calls/s; account max {max(MAX_CONCURRENT, limit)}")
    print(f"  result: {', '.join(f'{k} {v}' for k, v in sorted(out.outcomes.items()))}; "
          f"{out.steps:,} steps = {out.steps * a.step:,.0f} virtual s in {out.real_seconds:.1f} s real; "
          f"{out.reaper_runs} reaper runs")
    print(f"  dispatcher: {out.stats.summary()}")
    failed = [name for name, ok in out.checks if not ok]
    print(f"  checks: {'all passed' if not failed else 'FAILED: ' + '; '.join(failed)} "
          f"({'; '.join(name for name, _ in out.checks)})")
    print()
    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    peak_ok = max(f.peak_slots, f.peak_store, f.peak_provider, f.peak_sweep) <= limit
    rows = [
        ("peak in flight (slots / store / provider / sweep)",
         f"{f.peak_slots} / {f.peak_store} / {f.peak_provider} / {f.peak_sweep}", f"<= {limit}", ok(peak_ok)),
        (f"utilisation while calls waited ({f.waiting_steps:,} steps)", f"{f.utilisation:.3f}",
         f">= {GOAL_UTILISATION}", ok(f.utilisation >= GOAL_UTILISATION)),
        ("  same, slot document's view", f"{f.utilisation_slots:.3f}", "", ""),
        ("  same, time-weighted at the provider", f"{f.utilisation_time:.3f}", "", ""),
        ("makespan / ideal", f"{f.makespan / f.ideal:.3f}", f"<= {GOAL_MAKESPAN}", ok(f.makespan / f.ideal <= GOAL_MAKESPAN)),
        ("  measured makespan", f"{f.makespan:,.1f} s", "", ""),
        (f"  ideal = max(sum occupied / {limit}, longest)",
         f"{f.ideal:,.1f} s", "", f"{f.occupied_sum:,.0f} s / {limit}; longest {f.occupied_max:,.0f} s"),
        ("  zero-latency FIFO on the same calls", f"{f.fifo:,.1f} s", "", f"{f.fifo / f.ideal:.3f} x ideal; "
                                                                          f"measured = {f.makespan / f.fifo:.3f} x this"),
        ("db operations per placed call", f"{f.ops / f.placed:.2f}", f"<= {GOAL_OPS:g}", ok(f.ops / f.placed <= GOAL_OPS)),
        ("  operations / calls placed", f"{f.ops:,} / {f.placed:,}", "", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"  {'figure':<{width}}  {'value':>22}  {'goal':>7}")
    for name, value, goal, note in rows:
        print(f"  {name:<{width}}  {value:>22}  {goal:>7}  {note}")
    print()
    _where_ops_go(out, f)
    _where_slots_idle(out, f)
    print()
    print(f"peak in flight = {max(f.peak_slots, f.peak_store, f.peak_provider, f.peak_sweep)} (goal <= {limit}); "
          f"utilisation = {f.utilisation:.3f} (goal >= {GOAL_UTILISATION}); "
          f"makespan/ideal = {f.makespan / f.ideal:.3f} (goal <= {GOAL_MAKESPAN}); "
          f"db ops per placed call = {f.ops / f.placed:.2f} (goal <= {GOAL_OPS:g})")


def _where_ops_go(out: Run, f: Figures) -> None:
    by_phase: Counter = Counter()
    for (phase, _), n in out.counter.counts.items():
        by_phase[phase] += n
    print(f"  where the {f.ops:,} operations went (per placed call):")
    for phase in ("events", "tick", "reaper"):
        ops = sorted(((what, n) for (p, what), n in out.counter.counts.items() if p == phase), key=lambda x: -x[1])
        detail = ", ".join(f"{what} {n / f.placed:.2f}" for what, n in ops)
        print(f"    {phase:<7} {by_phase[phase] / f.placed:5.2f}  ({detail})")
    kinds: dict[str, list[TickCost]] = defaultdict(list)
    for tick in out.ticks:
        kinds[tick.kind].append(tick)
    labels = {"idle": "idle (slots full)", "idle-tail": "idle (queue empty)", "claim+place": "claimed + placed",
              "claim": "claimed only", "place": "placed only", "complete": "completed batch"}
    print("    ticks by what they did: count, the tick's own operations (and those of the events its step applied)")
    for kind in ("idle", "idle-tail", "claim+place", "claim", "place", "complete"):
        ticks = kinds.get(kind)
        if ticks:
            n, ops, events = len(ticks), sum(t.ops for t in ticks), sum(t.event_ops for t in ticks)
            print(f"      {labels[kind]:<19} {n:>6,}  {ops:>7,} ops = {ops / n:4.2f} per tick, {ops / f.placed:5.2f} per "
                  f"placed call  (events {events / f.placed:.2f} per placed call)")


def _where_slots_idle(out: Run, f: Figures) -> None:
    g = f.gaps
    limit = out.args.limit
    empty = limit * f.waiting_seconds - f.utilisation_time * limit * f.waiting_seconds
    refills = int(g["refills"]) or 1
    print(f"  empty slot-seconds while calls waited: {empty:,.0f} of {limit * f.waiting_seconds:,.0f} "
          f"({empty / (limit * f.waiting_seconds):.2%})")
    print(f"    ramp-up (first {limit} placements, dial rate {out.args.cps:g}/s): {g['ramp']:,.0f} slot-s")
    print(f"    call ended at the provider -> event applied by the next pump: {g['detect']:,.0f} slot-s "
          f"({g['detect'] / refills:.3f} s per refill, {refills:,} refills)")
    print(f"    event applied -> replacement placed: {g['place']:,.0f} slot-s ({g['place'] / refills:.3f} s per refill)")


# ------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--limit", type=int, default=LIMIT)
    parser.add_argument("--step", type=float, default=STEP, help="virtual seconds between steps (poll interval)")
    parser.add_argument("--cps", type=float, default=CPS)
    parser.add_argument("--mean-duration", type=float, default=MEAN_DURATION)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--profile", action="store_true", help="also cProfile the run (CPU time, top functions)")
    args = parser.parse_args()
    # The in-memory store warns that data does not survive a restart; the engine logs every call.
    logging.getLogger("dialer.store").setLevel(logging.ERROR)
    logging.getLogger("workers").setLevel(logging.WARNING)
    logging.getLogger("dialer").setLevel(logging.WARNING)
    profiler = cProfile.Profile() if args.profile else None
    with contextlib.ExitStack() as stack:
        if profiler is not None:
            profiler.enable()
            stack.callback(profiler.disable)
        out = asyncio.run(run(args))
    report(out, figures(out))
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print("\ncProfile of the run, by own time:\n" + text.getvalue())
    if not all(ok for _, ok in out.checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
