"""Faults, injected at the seams the engine already has (the ports and the provider), all drawn from the
run's seed.

- A dispatcher process is an `Incarnation`: its repositories and provider are proxies that pass through
  its `Guard`. Armed, the guard kills the process at its n-th next operation (store or provider): that
  operation and everything after it raise `Died` (a BaseException, so no `except Exception` of the engine
  swallows it); the driver drops the process with all its in-memory state and starts a new one later.
- Store operations fail with StoreUnavailable at a small rate, on the dispatchers' side and the API's.
- `FaultyProvider`: invalid numbers, rate limits, 5xx, timeouts before and after the call was created;
  the reaper's look-ups fail now and then too.
- `Callbacks`: the provider's status callbacks to the API are lost, duplicated, delayed (so reordered).
- `inline_store`: the embedded store's units of work run on the event loop's thread, one at a time in
  the order they are asked for, so a run's interleaving depends on the seed alone (and skips the
  thread hop per operation).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import heapq
import itertools
import random
from typing import Any, Callable

from dialer.ports import Repositories, StoreUnavailable
from workers.telephony.base import ErrorKind, ProviderError



class Died(BaseException):
    """The dispatcher process died here (between two of its operations)."""


class Guard:
    def __init__(self, rng: random.Random, store_fault_rate: float) -> None:
        self.rng = rng
        self.store_fault_rate = store_fault_rate
        self.dead = False
        self.countdown: int | None = None
        self.ops = 0

    def arm(self, after: int) -> None:
        self.countdown = after

    def op(self, store: bool = True) -> None:
        if self.dead:
            raise Died()
        self.ops += 1
        if self.countdown is not None:
            self.countdown -= 1
            if self.countdown < 0:
                self.dead = True
                raise Died()
        if store and self.store_fault_rate and self.rng.random() < self.store_fault_rate:
            raise StoreUnavailable("database error: AutoReconnect (simulated)")


class Guarded:
    """A repository seen through a guard: every method call is one operation."""

    def __init__(self, inner: Any, guard: Guard) -> None:
        self._inner = inner
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr):
            return attr
        guard = self._guard

        def call(*args: Any, **kwargs: Any) -> Any:
            guard.op()
            return attr(*args, **kwargs)

        self.__dict__[name] = call
        return call


def guarded(repos: Repositories, guard: Guard) -> Repositories:
    return repos.seen_through(lambda _, repo: Guarded(repo, guard))


class GuardedProvider:
    """The provider as one dispatcher process sees it: a dead process asks it nothing more."""

    name = "simulator"

    def __init__(self, inner: Any, guard: Guard) -> None:
        self.inner = inner
        self.guard = guard
        self.sink = None  # the engine may set it; the driver delivers events itself

    async def place_call(self, request):
        self.guard.op(store=False)
        return await self.inner.place_call(request)

    async def call_status(self, sid):
        self.guard.op(store=False)
        return await self.inner.call_status(sid)

    async def find_calls(self, to, from_, since):
        self.guard.op(store=False)
        return await self.inner.find_calls(to, from_, since)

    async def hangup(self, sid):
        self.guard.op(store=False)
        return await self.inner.hangup(sid)

    async def close(self) -> None:
        pass


class FaultyProvider:
    """The simulated provider with its refusals and failures, shared by every dispatcher."""

    name = "simulator"

    def __init__(self, sim: Any, rng: random.Random, rate: float) -> None:
        self.sim = sim
        self.rng = rng
        self.rate = rate  # share of placements that meet some error
        self.errors: dict[str, int] = {}

    def _error(self, kind: ErrorKind, text: str, retry_after: float | None = None) -> ProviderError:
        self.errors[kind.value + ("" if text != "created" else "_after_create")] = (
            self.errors.get(kind.value + ("" if text != "created" else "_after_create"), 0) + 1)
        return ProviderError(kind, text, retry_after)

    async def place_call(self, request):
        if not self.rate or self.rng.random() >= self.rate:
            return await self.sim.place_call(request)
        pick = self.rng.random()
        if pick < 0.15:
            raise self._error(ErrorKind.INVALID_NUMBER, "21211 invalid 'To' number (simulated)")
        if pick < 0.40:
            raise self._error(ErrorKind.RATE_LIMITED, "429 too many requests (simulated)",
                              self.rng.choice([None, 1.0, 5.0]))
        if pick < 0.65:
            raise self._error(ErrorKind.TRANSIENT, "503 service unavailable (simulated)")
        if pick < 0.80:
            raise self._error(ErrorKind.UNKNOWN, "timed out before the call was created (simulated)")
        await self.sim.place_call(request)  # the call exists, but the answer never came back
        raise self._error(ErrorKind.UNKNOWN, "created")

    async def call_status(self, sid):
        if self.rate and self.rng.random() < self.rate:
            raise ProviderError(ErrorKind.TRANSIENT, "503 on a status look-up (simulated)")
        return await self.sim.call_status(sid)

    async def find_calls(self, to, from_, since):
        if self.rate and self.rng.random() < self.rate:
            raise ProviderError(ErrorKind.TRANSIENT, "503 on a call search (simulated)")
        return await self.sim.find_calls(to, from_, since)

    async def hangup(self, sid):
        return await self.sim.hangup(sid)

    async def close(self) -> None:
        pass


class Callbacks:
    """The provider's status callbacks on their way to the API: lost, duplicated or delayed at random.
    Applied through the API process's CallEvents; `after(result)` tells the dispatchers (poke / wake)."""

    def __init__(self, apply: Callable, after: Callable, rng: random.Random, clock, lost: float, duplicated: float,
                 delayed: float, max_delay: float = 90.0) -> None:
        self.apply_event = apply
        self.after = after
        self.rng = rng
        self.clock = clock
        self.rates = (lost, duplicated, delayed)
        self.max_delay = max_delay
        self.later: list[tuple[dt.datetime, int, Any]] = []
        self._seq = itertools.count()
        self.counts = {"delivered": 0, "lost": 0, "duplicated": 0, "delayed": 0, "refused": 0}

    async def __call__(self, event: Any) -> None:
        lost, duplicated, delayed = self.rates
        pick = self.rng.random()
        if pick < lost:
            self.counts["lost"] += 1
            return
        if pick < lost + delayed:
            self.counts["delayed"] += 1
            self._later(self.rng.uniform(0.5, self.max_delay), event)
            return
        await self.deliver(event)
        if pick < lost + delayed + duplicated:
            self.counts["duplicated"] += 1
            self._later(self.rng.choice([0.0, 0.5, self.rng.uniform(1, self.max_delay)]), event)

    def _later(self, seconds: float, event: Any) -> None:
        heapq.heappush(self.later, (self.clock.now() + dt.timedelta(seconds=seconds), next(self._seq), event))

    def next_at(self) -> dt.datetime | None:
        return self.later[0][0] if self.later else None

    async def deliver_due(self) -> None:
        now = self.clock.now()
        while self.later and self.later[0][0] <= now:
            await self.deliver(heapq.heappop(self.later)[2])

    async def deliver(self, event: Any) -> None:
        try:
            result = await self.apply_event(event)
        except StoreUnavailable:
            self.counts["refused"] += 1  # the webhook answered 503; Twilio does not retry status callbacks
            return
        self.counts["delivered"] += 1
        self.after(result)


class InlineExecutor(concurrent.futures.Executor):
    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            future.set_exception(exc)
        return future


def inline_store(repos: Repositories) -> None:
    """Run an in-memory SQLite store's work on this thread (see the module docstring)."""
    db = repos.database
    if db is None or not db.in_memory:
        return
    pool = db._writer
    db._local.conn = db._connections[0]  # the writer's connection: `:memory:` is that one database
    db._writer = db._reader = InlineExecutor()
    pool.shutdown(wait=True)

    async def submit(pool, run, work, args):  # Database._submit, without the executor's future
        if db.closed:
            raise StoreUnavailable("database error: the store is closed")
        return run(work, args)

    db._submit = submit
