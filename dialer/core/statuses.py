"""The one place batch and call statuses are named, with the sets the rest of the code reasons with."""

from enum import StrEnum


class BatchStatus(StrEnum):
    PENDING = "pending"  # created, or scheduled for later
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class CallStatus(StrEnum):
    QUEUED = "queued"
    HELD = "held"  # waiting for its group (contact chaining)
    DIALING = "dialing"
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


# Not yet dialled: ingestion may still update these in place.
WAITING = frozenset({CallStatus.QUEUED, CallStatus.HELD})
# Holding a concurrency slot: a provider call exists or is being created.
IN_FLIGHT = frozenset({CallStatus.DIALING, CallStatus.RINGING, CallStatus.IN_PROGRESS})
TERMINAL = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.BUSY,
        CallStatus.NO_ANSWER,
        CallStatus.FAILED,
        CallStatus.CANCELLED,
        CallStatus.SKIPPED,
    }
)
ACTIVE = WAITING | IN_FLIGHT
# The same sets as stored strings, for MongoDB queries ({"status": {"$in": ...}}).
WAITING_VALUES = sorted(s.value for s in WAITING)
IN_FLIGHT_VALUES = sorted(s.value for s in IN_FLIGHT)
ACTIVE_VALUES = sorted(s.value for s in ACTIVE)
# Outcomes a retry policy may name.
RETRYABLE_OUTCOMES = frozenset({"busy", "no_answer", "failed", "machine"})
# Batches the dispatcher never touches again.
BATCH_FINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.CANCELLED, BatchStatus.FAILED})
