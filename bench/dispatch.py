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

Each in two modes:

  embedded   the provider's events are applied in the dispatcher's process: Engine with the Simulator
             as provider (events_in_process defaults to True), so a call's end pokes the dispatcher.
  separate   a separate worker: the Engine is built with events_in_process=False and the simulator's
             sink applies the events through the CallEvents of a second Services over the same
             repositories (as the API process does with Twilio's callbacks); nothing pokes or wakes the
             dispatcher, which finds freed slots by looking again on its own.

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
                      CPU per placed call (steps + reaper) side by side, goal: within 1.5x of the 1-batch figure;
                      port calls per placed call, goal <= 4. The store view of the peaks is read every 20 steps.

The final table lists every figure, its goal and MET / MISSED. Correctness checks (limits never passed,
every number dialled once, every call final and every batch completed, no slot left taken, nothing went
back to the queue, "queued and due" confirmed against the store every 20 steps) make the run exit 1 if
they fail; a missed performance goal does not.

Options: --quick (smaller workloads, for a smoke run), --mongo-calls N, --seed N. One workload instead of
the table: --batches N [--calls-per-batch M --limit L --account A --cps C --mode embedded|separate
--backend sqlite|sqlite-memory|mongomock --dispatchers K] [--json] (K dispatchers racing on one store: the JSON
adds reservations, cas_retries_per_reservation, calls_per_second in virtual and real time; `port_calls` is the
port calls per placed call by repository method, `port_calls_by_phase` by ticks / reaper / events), e.g. `python -m bench.dispatch --batches 200
--calls-per-batch 100 --limit 10 --account 1000 --cps 50 --json`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import heapq
import inspect
import logging
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

from dialer.composition import Services, services_over
from dialer.core.batch_spec import parse_batch_spec
from dialer.core.clock import FixedClock
from dialer.core.records import PlannedCall
from dialer.core.statuses import IN_FLIGHT_VALUES, BatchStatus
from dialer.ports import Repositories
from dialer.settings import Settings
from workers.engine import Engine
from workers.slots import Slots
from workers.telephony.simulator import Simulator

SEED = 20261123
STEP = 0.5  # virtual seconds between steps: the production poll interval
CPS = 20.0
RINGING_TIMEOUT = 30
MEAN_DURATION = 90.0
OUTCOMES = {"answered": 0.55, "busy": 0.10, "no_answer": 0.25, "failed": 0.05, "machine": 0.05}
GOAL_UTILISATION = 0.97
GOAL_MAKESPAN = 1.02
GOAL_OPS = 4.0
GOAL_CPU_RATIO = 1.5
CHUNK = 1000
T0 = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.timezone.utc)  # Monday 10:00 in New York
ZONE = "America/New_York"
PROVIDER_FINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
CROSS_CHECK_EVERY = 20
MAX_VIRTUAL_SECONDS = 12 * 3600
CPU_QUEUES = (1_000, 10_000, 50_000)
CPU_PLACED = 500


@dataclass(frozen=True)
class Workload:
    name: str
    batches: int
    calls_per_batch: int
    limit: int
    account: int
    cps: float = CPS

    @property
    def calls(self) -> int:
        return self.batches * self.calls_per_batch

    @property
    def account_bound(self) -> bool:
        return self.batches * self.limit > self.account

    @property
    def bound(self) -> int:
        """The calls that may be in flight at once: the account's cap, or every batch at its limit."""
        return min(self.account, self.batches * self.limit)

    def describe(self) -> str:
        return (f"{self.batches} x {self.calls_per_batch:,} calls, limit {self.limit} each, account cap {self.account}, "
                f"{self.cps:g} calls/s")


# ------------------------------------------------------------------------------------ counting

class OpCounter:
    """Counts operations by (phase, what) while `active`; `phase` is set by the bench."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.phase = "tick"
        self.active = False

    def hit(self, what: str) -> None:
        if self.active:
            self.counts[(self.phase, what)] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def in_phases(self, *phases: str) -> int:
        return sum(n for (p, _), n in self.counts.items() if p in phases)

    def by_what(self) -> Counter:
        out: Counter = Counter()
        for (_, what), n in self.counts.items():
            out[what] += n
        return out


class SharedPhase(OpCounter):
    """A second counter that follows another's phase and activity (round trips beside port calls)."""

    def __init__(self, leader: OpCounter) -> None:
        super().__init__()
        self._leader = leader

    def hit(self, what: str) -> None:
        if self._leader.active:
            self.counts[(self._leader.phase, what)] += 1


