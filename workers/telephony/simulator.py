"""A simulated telephony provider: configurable outcomes and durations on the injected clock.

No account needed: the default for `make run`. Events are delivered through an EventSink when
`pump()` is called (the dispatcher loop calls it every tick), which makes runs on a virtual clock
fully deterministic. `time_scale` compresses simulated time: ring times and durations are divided
by it, so a 100-call batch with limit 10 finishes in about a minute at the default scale of 10.
`concurrent_events` > 1 delivers the events of that many calls at once (each call's in order), as Twilio's
status callbacks arrive as concurrent requests: what `dialer serve` does; 1 (one at a time, in order) keeps
virtual-clock runs deterministic.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import logging
import random
import secrets
from dataclasses import dataclass, field

from workers.telephony.base import CallEvent, DialRequest, EventSink, Placed

OUTCOMES = ("answered", "busy", "no_answer", "failed", "machine")
_ENDED = ("completed", "busy", "no-answer", "failed", "canceled")
log = logging.getLogger("workers.simulator")


def parse_outcomes(spec: str) -> dict[str, float]:
    """'answered=0.6,busy=0.1,...' -> weights; unknown outcomes are refused."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        if name not in OUTCOMES:
            raise ValueError(f"unknown simulator outcome {name!r}; use {OUTCOMES}")
        weights[name] = float(value)
    if not weights or sum(weights.values()) <= 0:
        raise ValueError("simulator outcomes need at least one positive weight")
    return weights


@dataclass(order=True)
class _Due:
    at: dt.datetime
    seq: int
    event: CallEvent = field(compare=False)


@dataclass
class SimCall:
    sid: str
    request: DialRequest
    created: dt.datetime
    status: str = "queued"
    answered_by: str | None = None
    duration: int | None = None


