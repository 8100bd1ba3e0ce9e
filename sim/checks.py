"""The invariants, checked from the provider's side (what really reached telephony) with incremental
bookkeeping: every placement is checked when it happens, against what the simulation itself asked for.

At each placement: the batch's concurrency limit, the account's cap and the calls-per-second budget are
not passed (counting calls alive at the provider: placed, final status not yet reached); the callee's
window is open in every zone the call must respect (computed here from the record, the number's zones
and the batch, independently of dialer/core/windows.py); the callee is in no other call; the attempt
(call id, claim token) was never placed before; the batch was not stopped or cancelled by an answered
operator request since. A batch's limit or window changed by a PATCH binds from the change on, with
`grace` seconds during which the previous value is still accepted (dispatchers see a change within the
few seconds of their batch cache and rate horizon).

Violations are collected as (step, text); the driver stops at the first one.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


@lru_cache(maxsize=None)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _minute(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def window_open(window: dict, zones: tuple[str, ...], at: dt.datetime) -> bool:
    """Is the local wall clock of every zone inside the window at `at`? (days name the opening day; a
    window whose end is before its start crosses midnight; end 24:00 / 00:00 is the next midnight)."""
    start, end = _minute(window["start"]), _minute(window["end"])
    if end == 0:
        end = 24 * 60
    days = {DAYS.index(d) for d in window["days"]}
    for zone in zones:
        local = at.astimezone(_zone(zone))
        minute, day = local.hour * 60 + local.minute, local.weekday()
        if start < end:
            ok = day in days and start <= minute < end
        else:
            ok = (day in days and minute >= start) or ((day - 1) % 7 in days and minute < end)
        if not ok:
            return False
    return True


@dataclass
class BatchBook:
    """What the simulation asked of one batch: its limits and windows over time, whether it was halted."""

    limits: list[tuple[dt.datetime, int]]  # (since, concurrency limit)
    windows: list[tuple[dt.datetime, dict]]  # (since, calling window)
    halted: str | None = None  # "stopped" / "cancelled" once such a request answered (until a start or retry)
    alive: int = 0

    def allowed(self, history: list, now: dt.datetime, grace: dt.timedelta) -> list:
        """The values in force at `now`, plus those replaced less than `grace` ago."""
        out = [history[-1][1]]
        for (_, value), (until, _) in zip(history, history[1:]):
            if until > now - grace:
                out.append(value)
        return out


@dataclass
class Checker:
    account: int
    cps: float
    step_seconds: float
    grace: dt.timedelta = dt.timedelta(seconds=10)
    step: int = 0
    violations: list[tuple[int, str]] = field(default_factory=list)
    batches: dict[str, BatchBook] = field(default_factory=dict)
    zones: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)  # (batch, number) -> zones
    alive_total: int = 0
    alive_numbers: Counter = field(default_factory=Counter)
    live: dict[str, tuple[str, str]] = field(default_factory=dict)  # provider sid -> (batch, number)
    attempts: set = field(default_factory=set)  # (call id, claim token) placed
    recent: deque = field(default_factory=deque)  # placement instants within the last second
    placed: int = 0
    stale_window_placements: int = 0  # placed under a window replaced less than `grace` before

    def fail(self, text: str) -> None:
        self.violations.append((self.step, text))

    # ---- what the simulation asked for --------------------------------------------------------
    def new_batch(self, batch_id: str, limit: int, window: dict, now: dt.datetime) -> None:
        self.batches[batch_id] = BatchBook([(now, limit)], [(now, window)])

    def patched(self, batch_id: str, now: dt.datetime, limit: int | None = None, window: dict | None = None) -> None:
        book = self.batches[batch_id]
        if limit is not None:
            book.limits.append((now, limit))
        if window is not None:
            book.windows.append((now, window))

    def callee(self, batch_id: str, number: str, zones: tuple[str, ...]) -> None:
        self.zones[(batch_id, number)] = zones

    # ---- the provider's side ------------------------------------------------------------------
    def on_place(self, request, sid: str, now: dt.datetime) -> None:
        batch, number = request.batch_id, request.to
        book = self.batches.get(batch)
        what = f"call {request.call_id} (batch {batch}, {number})"
        self.placed += 1
        if book is None:
            self.fail(f"{what}: placed for a batch the simulation never created")
            return
        if book.halted:
            self.fail(f"{what}: placed after the batch was {book.halted} (the request had answered)")
        key = (request.call_id, request.attempt)
        if key in self.attempts:
            self.fail(f"{what}: attempt {request.attempt} placed twice")
        self.attempts.add(key)
        if self.alive_numbers[number]:
            self.fail(f"{what}: the callee is already in a call")
        limit = max(book.allowed(book.limits, now, self.grace))
        if book.alive + 1 > limit:
            self.fail(f"{what}: {book.alive + 1} calls of the batch at once, limit {limit}")
        if self.alive_total + 1 > self.account:
            self.fail(f"{what}: {self.alive_total + 1} calls of the account at once, cap {self.account}")
        zones = self.zones.get((batch, number))
        if zones is None:
            self.fail(f"{what}: a number the simulation never sent to this batch")
        else:
            windows = book.allowed(book.windows, now, self.grace)
            if not window_open(windows[0], zones, now):
                if any(window_open(w, zones, now) for w in windows[1:]):
                    self.stale_window_placements += 1
                else:
                    local = ", ".join(f"{z} {now.astimezone(_zone(z)):%a %H:%M}" for z in zones)
                    self.fail(f"{what}: placed outside its window {windows[0]} ({local})")
        self.recent.append(now)
        while self.recent and self.recent[0] <= now - dt.timedelta(seconds=1):
            self.recent.popleft()
        # Dial times are spaced 1/cps apart; placements happen on the ticks (every step_seconds).
        budget = int(self.cps * (1 + 2 * self.step_seconds)) + 1
        if len(self.recent) > budget:
            self.fail(f"{what}: {len(self.recent)} calls placed within one second, budget {budget} "
                      f"({self.cps:g} calls/s)")
        book.alive += 1
        self.alive_total += 1
        self.alive_numbers[number] += 1
        self.live[sid] = (batch, number)

    def on_provider_status(self, sid: str, status: str) -> None:
        """The provider's call reached `status` (whether or not its callback is delivered)."""
        if status not in FINAL or sid not in self.live:
            return
        batch, number = self.live.pop(sid)
        self.batches[batch].alive -= 1
        self.alive_total -= 1
        self.alive_numbers[number] -= 1
        if not self.alive_numbers[number]:
            del self.alive_numbers[number]

    # ---- operators' answers ---------------------------------------------------------------------
    def halted(self, batch_id: str, how: str) -> None:
        self.batches[batch_id].halted = how

    def resumed(self, batch_id: str) -> None:
        book = self.batches[batch_id]
        if book.halted != "cancelled":
            book.halted = None