class CountingRepo:
    """A repository proxy: every method call whose result is awaitable counts as one port call."""

    def __init__(self, inner: Any, name: str, counter: OpCounter) -> None:
        self._inner = inner
        self._name = name
        self._counter = counter

    def __getattr__(self, method: str) -> Any:
        attr = getattr(self._inner, method)
        if method.startswith("_") or not callable(attr):
            return attr
        what = f"{self._name}.{method}"
        counter = self._counter

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result):
                counter.hit(what)
            return result

        return call


def counted(repos: Repositories, counter: OpCounter) -> Repositories:
    return repos.seen_through(lambda name, repo: CountingRepo(repo, name, counter))


class CountingCursor:
    """A find() cursor: chained modifiers pass through; one round trip when it is first read."""

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
        if name in ("sort", "limit", "skip", "batch_size", "hint", "max_time_ms", "collation", "allow_disk_use"):
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
    """A collection proxy: coroutine methods and aggregate are one round trip each; find via its cursor."""

    def __init__(self, inner: Any, name: str, counter: OpCounter) -> None:
        self._inner = inner
        self._name = name
        self._counter = counter

    def find(self, *args: Any, **kwargs: Any) -> CountingCursor:
        return CountingCursor(self._inner.find(*args, **kwargs), self._counter, f"{self._name}.find")

    def __getattr__(self, method: str) -> Any:
        attr = getattr(self._inner, method)
        if method.startswith("_") or not callable(attr):
            return attr
        what = f"{self._name}.{method}"

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result) or method == "aggregate":
                self._counter.hit(what)
            return result

        return call


def count_round_trips(repos: Repositories, counter: OpCounter) -> None:
    """Replace the MongoDB repositories' collections by counting proxies (in place)."""
    for repo, attr, name in ((repos.calls, "c", "calls"), (repos.batches, "c", "batches"),
                             (repos.ledger, "c", "dispatch"), (repos.idempotency, "c", "idempotency"),
                             (repos.tenancy, "workspaces", "workspaces"), (repos.tenancy, "keys", "api_keys"),
                             (repos.tenancy, "agents", "agents")):
        inner = getattr(repo, attr)
        setattr(repo, attr, CountingCollection(inner, name, counter))


class Totals:
    """The dispatchers' Stats added up (K dispatchers racing on one store)."""

    def __init__(self, stats: list[Any]) -> None:
        self._stats = stats

    def __getattr__(self, name: str) -> int:
        return sum(getattr(s, name, 0) for s in self._stats)

    def summary(self) -> str:
        return " | ".join(s.summary() for s in self._stats)


# --------------------------------------------------------------------------- recording simulator