class Simulator:
    name = "simulator"

    def __init__(self, clock, outcomes: dict[str, float] | None = None, mean_duration: float = 45.0,
                 time_scale: float = 1.0, seed: int | None = None, concurrent_events: int = 1) -> None:
        self.clock = clock
        self.concurrent_events = concurrent_events
        self.outcomes = outcomes or {"answered": 1.0}
        self.mean_duration = mean_duration
        self.time_scale = time_scale
        self.rng = random.Random(seed)
        self.sink: EventSink | None = None
        self.calls: dict[str, SimCall] = {}
        self.placed: list[DialRequest] = []  # every placement, in order (tests check "never twice")
        self._due: list[_Due] = []
        self._seq = itertools.count()
        # Call ids unique across processes and restarts (as Twilio's are): a restarted process numbering from
        # zero again gave its calls the ids of calls left in flight by the last one, and the reaper applied
        # one callee's outcome to another's call. A seeded run's is its seed (its draws stay as they were).
        self._prefix = f"{seed % 2 ** 64:016x}" if seed is not None else secrets.token_hex(8)

    def _after(self, seconds: float) -> dt.datetime:
        return self.clock.now() + dt.timedelta(seconds=seconds / self.time_scale)

    def _schedule(self, at: dt.datetime, call: SimCall, status: str, **kw) -> None:
        event = CallEvent(provider_call_id=call.sid, status=status, call_id=call.request.call_id,
                          extra={"batchId": call.request.batch_id, "attempt": call.request.attempt}, **kw)
        heapq.heappush(self._due, _Due(at, next(self._seq), event))

    async def place_call(self, request: DialRequest) -> Placed:
        sid = f"SM{self._prefix}{next(self._seq):016x}"
        call = SimCall(sid, request, self.clock.now())
        self.calls[sid] = call
        self.placed.append(request)
        outcome = self.rng.choices(list(self.outcomes), weights=list(self.outcomes.values()))[0]
        ring = self.rng.uniform(3, min(25, request.ringing_timeout))
        duration = max(5, int(self.rng.expovariate(1 / self.mean_duration)))
        if outcome in ("answered", "machine"):
            # Like Twilio, who answered is known only when answering machine detection was asked for.
            by = None if not request.machine_detection else "human" if outcome == "answered" else "machine_start"
            self._schedule(self._after(ring), call, "in-progress", answered_by=by)
            self._schedule(self._after(ring + duration), call, "completed", answered_by=by, duration=duration)
        elif outcome == "busy":
            self._schedule(self._after(self.rng.uniform(2, 6)), call, "busy")
        elif outcome == "no_answer":
            self._schedule(self._after(request.ringing_timeout), call, "no-answer")
        else:
            self._schedule(self._after(1), call, "failed")
        return Placed(sid)

    def next_event_at(self) -> dt.datetime | None:
        return self._due[0].at if self._due else None

    async def pump(self) -> int:
        """Deliver every event due by now to the sink; returns how many."""
        now = self.clock.now()
        delivered = 0
        lanes: dict[str, list[CallEvent]] = {}  # per call, in order (concurrent delivery)
        while self._due and self._due[0].at <= now:
            due = heapq.heappop(self._due)
            call = self.calls[due.event.provider_call_id]
            if call.status in _ENDED:
                continue  # ended meanwhile
            if call.status == "hanging-up" and due.event.status not in ("completed", "canceled"):
                continue  # hung up: only its end is still to come
            call.status = due.event.status
            call.answered_by = due.event.answered_by or call.answered_by
            call.duration = due.event.duration
            if self.sink is not None and self.concurrent_events > 1:
                lanes.setdefault(due.event.provider_call_id, []).append(due.event)
            elif self.sink is not None:
                await self.sink(due.event)
            delivered += 1
        if lanes:
            gate = asyncio.Semaphore(self.concurrent_events)

            async def lane(events: list[CallEvent]) -> None:
                async with gate:
                    for event in events:
                        await self.sink(event)

            failures = [r for r in await asyncio.gather(*(lane(e) for e in lanes.values()), return_exceptions=True)
                        if isinstance(r, BaseException)]
            if failures:  # as one at a time would: the step fails (logged); the reaper settles those calls
                raise failures[0]
        return delivered

    async def call_status(self, provider_call_id: str) -> CallEvent | None:
        call = self.calls.get(provider_call_id)
        if call is None:
            return None
        return CallEvent(provider_call_id, call.status, call_id=call.request.call_id,
                         answered_by=call.answered_by, duration=call.duration)

    async def find_calls(self, to: str, from_: str, since: dt.datetime) -> list[str]:
        """As TwilioProvider.find_calls: newest first (calls are kept in the order they were placed)."""
        return [c.sid for c in reversed(self.calls.values())
                if c.request.to == to and c.request.from_ == from_ and c.created >= since]

    async def hangup(self, provider_call_id: str) -> None:
        """Like Twilio's call update: a call talking ends `completed`, one still ringing `canceled`; the
        event follows at once (at the next pump)."""
        call = self.calls.get(provider_call_id)
        if call is None or call.status in _ENDED:
            return
        status = "completed" if call.status == "in-progress" else "canceled"
        duration = int((self.clock.now() - call.created).total_seconds() * self.time_scale) if status == "completed" else None
        self._schedule(self.clock.now(), call, status, answered_by=call.answered_by, duration=duration)
        call.status = "hanging-up"  # events scheduled before the hangup are dropped, as Twilio ends the call

    async def close(self) -> None:
        """The process stops, and the simulated line with it: its calls end now (one talking `completed`, any other
        `failed`: the line went down), their events delivered, so a restart finds none left in flight for their
        leases to run out (up to 16 minutes for an answered call). After a crash (SIGKILL) the leases still do."""
        self._due.clear()
        live = [c for c in self.calls.values() if c.status not in _ENDED]
        for call in live:
            talking = call.status == "in-progress"
            duration = int((self.clock.now() - call.created).total_seconds() * self.time_scale) if talking else None
            call.status = "completed" if talking else "failed"
            event = CallEvent(provider_call_id=call.sid, status=call.status, call_id=call.request.call_id,
                              answered_by=call.answered_by, duration=duration,
                              error=None if talking else "the simulated line was shut down",
                              extra={"batchId": call.request.batch_id, "attempt": call.request.attempt})
            if self.sink is not None:
                try:
                    await self.sink(event)
                except Exception:  # the store may be failing too: the lease settles this one after the restart
                    log.exception("ending a simulated call at shutdown failed", extra={"callId": call.request.call_id})
