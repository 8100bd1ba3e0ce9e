"""The driver of one seeded run: the real engine on a virtual clock, faults, and the checks after every step.

A step: the partners and operators act (workload.py: records, enrollments, starts, stops, patches, cancels,
retries, verdicts; stop and cancel run as requests in progress, answered once they have settled); dead
dispatcher processes come back when their restart time has come; the provider's due events go out as
status callbacks (faults.Callbacks); every live dispatcher ticks (claim and place), in turn, each able to
die at any operation; the reapers run at their production cadence (skipped while nothing is in flight
anywhere: they run once where the clock lands); the clock moves by the poll interval,
or straight to the next thing to happen when nothing is in flight. Every placement is checked as it
happens (checks.py); the counters against a recount (the batches whose counters moved, and in turn the
others) and the calls against what was accepted every `recount_every` steps, and every batch at the end
(recount.py).
The run ends when every record was sent and every call is final.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from bson import ObjectId

from dialer.composition import Services, services_over
from dialer.core.clock import FixedClock, as_utc
from dialer.core.statuses import IN_FLIGHT_VALUES, CallStatus
from dialer.services.tenancy import Principal
from dialer.settings import Settings
from workers.engine import Engine
from workers.telephony.simulator import Simulator

from sim import workload as wl
from sim.checks import Checker
from sim.faults import Callbacks, Died, FaultyProvider, Guard, GuardedProvider, guarded, inline_store
from sim.operators import Operators
from sim.recount import Recount

OUTCOMES = {"answered": 0.5, "machine": 0.05, "busy": 0.15, "no_answer": 0.2, "failed": 0.1}
REAPER_EVERY = dt.timedelta(seconds=60)  # lease_seconds / 2, as Engine.start schedules it
MAX_JUMP = dt.timedelta(seconds=300)
HELD = CallStatus.HELD.value
DEATH_EVERY = 1800.0  # virtual seconds: how often each dispatcher process dies, on average


@dataclass
class Config:
    seed: int
    calls: int
    dispatchers: int | None = None  # 2-5 drawn from the seed when None
    backend: str = "sqlite"
    faults: bool = True
    cps: float = 200.0
    account: int = 1000
    limit_scale: int = 10  # batch limits are 1-50 times this
    batch_calls: tuple[int, int] = (1000, 6000)
    open_batches: int = 20  # batches taking records at once
    backlog: int = 30_000  # calls waiting or in flight above which no records are sent
    chunk: int = 400  # records per addCallsToBatch (inline: below the ingestion's thread threshold)
    wide_windows: float = 0.35  # share of batches with the default 08:00-21:00 window (the rest: narrow, near midnight)
    areas: tuple = wl.AREAS  # where the callees are (wl.US_AREAS: North America only, a denser run)
    mean_duration: float = 8.0  # talk time of answered calls, seconds (short calls: more calls per step)
    step_seconds: float = 0.5
    recount_every: int = 400
    max_days: float = 30.0
    engine_hook: Callable[[Engine], None] | None = None  # the tests' seam to break an engine piece
    progress: Callable[[str], None] | None = None

    def replay(self) -> str:
        return (f"python -m sim --seed {self.seed} --calls {self.calls} --dispatchers {self.dispatchers} "
                f"--backend {self.backend}" + ("" if self.faults else " --no-faults"))


@dataclass
class Result:
    config: Config
    steps: int = 0
    calls: int = 0  # call records created (and, at a clean end, all final)
    placed: int = 0
    violations: list[tuple[int, str]] = field(default_factory=list)
    wall_seconds: float = 0.0
    virtual_seconds: float = 0.0
    started_at: dt.datetime | None = None
    counts: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.violations


class CheckedSimulator(Simulator):
    """The simulated provider, telling the checks of every call it creates; its calls indexed by (to, from)
    so that the reapers' searches cost what they find, not every call of the run (a million)."""

    checker: Checker

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.by_route: dict[tuple[str, str], list] = {}

    async def place_call(self, request):
        placed = await super().place_call(request)
        self.by_route.setdefault((request.to, request.from_), []).append(self.calls[placed.provider_call_id])
        self.checker.on_place(request, placed.provider_call_id, self.clock.now())
        return placed

    async def find_calls(self, to, from_, since):
        """As Simulator.find_calls: the calls created to `to` from `from_` since `since`, newest first."""
        return [call.sid for call in reversed(self.by_route.get((to, from_), ())) if call.created >= since]