class RecordingSimulator(Simulator):
    """The simulator, also noting when each call ends at the provider (its final event's due time)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ends: dict[str, dt.datetime] = {}
        self.order: list[tuple[str, str]] = []  # (provider call id, batch id), in placement order

    async def place_call(self, request: Any) -> Any:
        placed = await super().place_call(request)
        self.order.append((placed.provider_call_id, str(request.batch_id)))
        return placed

    def _schedule(self, at: dt.datetime, call: Any, status: str, **kw: Any) -> None:
        if status in PROVIDER_FINAL:
            self.ends[call.sid] = at
        super()._schedule(at, call, status, **kw)


# ------------------------------------------------------------------------------------------ setup

def settings_for(wl: Workload) -> Settings:
    return Settings.load(env={}, embedded_dispatcher="false", provider="simulator", sim_time_scale=1.0,
                         calls_per_second=wl.cps, max_concurrent_calls=wl.account, poll_interval_seconds=STEP)


def planned(e164: str, index: int) -> PlannedCall:
    return PlannedCall(index=index, e164=e164, raw_phone=e164, extension=None, variables={}, zones=(ZONE,),
                       zone_source="number", earliest=T0)


def number(n: int) -> str:
    return f"+1212{5550000 + n}"  # +1212555xxxx, +1212556xxxx, ...: distinct across every batch


async def setup(services: Services, wl: Workload) -> list[dict]:
    """Workspace, agent, the batches and their calls (uncounted); returns the batches, started."""
    workspace, _ = await services.tenancy.create_workspace("dispatch bench")
    agent = await services.tenancy.create_agent(workspace["_id"], {
        "name": "bench agent", "requiredVariables": [], "callingNumbers": ["+14155550100"], "timezones": [ZONE]})
    batches = []
    n = 0
    for b in range(wl.batches):
        spec = parse_batch_spec({"name": f"dispatch bench {b}", "agentId": str(agent["_id"]),
                                 "concurrencyLimit": wl.limit, "ringingTimeoutSeconds": RINGING_TIMEOUT,
                                 "retry": {"maxAttempts": 1, "on": []}}, services.phones)
        batch = await services.batches.create(workspace["_id"], agent, spec)
        for start in range(0, wl.calls_per_batch, CHUNK):
            chunk = [planned(number(n + i), i) for i in range(start, min(start + CHUNK, wl.calls_per_batch))]
            result = await services.repos.calls.enqueue(batch, chunk, services.clock.now())
            assert result.error is None and result.inserted == len(chunk), result
        n += wl.calls_per_batch
        assert await services.batches.start_after_insert(batch) == BatchStatus.RUNNING.value
        batches.append(batch)
    return batches


def event_applier(services: Services):
    """The API process's way: the event applied through that process's CallEvents, nothing else."""
    async def apply(event: Any) -> None:
        await services.events.apply(event.call_id, event.provider_call_id, event.status,
                                    batch_id=event.extra.get("batchId"), attempt=event.extra.get("attempt"),
                                    answered_by=event.answered_by, duration=event.duration, error=event.error)
    return apply


# -------------------------------------------------------------------------------------------- run

@dataclass
class Run:
    wl: Workload
    mode: str
    backend: str
    counter: OpCounter = field(default_factory=OpCounter)
    round_trips: OpCounter | None = None
    steps: int = 0
    reaper_runs: int = 0
    real_seconds: float = 0.0
    cpu_seconds: float = 0.0
    cpu_reaper: float = 0.0  # of which the reaper's
    completed_at: float | None = None
    placed_at: dict[str, float] = field(default_factory=dict)
    batch_of: dict[str, str] = field(default_factory=dict)
    ended_at: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    peak_batch: dict[str, int] = field(default_factory=lambda: Counter())  # view -> highest of any batch
    peak_account: dict[str, int] = field(default_factory=lambda: Counter())
    waiting_steps: int = 0
    waiting_in_flight: int = 0
    waiting_bound: int = 0  # the bound of each waiting step added up (see figures)
    bound_now: int = 0  # the batches' limits, each up to the calls it has left (not ended)
    waiting_seconds: list[float] = field(default_factory=list)  # starts of the waiting step intervals
    cross_checks: int = 0
    cross_from: int = 0
    cross_check_failures: int = 0
    checks: list[tuple[str, bool]] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    stats_summary: str = ""
    reserved: int = 0
    lost: int = 0

    @property
    def placed(self) -> int:
        return len(self.order)

    @property
    def label(self) -> str:
        return f"{self.wl.name}/{self.mode}" + ("" if self.backend == "sqlite" else f"/{self.backend}")


def _seconds(at: dt.datetime) -> float:
    return (at - T0).total_seconds()


async def open_backend(backend: str) -> Repositories:
    """The repositories of a bench run: "sqlite" (a file in a fresh temporary folder, removed when the
    process ends) or "sqlite-memory" (SQLite's :memory:)."""
    import atexit
    import shutil
    import tempfile

    from dialer.store.sqlite import open_sqlite

    if backend == "sqlite-memory":
        return await open_sqlite(":memory:")
    folder = tempfile.mkdtemp(prefix="dialer-bench-")
    atexit.register(shutil.rmtree, folder, True)
    return await open_sqlite(f"{folder}/dialer.db")


async def run_workload(wl: Workload, mode: str, backend: str = "sqlite", seed: int = SEED,
                       store_view_every: int = 1, dispatchers: int = 1, profile: Any = None) -> Run:
    clock = FixedClock(T0)
    settings = settings_for(wl)
    out = Run(wl, mode, backend)
    counter = out.counter
    if backend.startswith("sqlite"):
        raw = await open_backend(backend)
    else:
        from dialer.store.mongo.testing import mongomock_repositories

        raw = await mongomock_repositories()
        out.round_trips = SharedPhase(counter)
        count_round_trips(raw, out.round_trips)
    batches = await setup(services_over(raw, settings, clock), wl)
    batch_ids = [str(b["_id"]) for b in batches]
    repos = counted(raw, counter)
    services = services_over(repos, settings, clock)
    sim = RecordingSimulator(clock, OUTCOMES, mean_duration=MEAN_DURATION, time_scale=1.0, seed=seed)
    in_process = mode == "embedded"
    # K dispatchers on one store (K processes: each its own Engine); the provider's events reach the first,
    # and every other one is poked as its own process would be by the callbacks it receives.
    engines = [Engine(repos, clock, settings, sim, services.events, name=f"bench-{k}", events_in_process=in_process)
               for k in range(dispatchers)]
    engine = engines[0]
    if in_process:
        first = engine.deliver

        async def deliver(event: Any) -> None:
            await first(event)
            if event.status in PROVIDER_FINAL:
                for other in engines[1:]:
                    other.dispatcher.poke()
    else:
        deliver = event_applier(services_over(repos, settings, clock))  # the API process's services
    provider_in_flight: Counter = Counter()  # batch -> placed, final event not yet applied
    ended: Counter = Counter()  # batch -> calls ended at the provider
    out.bound_now = wl.batches * min(wl.limit, wl.calls_per_batch)

    async def sink(event: Any) -> None:
        counter.phase = "events"
        try:
            await deliver(event)
        finally:
            counter.phase = "tick"
        if event.status in PROVIDER_FINAL:
            batch_id = str(event.extra.get("batchId"))
            provider_in_flight[batch_id] -= 1
            ended[batch_id] += 1
            if wl.calls_per_batch - ended[batch_id] < wl.limit:  # its calls left no longer fill its limit
                out.bound_now -= 1

    sim.sink = sink
    stats = Totals([e.dispatcher.stats for e in engines])
    reaper_every = max(1.0, settings.lease_seconds / 2)  # as Engine.start schedules it
    next_reaper = reaper_every
    placed_before = 0
    started = time.perf_counter()
    counter.active = True
    try:
        while True:
            now = _seconds(clock.now())
            if now > MAX_VIRTUAL_SECONDS:
                raise RuntimeError(f"{out.label}: not completed within {MAX_VIRTUAL_SECONDS} virtual seconds")
            cpu = time.process_time()
            if profile is not None:
                profile.enable()
            if dispatchers == 1:
                await engine.step()
            else:  # racing: their store operations interleave
                await asyncio.gather(*(e.step() for e in engines))
                engines.append(engines.pop(0))  # take turns at going first
            if profile is not None:
                profile.disable()
            out.cpu_seconds += time.process_time() - cpu
            out.steps += 1
            for sid, batch_id in sim.order[placed_before:]:
                out.placed_at[sid] = now
                out.batch_of[sid] = batch_id
                out.order.append(sid)
                provider_in_flight[batch_id] += 1
            placed_before = len(sim.order)
            counter.active = False  # the bench's own look at the state is not the dispatcher's cost
            await _observe(out, raw, provider_in_flight, batch_ids, stats, clock, store_view_every)
            if stats.completed_batches >= wl.batches:
                out.completed_at = now
                break
            counter.active = True
            clock.advance(STEP)
            if _seconds(clock.now()) >= next_reaper:
                next_reaper += reaper_every
                counter.phase = "reaper"
                cpu = time.process_time()
                for e in engines:
                    await e.reaper.run()
                out.cpu_seconds += time.process_time() - cpu
                out.cpu_reaper += time.process_time() - cpu
                counter.phase = "tick"
                out.reaper_runs += 1
    finally:
        counter.active = False
    out.real_seconds = time.perf_counter() - started
    out.ended_at = {sid: _seconds(at) for sid, at in sim.ends.items()}
    out.stats_summary = stats.summary()
    out.reserved, out.lost = stats.reserved, stats.lost_races
    await _verify(out, raw, sim, batches, stats)
    await raw.close()
    return out


async def _observe(out: Run, raw: Repositories, provider: Counter, batch_ids: list[str], stats: Any,
                   clock: FixedClock, store_view_every: int) -> None:
    wl = out.wl
    # The slots in use: calls in flight, plus the reservations whose claims have not landed.
    ledger = await Slots(raw.ledger, grace_seconds=3600).state(clock.now())
    per_batch = ledger.per_batch()
    views = {"ledger": ([per_batch.get(b, 0) for b in batch_ids], ledger.total),
             "provider": ([provider[b] for b in batch_ids], sum(provider.values()))}
    if out.steps % store_view_every == 0:
        kept = await raw.calls.tallies_many([ObjectId(b) for b in batch_ids])  # one read, whatever the batches
        per = [sum(t.calls for t in kept.get(ObjectId(b), []) if t.status in IN_FLIGHT_VALUES) for b in batch_ids]
        views["store"] = (per, sum(per))
    for view, (per, total) in views.items():
        out.peak_batch[view] = max(out.peak_batch[view], max(per))
        out.peak_account[view] = max(out.peak_account[view], total)
    # Queued and due = not yet claimed: every call is due from the start and none goes back to the
    # queue (checked at the end); confirmed against the store every CROSS_CHECK_EVERY steps.
    waiting = stats.claimed < wl.calls
    if out.steps % CROSS_CHECK_EVERY == 0:
        due = False
        for i in range(len(batch_ids)):  # from the batch found with due calls last time
            b = batch_ids[(out.cross_from + i) % len(batch_ids)]
            if await raw.calls.due(ObjectId(b), clock.now(), 1):
                due = True
                out.cross_from = (out.cross_from + i) % len(batch_ids)
                break
        out.cross_checks += 1
        out.cross_check_failures += due != waiting
    if waiting:
        out.waiting_steps += 1
        out.waiting_in_flight += views["provider"][1]
        out.waiting_bound += min(wl.account, out.bound_now)
        out.waiting_seconds.append(_seconds(clock.now()))


async def _verify(out: Run, raw: Repositories, sim: RecordingSimulator, batches: list[dict], stats: Any) -> None:
    wl = out.wl
    completed = True
    finals = 0
    for batch in batches:
        doc = await raw.batches.get(batch["_id"])
        completed &= doc is not None and doc["status"] == BatchStatus.COMPLETED.value
        for t in await raw.calls.tallies(batch["_id"]):
            if t.status not in ("queued", "held", *IN_FLIGHT_VALUES):
                finals += t.calls
            out.outcomes[t.outcome or t.status] += t.calls
            if t.attempts != t.calls:
                out.checks.append((f"calls of batch {batch['_id']} attempted once each", False))
    out.checks.append((f"all {len(batches)} batches completed", completed))
    out.checks.append((f"all {wl.calls:,} calls final", finals == wl.calls))
    dialled = Counter(r.to for r in sim.placed)
    out.checks.append(("every number dialled exactly once", len(dialled) == wl.calls and set(dialled.values()) == {1}))
    held = await Slots(raw.ledger, grace_seconds=0).state(dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))
    out.checks.append(("no slot left taken", held.total == 0))
    out.checks.append(("every call ended at the provider", len(out.ended_at) == out.placed))
    out.checks.append(("nothing went back to the queue",
                       getattr(stats, "deferred", 0) == 0 and getattr(stats, "provider_errors", 0) == 0
                       and stats.placed == stats.claimed == wl.calls))
    out.checks.append((f"queued and due agreed with the store ({out.cross_checks} cross-checks)",
                       out.cross_checks > 0 and out.cross_check_failures == 0))
    peaks = {**{f"batch {v}": (n, wl.limit) for v, n in out.peak_batch.items()},
             **{f"account {v}": (n, wl.account) for v, n in out.peak_account.items()}}
    f_batch, f_account = sweep_peaks(out)
    peaks["batch sweep"] = (f_batch, wl.limit)
    peaks["account sweep"] = (f_account, wl.account)
    over = [f"{k} {n} > {lim}" for k, (n, lim) in peaks.items() if n > lim]
    out.checks.append(("limits never passed" + (f" ({'; '.join(over)})" if over else ""), not over))


