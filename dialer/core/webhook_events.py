"""Partner webhook events: which change of a call, a batch or an intake yields which event type.

Pure and shared by both stores: a store records an outbox entry in the same write as the change
(invariant 7), named by these functions; the relay later renders its body. A change that partners do not
subscribe to (a claim, a call handed back unplaced, a held call activated) yields no event (None).
"""

from __future__ import annotations

from dialer.core.statuses import IN_FLIGHT_VALUES, TERMINAL, BatchStatus, CallStatus

CALL_EVENTS = ("call.ringing", "call.answered", "call.completed", "call.failed", "call.busy", "call.no_answer",
               "call.machine", "call.cancelled", "call.skipped", "call.suppressed", "call.retry_scheduled")
BATCH_EVENTS = ("batch.started", "batch.paused", "batch.completed", "batch.cancelled")
EVENT_TYPES = (*CALL_EVENTS, *BATCH_EVENTS, "enrollment.accepted", "webhook.test")
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)
BATCH_TARGETS = {BatchStatus.RUNNING.value: "batch.started", BatchStatus.PAUSED.value: "batch.paused",
                 BatchStatus.COMPLETED.value: "batch.completed", BatchStatus.CANCELLED.value: "batch.cancelled"}


def call_event(before: str, after: str, outcome: str | None) -> str | None:
    """The event of a call moving from status `before` to `after` (its outcome after the move)."""
    if after == CallStatus.RINGING.value:
        return "call.ringing"
    if after == CallStatus.IN_PROGRESS.value:
        return "call.answered"
    if after in TERMINAL_VALUES and before != after:
        return f"call.{outcome or after}"
    if after == CallStatus.QUEUED.value and before in IN_FLIGHT_VALUES:
        return "call.retry_scheduled"  # a retry policy's (an unplaced hand-back is filtered by the store)
    return None


def batch_event(after: str) -> str | None:
    """The event of a batch moving to status `after` (every move changes the status): batch.started whenever
    it runs (first start, resumed, reopened by new calls), then paused, completed, cancelled; failed: none."""
    return BATCH_TARGETS.get(after)