class Process:
    """One dispatcher process: its guard, its view of the store and provider, its engine."""

    def __init__(self, world: "World", name: str) -> None:
        self.name = name
        self.guard = Guard(random.Random(world.rng.random()), world.store_fault_rate)
        repos = guarded(world.raw, self.guard)
        services = services_over(repos, world.settings, world.clock)
        provider = GuardedProvider(world.provider, self.guard)
        self.engine = Engine(repos, world.clock, world.settings, provider, services.events, name=name,
                             events_in_process=False, chains=services.chains, enrollment=services.enrollment)
        services.chains.on_activated = world.wake
        if world.config.engine_hook is not None:
            world.config.engine_hook(self.engine)


class World:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        if config.dispatchers is None:
            config.dispatchers = self.rng.randrange(2, 6)
        self.act_rng = random.Random(self.rng.random())
        self.fault_rng = random.Random(self.rng.random())
        self.faults = config.faults
        self.store_fault_rate = 0.001 if config.faults else 0.0
        self.clock = FixedClock(wl.start_instant(self.rng))
        self.settings = Settings.load(env={}, embedded_dispatcher="false", provider="simulator", sim_time_scale=1.0,
                                      calls_per_second=config.cps, max_concurrent_calls=config.account,
                                      poll_interval_seconds=config.step_seconds, data_dir=":memory:")
        self.checker = Checker(config.account, config.cps, config.step_seconds)
        self.result = Result(config)
        self.step = 0
        self.processes: list[Process] = []
        self.restarts: list[tuple[dt.datetime, str]] = []
        self.incarnations = Counter()
        self.tasks: set[asyncio.Task] = set()
        self.busy: set[ObjectId] = set()  # batches with a stop or cancel in progress
        self.batches: dict[ObjectId, dict] = {}  # our own record of each batch: planned size, records sent
        self.accepted = 0  # new call records the answers reported (ingestion inserted + enrollment accepted)
        self.waiting = 0  # calls waiting or in flight at the last recount
        self.next_reaper = self.clock.now() + REAPER_EVERY
        self.ending = False
        self.last_tick: dt.datetime | None = None
        self.next_due: dt.datetime | None = None  # the earliest queued call's time, as last looked up
        self.recount = Recount(self)
        self.started = time.perf_counter()

    # ---- setting up ---------------------------------------------------------------------------
    async def open(self) -> None:
        if self.config.backend == "sqlite":
            from dialer.store.sqlite import open_sqlite

            self.raw = await open_sqlite(":memory:")
            inline_store(self.raw)
        elif self.config.backend == "mongomock":
            from dialer.store.mongo.testing import mongomock_repositories

            self.raw = await mongomock_repositories()
        else:
            raise ValueError(f"unknown backend {self.config.backend!r}: sqlite or mongomock")
        self.sim = CheckedSimulator(self.clock, OUTCOMES, mean_duration=self.config.mean_duration,
                                    seed=self.rng.randrange(2 ** 32))
        self.sim.checker = self.checker
        self.sim.sink = self._provider_event
        self.provider = FaultyProvider(self.sim, random.Random(self.rng.random()), 0.03 if self.faults else 0.0)
        rates = (0.01, 0.02, 0.03) if self.faults else (0.0, 0.0, 0.0)
        # The API process: status callbacks and operators' requests (its store fails now and then too) ...
        self.api_guard = Guard(random.Random(self.rng.random()), self.store_fault_rate / 2)
        self.api = services_over(guarded(self.raw, self.api_guard), self.settings, self.clock)
        self.api.lifecycle.hang_up = self.sim.hangup
        # A stop answers once its batch has no claim left unplaced, however long that takes on the virtual
        # clock (a dead dispatcher's claims wait for the reaper); polled at every turn of the loop.
        self.api.lifecycle.settle_seconds = 1e9
        self.api.lifecycle.poll_seconds = 0
        self.api.chains.on_activated = self.wake
        # ... and partners' requests, whose answers the checks count on (no store faults there).
        self.intake: Services = services_over(self.raw, self.settings, self.clock)
        self.callbacks = Callbacks(self._apply_callback, self._after_callback, random.Random(self.rng.random()),
                                   self.clock, *rates)
        ws, _ = await self.intake.tenancy.create_workspace("simulation")
        self.principal = Principal(ws["_id"], ObjectId())
        self.agents = [await self.intake.tenancy.create_agent(ws["_id"], {
            "name": "sim agent A", "requiredVariables": [], "callingNumbers": ["+14155550100", "+14155550101"],
            "timezones": ["America/Chicago"]}), await self.intake.tenancy.create_agent(ws["_id"], {
            "name": "sim agent B", "requiredVariables": [], "callingNumbers": ["+14155550102"]})]
        self.numbers = wl.Numbers(random.Random(self.rng.random()), self.config.areas)
        for i in range(self.config.dispatchers):
            self.processes.append(Process(self, self._name(f"d{i}")))
        self.result.started_at = self.clock.now()

    def _name(self, base: str) -> str:
        self.incarnations[base] += 1
        return f"{base}.{self.incarnations[base]}"

    # ---- the provider's events, the status callbacks --------------------------------------------
    async def _provider_event(self, event: Any) -> None:
        self.checker.on_provider_status(event.provider_call_id, event.status)
        await self.callbacks(event)

    async def _apply_callback(self, event: Any) -> str:
        return await self.api.events.apply(event.call_id, event.provider_call_id, event.status,
                                           batch_id=event.extra.get("batchId"), attempt=event.extra.get("attempt"),
                                           answered_by=event.answered_by, duration=event.duration, error=event.error)

    def _after_callback(self, result: str) -> None:
        # The dispatchers are not poked when a call ends: the callbacks reach the API process, not theirs
        # (as with Twilio: Engine's events_in_process=False), so they find freed slots at their next look.
        if result == "retry":
            self.wake()

    def wake(self) -> None:
        self.next_due = None  # calls may be due sooner than the driver thought
        for p in self.processes:
            p.engine.dispatcher.wake()

    # ---- one step -----------------------------------------------------------------------------
    async def run(self) -> Result:
        self.started = started = time.perf_counter()
        await self.open()
        try:
            self.operators = Operators(self)
            limit = self.clock.now() + dt.timedelta(days=self.config.max_days)
            while True:
                self.step += 1
                self.checker.step = self.step
                await self.operators.act()
                await self._restart_due()
                await self.sim.pump()
                await self.callbacks.deliver_due()
                await self._tick_all()
                if self.clock.now() >= self.next_reaper:
                    await self._reap_all()
                for _ in range(4):
                    await asyncio.sleep(0)  # requests in progress (stop, cancel) take their next turn
                if self.checker.violations:
                    break
                if self.step % self.config.recount_every == 0:
                    await self.recount.check()
                elif self.ending and self.step % 20 == 0 and await self.recount.finished():
                    await self.recount.check(everything=True)
                    break
                if self.checker.violations:
                    break
                if self.clock.now() > limit:
                    self.checker.fail(f"calls still not final after {self.config.max_days:g} virtual days: "
                                      f"{await self.recount.left_behind()}")
                    break
                await self._advance()
        finally:
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
            self.result.steps = self.step
            self.result.placed = self.checker.placed
            self.result.violations = list(self.checker.violations)
            self.result.virtual_seconds = (self.clock.now() - self.result.started_at).total_seconds()
            self.result.counts.update({f"provider_{k}": v for k, v in self.provider.errors.items()})
            self.result.counts.update({f"callbacks_{k}": v for k, v in self.callbacks.counts.items()})
            self.result.counts["stale_window_placements"] = self.checker.stale_window_placements
            await self.raw.close()
            self.result.wall_seconds = time.perf_counter() - started
        return self.result

    async def _tick_all(self) -> None:
        if len(self.processes) > 1:
            self.processes.append(self.processes.pop(0))  # take turns at going first
        now = self.clock.now()
        elapsed = (now - self.last_tick).total_seconds() if self.last_tick else 0.0
        self.last_tick = now
        for p in list(self.processes):
            # Each process dies about once per DEATH_EVERY of virtual time, at a random operation.
            if self.faults and self.fault_rng.random() < elapsed / DEATH_EVERY:
                p.guard.arm(self.fault_rng.randrange(0, 40))  # dies at one of its next operations
            try:
                await p.engine.dispatcher.tick()
            except Died:
                self._bury(p)
            except Exception:  # as Engine's scheduler job: logged, runs again at the next interval
                self.result.counts["tick_errors"] += 1

    async def _reap_all(self) -> None:
        self.next_reaper = self.clock.now() + REAPER_EVERY
        for p in list(self.processes):
            try:
                await p.engine.reaper.run()
            except Died:
                self._bury(p)
            except Exception:
                self.result.counts["reaper_errors"] += 1

    def _bury(self, p: Process) -> None:
        """The process died: its memory (claims not yet placed, caches) is gone; it restarts later."""
        self.processes.remove(p)
        self.result.counts["dispatcher_deaths"] += 1
        base = p.name.split(".")[0]
        self.restarts.append((self.clock.now() + dt.timedelta(seconds=self.fault_rng.uniform(1, 30)), base))

    async def _restart_due(self) -> None:
        now = self.clock.now()
        for when, base in [r for r in self.restarts if r[0] <= now]:
            self.restarts.remove((when, base))
            self.processes.append(Process(self, self._name(base)))

    async def _advance(self) -> None:
        """By the poll interval, or (nothing due before) straight to the next thing due: a provider event,
        a delayed callback, a claim's dial time, a queued call's time, a scheduled start, a restart, the
        reapers' run; at most MAX_JUMP. Ticks in between would find nothing to do. When nothing is in flight
        anywhere (provider, store, placers, callbacks on their way) and no chained call waits for its verdict,
        the reapers' runs in between would find nothing to do either (no lease can run out; scheduled starts
        are among the things due): the clock goes past them and they run once where it lands."""
        now = self.clock.now()
        step = now + dt.timedelta(seconds=self.config.step_seconds)
        if self.tasks or (self.operators.sending and self.waiting < self.config.backlog):
            self.clock.set(step)
            return
        nxt = now + MAX_JUMP if await self._quiet() else min(now + MAX_JUMP, self.next_reaper)
        for when in (self.sim.next_event_at(), self.callbacks.next_at(), *(r[0] for r in self.restarts),
                     *(p.engine.dispatcher.placer.ready[0].dial_at for p in self.processes
                       if p.engine.dispatcher.placer.ready)):
            if when is not None and when < nxt:
                nxt = when
        if nxt > step:
            if self.next_due is None or self.next_due <= now:
                self.next_due = now + MAX_JUMP
                for batch in await self.raw.batches.runnable(now):
                    due = await self.raw.calls.next_due_at(batch["_id"])
                    if due is not None and due < self.next_due:
                        self.next_due = due
                        if due <= step:
                            break
            nxt = min(nxt, self.next_due)
        if nxt > step:
            for batch in await self.raw.batches.scheduled_due(nxt):
                if as_utc(batch["scheduledAt"]) > now:  # (one whose time has passed waits for its calls)
                    nxt = min(nxt, as_utc(batch["scheduledAt"]))
        if nxt > step:
            self.result.counts["jumps"] += 1
        self.clock.set(max(step, nxt))

    async def _quiet(self) -> bool:
        """Nothing in flight anywhere, nothing on its way back, no chained call held for its verdict."""
        if (self.checker.alive_total or self.callbacks.later
                or any(p.engine.dispatcher.placer.ready for p in self.processes)):
            return False
        tallies = await self.raw.calls.tallies_many(list(self.batches)) if self.batches else {}
        return not any(t.calls and (t.status in IN_FLIGHT_VALUES or t.status == HELD)
                       for ts in tallies.values() for t in ts)