# ---------------------------------------------------------------------------------------- figures

def sweep_peak(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(e, -1) for _, e in intervals] + [(p, 1) for p, _ in intervals])  # ends first on ties
    peak = level = 0
    for _, delta in points:
        level += delta
        peak = max(peak, level)
    return peak


def sweep_peaks(out: Run) -> tuple[int, int]:
    by_batch: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for sid in out.order:
        by_batch[out.batch_of[sid]].append((out.placed_at[sid], out.ended_at.get(sid, float("inf"))))
    every = [iv for ivs in by_batch.values() for iv in ivs]
    return max((sweep_peak(ivs) for ivs in by_batch.values()), default=0), sweep_peak(every)


def fifo_replay(out: Run) -> float:
    """Makespan of a dispatcher with no latency: each call, in the measured placement order, placed the
    instant a slot of its batch, a slot of the account and the dial rate allow; it occupies its slots
    for its measured provider-side time."""
    wl = out.wl
    account = [0.0] * wl.account
    per_batch: dict[str, list[float]] = defaultdict(lambda: [0.0] * wl.limit)
    gap = 1.0 / wl.cps
    last = -gap
    end = 0.0
    for sid in out.order:
        busy = out.ended_at[sid] - out.placed_at[sid]
        mine = per_batch[out.batch_of[sid]]
        at = max(heapq.heappop(account), heapq.heappop(mine), last + gap)
        last = at
        heapq.heappush(account, at + busy)
        heapq.heappush(mine, at + busy)
        end = max(end, at + busy)
    return end


