"""Running one dispatch workload on a virtual clock, observing it after every step and verifying it.

`run_workload()` sets a workload up in a fresh store (`open_backend()`), drives one or more Engines
(the simulator as provider, its events applied in the dispatcher's process or by another process's
CallEvents) step by step on a FixedClock, with the reaper at its production cadence, counting the port
calls (bench/port_counting.py), until every batch is completed. It records in a Run: when each call
was placed and ended at the provider, the peak in flight per batch and for the account from the slot
ledger, the store and the provider (`_observe`, after each step; with the exact sweep over the
provider-side intervals, `sweep_peaks`), the steps with calls waiting, CPU time, and the correctness
checks (`_verify`). The figures computed from a Run are in bench/dispatch_figures.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bson import ObjectId

from bench.dispatch_workload import (CROSS_CHECK_EVERY, MEAN_DURATION, OUTCOMES, SEED, STEP, T0, Workload,
                                     settings_for, setup, virtual_seconds)
from bench.port_counting import OpCounter, SharedPhase, count_round_trips, counted
from dialer.composition import Services, services_over
from dialer.wakeups import WOKEN_RECHECK_SECONDS, WakeListener, WakeSender
from dialer.core.clock import FixedClock
from dialer.core.statuses import IN_FLIGHT_VALUES, BatchStatus
from dialer.ports import Repositories
from workers.engine import Engine
from workers.slots import Slots
from workers.telephony.simulator import Simulator

PROVIDER_FINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
MAX_VIRTUAL_SECONDS = 12 * 3600


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
    # K dispatchers on one store (K processes: each its own Engine); the provider's events reach the first, and
    # the events service they share tells every one that a slot is free, as its own process's callbacks would.
    engines = [Engine(repos, clock, settings, sim, services.events, name=f"bench-{k}", events_in_process=in_process)
               for k in range(dispatchers)]
    engine = engines[0]
    wake = None
    if in_process:
        deliver = engine.deliver
    else:
        api = services_over(repos, settings, clock)  # the API process's services
        deliver = event_applier(api)
        if mode == "woken":  # the API's process tells the worker's over a socket, as on one machine
            wake = tempfile.TemporaryDirectory(prefix="wake-")
            listener = WakeListener(Path(wake.name), engine.ended, engine.dispatcher.wake)
            if not await listener.start():
                raise RuntimeError("the wake-up socket could not be opened")
            engine.dispatcher.recheck_every(WOKEN_RECHECK_SECONDS)
            api.events.on_ended.append(WakeSender(Path(wake.name), own=None))
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
            now = virtual_seconds(clock.now())
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
            if virtual_seconds(clock.now()) >= next_reaper:
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
        if wake is not None:
            listener.close()
            wake.cleanup()
    out.real_seconds = time.perf_counter() - started
    out.ended_at = {sid: virtual_seconds(at) for sid, at in sim.ends.items()}
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
        out.waiting_seconds.append(virtual_seconds(clock.now()))


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



# ------------------------------------------------------------------------------------ peak sweep

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
