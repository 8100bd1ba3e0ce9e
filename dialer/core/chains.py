"""Contact chaining: what a group of calls does next, decided from the group's calls alone (pure, no I/O).

A group (dialer/core/enrollment.py) has one call queued or in flight at a time; the rest are held. When
none is waiting or in flight, the next step is:

- policy `each` (a callee given more than once): activate the next held call, whatever the outcomes;
- policy `untilSuccess` (`groupByField`): if a call of the group succeeded, skip the held ones; else
  activate the next held call (lowest `seq`).

A call **succeeded** when it was completed by a person (not a machine), lasted at least
`min_seconds`, and its agent did not report it unsuccessful. The agent may report a verdict
(`POST /api/call/calls/{callId}/verdict`) while the call runs or within `verdict_seconds` after it ended:
until then a call that looks successful is only *tentatively* so, and the group waits (its held
contacts are skipped once the verdict window has passed, or at once when the agent confirms success).
An unsuccessful verdict given after the window changes nothing: the success was decided.

The step is the same whoever computes it, however often: activation is a compare-and-set on one held
call (the lowest `seq`), so two processes deciding at once activate it once, and a process that crashed
between a call's end and its group's step is replaced by the reaper's sweep of groups with held calls.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dialer.core.clock import as_utc
from dialer.core.enrollment import EACH
from dialer.core.statuses import ACTIVE, TERMINAL, CallStatus

ACTIVE_VALUES = frozenset(s.value for s in ACTIVE - {CallStatus.HELD})
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)


@dataclass(frozen=True)
class ChainRule:
    min_seconds: int = 20
    verdict_seconds: int = 60


@dataclass(frozen=True)
class Step:
    activate: object | None = None  # the held call's id to queue
    skip: bool = False  # skip every held call of the group
    recheck_at: dt.datetime | None = None  # a tentative success: decide again then


def looks_successful(call: dict, rule: ChainRule) -> bool:
    return (call.get("status") == CallStatus.COMPLETED.value and call.get("outcome") == "completed"
            and (call.get("duration") or 0) >= rule.min_seconds)


def next_step(calls: list[dict], now: dt.datetime, rule: ChainRule) -> Step:
    """The group's next step from its calls (`status, outcome, duration, verdict, finishedAt, group`)."""
    if not calls or any(c["status"] in ACTIVE_VALUES for c in calls):
        return Step()
    held = sorted((c for c in calls if c["status"] == CallStatus.HELD.value), key=lambda c: c["group"]["seq"])
    if not held:
        return Step()
    if calls[0]["group"].get("policy") == EACH:
        return Step(activate=held[0]["_id"])
    recheck: dt.datetime | None = None
    for call in calls:
        if call["status"] not in TERMINAL_VALUES:
            continue
        verdict = call.get("verdict") or {}
        if verdict.get("successful") is True:
            return Step(skip=True)
        decided_at = as_utc(call.get("finishedAt") or now) + dt.timedelta(seconds=rule.verdict_seconds)
        if not looks_successful(call, rule):
            continue
        if verdict.get("successful") is False and as_utc(verdict.get("at") or now) <= decided_at:
            continue  # reported unsuccessful within its window (a later report changes no success)
        if decided_at <= now:
            return Step(skip=True)
        recheck = decided_at if recheck is None else min(recheck, decided_at)
    if recheck is not None:
        return Step(recheck_at=recheck)
    return Step(activate=held[0]["_id"])