@dataclass
class Figures:
    makespan: float
    fifo: float
    utilisation: float
    utilisation_time: float
    ops: int
    dispatcher_ops: int
    event_ops: int
    placed: int

    @property
    def ratio(self) -> float:
        return self.makespan / self.fifo if self.fifo else float("inf")

    @property
    def ops_per(self) -> float:
        return self.ops / self.placed if self.placed else float("inf")


def figures(out: Run) -> Figures:
    wl = out.wl
    intervals = [(out.placed_at[s], out.ended_at[s]) for s in out.order]
    # Calls are waiting from the first step until the last call is claimed (claims only grow), so the
    # waiting steps are the contiguous span [0, W): the exact integral of provider-side calls over it.
    starts = out.waiting_seconds
    assert starts == [i * STEP for i in range(len(starts))], "waiting steps not contiguous"
    span = len(starts) * STEP
    weighted = sum(max(0.0, min(e, span) - p) for p, e in intervals)
    waited = len(out.waiting_seconds) * STEP
    return Figures(
        makespan=out.completed_at or 0.0,
        fifo=fifo_replay(out),
        # What could be in flight at each step: the account's cap, or the batches' limits where a batch has
        # fewer calls left than its limit (at the end, a batch of limit 1 with calls left holds one slot).
        utilisation=out.waiting_in_flight / out.waiting_bound if out.waiting_bound else 0.0,
        utilisation_time=weighted / (wl.bound * waited) if waited else 0.0,
        ops=out.counter.total,
        dispatcher_ops=out.counter.in_phases("tick", "reaper"),
        event_ops=out.counter.in_phases("events"),
        placed=out.placed,
    )


