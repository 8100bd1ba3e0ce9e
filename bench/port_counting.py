"""Port calls and how the dispatch bench counts them, by phase.

A port call is one awaited method call on a repository of the Repositories given to an Engine or to a
CallEvents (CallRepo, BatchRepo, SlotLedger, TenancyRepo, IdempotencyRepo, ...): `counted()` wraps each
repository in a CountingRepo proxy that counts every method call whose result is awaitable. An
OpCounter keeps the counts by (phase, "repository.method"); the bench sets its phase (the dispatcher's
ticks, the reaper, the provider's events) and turns it off while it looks at the state itself.

On the MongoDB repositories, `count_round_trips()` also counts round trips: each collection is replaced
by a CountingCollection (a coroutine method or aggregate is one round trip, a find one when its cursor
is first read), counted by a SharedPhase that follows the port calls' counter.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import Counter
from typing import Any

from dialer.ports import Repositories


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
    """Replace the MongoDB repositories' collections by counting proxies (in place): every attribute of every
    repository that is a collection, named by the collection (the slot ledger's read of the calls counts as
    `calls`, as the claim's does)."""
    for field in dataclasses.fields(repos):
        repo = getattr(repos, field.name)
        for attr, inner in list(getattr(repo, "__dict__", {}).items()):
            if isinstance(inner, CountingCollection) or not (hasattr(inner, "bulk_write") and hasattr(inner, "find")):
                continue
            setattr(repo, attr, CountingCollection(inner, getattr(inner, "name", attr), counter))
