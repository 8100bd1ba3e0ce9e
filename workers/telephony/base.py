"""The telephony seam: what the dispatcher asks of a provider, and what a provider reports back.

Statuses reported by providers use Twilio's vocabulary (queued, initiated, ringing, in-progress,
completed, busy, no-answer, failed, canceled), whatever the provider; workers/outcomes.py maps them
to our call statuses.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Awaitable, Callable, Protocol


@dataclass(frozen=True)
class DialRequest:
    call_id: str
    batch_id: str
    to: str  # E.164
    from_: str  # caller id, E.164
    ringing_timeout: int  # seconds
    status_callback_url: str | None  # where the provider posts status changes (Twilio)
    twiml_url: str | None  # where the provider fetches instructions once answered (Twilio)
    send_digits: str | None = None  # an extension to dial after connecting
    machine_detection: bool = False
    attempt: str = ""  # the claim token of this attempt: events echo it so a late event of an earlier
    # attempt cannot touch this one


@dataclass(frozen=True)
class Placed:
    provider_call_id: str


class ErrorKind(StrEnum):
    INVALID_NUMBER = "invalid_number"  # the call can never succeed: ends as failed
    REJECTED = "rejected"  # any other refusal of this call (4xx): ends as failed
    RATE_LIMITED = "rate_limited"  # try again later, nothing was created
    TRANSIENT = "transient"  # 5xx / network before the request was accepted: try again later
    UNKNOWN = "unknown"  # timed out: the call may or may not exist; reconcile before re-dialling


class ProviderError(Exception):
    def __init__(self, kind: ErrorKind, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class CallEvent:
    """A status change of a provider call, as delivered by a webhook or the simulator."""

    provider_call_id: str
    status: str  # Twilio vocabulary
    call_id: str | None = None  # ours, when the provider echoes it back
    answered_by: str | None = None  # human | machine_start | ... (answering machine detection)
    duration: int | None = None  # seconds, on completed
    error: str | None = None
    at: dt.datetime | None = None
    extra: dict = field(default_factory=dict)


EventSink = Callable[[CallEvent], Awaitable[None]]


class TelephonyProvider(Protocol):
    name: str

    async def place_call(self, request: DialRequest) -> Placed:
        """Create the call; raise ProviderError on refusal or failure."""

    async def call_status(self, provider_call_id: str) -> CallEvent | None:
        """The provider's current view of a call (reconciliation); None if it does not know it."""

    async def find_calls(self, to: str, from_: str, since: dt.datetime) -> list[str]:
        """The ids of the calls to `to` from `from_` created at or after `since`, newest first (after an UNKNOWN
        error or a crash). Every one, not only the newest: two calls of ours may share the number (two
        extensions, a duplicate, another batch), and the reaper takes the newest that no call of ours holds."""

    async def hangup(self, provider_call_id: str) -> None:
        """End a call (batch cancelled)."""

    async def close(self) -> None: ...