def report_run(out: Run, f: Figures) -> None:
    wl = out.wl
    per = lambda n: n / f.placed if f.placed else float("inf")  # noqa: E731
    failed = [name for name, ok in out.checks if not ok]
    print(f"\n== {out.label}: {wl.describe()}, {out.mode} events, {out.backend} store")
    print(f"   {out.steps:,} steps = {out.steps * STEP:,.0f} virtual s in {out.real_seconds:.1f} s real "
          f"({out.cpu_seconds:.1f} s CPU in steps + reaper); {out.reaper_runs} reaper runs")
    print(f"   outcomes: {', '.join(f'{k} {v}' for k, v in sorted(out.outcomes.items()))}")
    print(f"   dispatcher: {out.stats_summary}")
    print(f"   checks: {'all passed' if not failed else 'FAILED: ' + '; '.join(failed)}")
    pb, pa = out.peak_batch, out.peak_account
    sb, sa = sweep_peaks(out)
    views = [v for v in ("ledger", "store", "provider") if v in pb]
    print(f"   peak in flight ({' / '.join(views)} / sweep): batch {' / '.join(str(pb[v]) for v in views)} / {sb} "
          f"(limit {wl.limit}); account {' / '.join(str(pa[v]) for v in views)} / {sa} (cap {wl.account})")
    print(f"   makespan {f.makespan:,.1f} s; zero-latency FIFO {f.fifo:,.1f} s; ratio {f.ratio:.3f}")
    print(f"   utilisation (bound {wl.bound}, {out.waiting_steps:,} steps with calls waiting): sampled "
          f"{f.utilisation:.3f}, time-weighted {f.utilisation_time:.3f}")
    print(f"   port calls per placed call: {f.ops_per:.2f} = dispatcher {per(f.dispatcher_ops):.2f} "
          f"(ticks {per(out.counter.in_phases('tick')):.2f}, reaper {per(out.counter.in_phases('reaper')):.2f}) "
          f"+ events {per(f.event_ops):.2f}  ({f.ops:,} / {f.placed:,})")
    for phase in ("tick", "reaper", "events"):
        items = sorted(((w, n) for (p, w), n in out.counter.counts.items() if p == phase), key=lambda x: -x[1])
        if items:
            print(f"     {phase:<7} " + ", ".join(f"{w} {per(n):.3f}" for w, n in items))
    if out.round_trips is not None:
        rt = out.round_trips
        print(f"   MongoDB round trips per placed call: {per(rt.total):.2f} = dispatcher "
              f"{per(rt.in_phases('tick', 'reaper')):.2f} + events {per(rt.in_phases('events')):.2f}  ({rt.total:,})")
        for phase in ("tick", "reaper", "events"):
            items = sorted(((w, n) for (p, w), n in rt.counts.items() if p == phase), key=lambda x: -x[1])
            if items:
                print(f"     {phase:<7} " + ", ".join(f"{w} {per(n):.3f}" for w, n in items))


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
        if _seconds(clock.now()) >= next_reaper:
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
        for mode in ("embedded", "separate"):
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
    # from one batch to 1,000 and 10,000 running batches; CPU per placed call side by side in this run.
    print("\n== Running batches: CPU per placed call at the same calls/s (embedded, SQLite file)")
    scaled: list[tuple[Run, Figures]] = []
    for n, per_batch, limit in ((1, 10_000 // scale, 1000 // scale), (1000 // scale, 10, 1), (10_000 // scale, 1, 1)):
        wl = Workload(f"{n:,} batch" + "es" * (n > 1), n, per_batch, limit, 1000 // scale, 100.0)
        out = await run_workload(wl, "embedded", seed=args.seed, store_view_every=CROSS_CHECK_EVERY)
        f = figures(out)
        scaled.append((out, f))
        print(f"   {wl.describe()}: {out.cpu_seconds * 1e3 / out.placed:.3f} ms CPU per placed call, "
              f"{f.ops_per:.2f} port calls per placed call, {out.placed / f.makespan:.1f} calls/s, "
              f"checks {'passed' if all(ok for _, ok in out.checks) else 'FAILED'}")
    ratio = cpu[queues[-1]] / cpu[queues[0]]
    for queued in queues:
        rows.append((f"CPU per placed call, {queued:,} queued", f"{cpu[queued] * 1e3:.3f} ms", "", ""))
    goal_row(rows, f"CPU per placed call, {queues[-1]:,} / {queues[0]:,} queued", f"{ratio:.2f}x",
             f"<= {GOAL_CPU_RATIO}x", ratio <= GOAL_CPU_RATIO)
    base = scaled[0][0].cpu_seconds / scaled[0][0].placed
    for out, f in scaled:
        per = out.cpu_seconds / out.placed
        rows.append((f"{out.wl.name}: CPU per placed call", f"{per * 1e3:.3f} ms", "", ""))
        goal_row(rows, f"{out.wl.name}: port calls / placed call", f"{f.ops_per:.2f}", f"<= {GOAL_OPS:g}",
                 f.ops_per <= GOAL_OPS)
    for out, _ in scaled[1:]:
        ratio_n = (out.cpu_seconds / out.placed) / base
        goal_row(rows, f"CPU per placed call, {out.wl.name} / 1 batch", f"{ratio_n:.2f}x", f"<= {GOAL_CPU_RATIO}x",
                 ratio_n <= GOAL_CPU_RATIO)
    runs += scaled
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
    one.add_argument("--mode", choices=("embedded", "separate"), default="embedded")
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
