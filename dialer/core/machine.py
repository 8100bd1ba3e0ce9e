"""The two state machines, named once: which status changes exist for batches and for calls.

Every status change of the engine is one of these moves, written by one repository method as a
compare-and-set on the current status (`sources`): a writer whose view is stale changes nothing.

Batch: pending (created or scheduled) -> running <-> paused; running -> completed when nothing waits
or is in flight, and back to running when calls arrive; pending | running | paused | completed ->
cancelled (final); failed (final) when it cannot run at all.

Call: queued | held -> dialing -> ringing -> in_progress -> a terminal status; in flight -> queued
again for a retry by policy (the outcome kept) or when nothing reached the callee (attempt not
counted); held -> queued when its group activates it; queued | held -> cancelled / skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialer.core.statuses import IN_FLIGHT, TERMINAL, WAITING, BatchStatus, CallStatus


@dataclass(frozen=True)
class BatchMove:
    name: str
    sources: frozenset[BatchStatus]
    target: BatchStatus

    @property
    def source_values(self) -> list[str]:
        return sorted(s.value for s in self.sources)


@dataclass(frozen=True)
class CallMove:
    name: str
    sources: frozenset[CallStatus]
    targets: frozenset[CallStatus]

    @property
    def source_values(self) -> list[str]:
        return sorted(s.value for s in self.sources)

    def allows(self, source: str, target: str) -> bool:
        return source in self.sources and target in self.targets


B = BatchStatus
# Calls arrived (or a scheduled start came): a pending or completed batch runs.
START_ON_ENQUEUE = BatchMove("start on enqueue", frozenset({B.PENDING, B.COMPLETED}), B.RUNNING)
START_SCHEDULED = BatchMove("scheduled start", frozenset({B.PENDING}), B.RUNNING)
COMPLETE = BatchMove("complete", frozenset({B.RUNNING}), B.COMPLETED)
REOPEN = BatchMove("reopen", frozenset({B.COMPLETED}), B.RUNNING)  # calls slipped in while completing
PAUSE = BatchMove("pause", frozenset({B.PENDING, B.RUNNING}), B.PAUSED)
CANCEL = BatchMove("cancel", frozenset({B.PENDING, B.RUNNING, B.PAUSED, B.COMPLETED}), B.CANCELLED)
START = BatchMove("start", frozenset({B.PENDING, B.PAUSED}), B.RUNNING)  # an operator's start
STOP = BatchMove("stop", frozenset({B.RUNNING}), B.PAUSED)  # an operator's stop
RETRY_BATCH = BatchMove("retry", frozenset({B.RUNNING, B.PAUSED, B.COMPLETED}), B.RUNNING)
BATCH_MOVES = (START_ON_ENQUEUE, START_SCHEDULED, COMPLETE, REOPEN, PAUSE, CANCEL, START, STOP, RETRY_BATCH)

C = CallStatus
CLAIM = CallMove("claim", frozenset({C.QUEUED}), frozenset({C.DIALING}))
REQUEUE_UNPLACED = CallMove("requeue unplaced", frozenset({C.DIALING}), frozenset({C.QUEUED}))
RINGING = CallMove("ringing", frozenset({C.DIALING}), frozenset({C.RINGING}))
ANSWERED = CallMove("answered", frozenset({C.DIALING, C.RINGING}), frozenset({C.IN_PROGRESS}))
RETRY_LATER = CallMove("retry by policy", frozenset(IN_FLIGHT), frozenset({C.QUEUED}))
FINISH = CallMove("finish", frozenset(IN_FLIGHT), frozenset(TERMINAL))
ACTIVATE = CallMove("activate", frozenset({C.HELD}), frozenset({C.QUEUED}))
WITHDRAW = CallMove("withdraw", frozenset(WAITING), frozenset({C.CANCELLED, C.SKIPPED}))
RETRY = CallMove("retry asked by an operator", frozenset(TERMINAL), frozenset({C.QUEUED}))
CALL_MOVES = (CLAIM, REQUEUE_UNPLACED, RINGING, ANSWERED, RETRY_LATER, FINISH, ACTIVATE, WITHDRAW, RETRY)

PROGRESS_MOVES = {C.RINGING: RINGING, C.IN_PROGRESS: ANSWERED}


def call_move_allowed(source: str, target: str) -> bool:
    """True when some move takes a call from `source` to `target` (a check both backends assert)."""
    return any(move.allows(source, target) for move in CALL_MOVES)
