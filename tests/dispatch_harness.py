"""Driving dispatchers on a virtual clock: engines sharing one store and one simulated provider."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from bson import ObjectId

from dialer.api.appkeys import CHAINS, ENROLLMENT, EVENTS
from dialer.core.statuses import IN_FLIGHT_VALUES
from workers.engine import Engine
from workers.telephony.simulator import Simulator



def nums(n: int, area: str = "212") -> list[dict]:
    """n records of distinct numbers in one area code."""
    return [{"phoneNumber": f"+1{area}555{i:04d}"} for i in range(n)]


def after_due_reads(calls, hook) -> None:
    """Runs `await hook(found)` after each read of due calls by the dispatcher (`calls.due_many`, or the due part
    of `calls.look`, its read with the slots), `found` being {batch: (due calls, later)}."""
    due_many, look = calls.due_many, calls.look

    async def due_many_then(*args, **kwargs):
        found = await due_many(*args, **kwargs)
        await hook(found)
        return found

    async def look_then(*args, **kwargs):
        state, found = await look(*args, **kwargs)
        await hook(found)
        return state, found

    calls.due_many, calls.look = due_many_then, look_then


class Harness:
    def __init__(self, api, clock, settings, outcomes=None, mean_duration=30.0, seed=7, dispatchers=1):
        self.api = api
        self.clock = clock
        self.sim = Simulator(clock, outcomes or {"answered": 1.0}, mean_duration=mean_duration, seed=seed)
        self.settings = settings
        self.engines = [self.new_engine(f"d{i}") for i in range(dispatchers)]
        self.sim.sink = self.deliver
        self.peak: Counter = Counter()  # batchId -> highest number of calls seen in flight
        self.peak_total = 0
        self.placements: list[tuple[dt.datetime, str]] = []  # (when, number)

    def new_engine(self, name: str) -> Engine:
        app = self.api.app
        engine = Engine(self.api.store, self.clock, self.settings, self.sim, app[EVENTS], name=name,
                        chains=app[CHAINS], enrollment=app[ENROLLMENT])
        self.sim.sink = self.deliver  # the provider's events reach every dispatcher alike
        return engine

    async def deliver(self, event) -> None:
        # Applied once; every engine shares the API's events service, so each is told a slot is free.
        await self.engines[0].deliver(event)

    async def observe(self) -> None:
        total = 0
        for batch in {r.batch_id for r in self.sim.placed}:  # every batch that has had a call placed
            tallies = await self.api.store.calls.tallies(ObjectId(batch))
            n = sum(t.calls for t in tallies if t.status in IN_FLIGHT_VALUES)
            self.peak[batch] = max(self.peak[batch], n)
            total += n
        self.peak_total = max(self.peak_total, total)

    async def step(self, seconds: float = 1.0) -> None:
        before = len(self.sim.placed)
        self.engines.append(self.engines.pop(0))  # take turns at going first
        for engine in self.engines:
            await engine.step()
            await self.observe()
        for request in self.sim.placed[before:]:
            self.placements.append((self.clock.now(), request.to))
        self.clock.advance(seconds)

    async def run_until(self, done, max_steps: int = 20_000, seconds: float = 1.0) -> int:
        for n in range(max_steps):
            if await done():
                return n
            await self.step(seconds)
            if n % 50 == 0:
                for engine in self.engines:
                    await engine.reaper.run()
        raise AssertionError("did not finish")

    async def batch_status(self, batch_id: str) -> str:
        _, doc = await self.api.get(f"/api/call/batches/{batch_id}")
        return doc["data"]["status"]
