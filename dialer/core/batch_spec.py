"""Batch settings: the shapes of what `createBatch` and `PATCH /api/call/batches/{batchId}` are given
(CreateBatchBody, UpdateBatchBody: types, bounds, enums, unknown fields refused; the API validates
bodies with them and documents them), and their meaning: numbers, zones, windows, times and defaults
turned into the stored settings (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from dialer.core.clock import as_utc
from dialer.core.compliance import PROFILES
from dialer.core.phones import PhoneError, PhoneNormaliser
from dialer.core.shapes import Reason, Shape
from dialer.core.statuses import RETRYABLE_OUTCOMES
from dialer.core.windows import DAY_NAMES, CallingWindow, WindowError, valid_zone

MAX_CONCURRENCY = 1000
DEFAULT_CONCURRENCY = 10
DEFAULT_RINGING_TIMEOUT = 60
MAX_RETRY_DELAY = 7 * 86400
DEFAULT_RETRY = {"maxAttempts": 1, "delaySeconds": 600, "on": ["busy", "no_answer"]}
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
UPDATABLE_FIELDS = ("name", "concurrencyLimit", "callingWindow", "retry", "ringingTimeoutSeconds", "compliance",
                    "stateField")

_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]"
# Day names are read case-insensitively ("Mon" is mon); JSON Schema patterns have no flags.
_DAY = "^(?:" + "|".join("".join(f"[{c}{c.upper()}]" for c in day) for day in DAY_NAMES) + ")$"
Outcome = Literal[tuple(sorted(RETRYABLE_OUTCOMES))]
Concurrency = Annotated[int, Field(ge=1, le=MAX_CONCURRENCY, description="calls of the batch in flight at most"),
                        Reason(f"concurrencyLimit must be an integer from 1 to {MAX_CONCURRENCY}")]
RingingTimeout = Annotated[int, Field(ge=5, le=600, description="seconds a call may ring before it is no_answer"),
                           Reason("ringingTimeoutSeconds must be an integer from 5 to 600")]
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Compliance = Annotated[Literal[PROFILES] | None,
                       Field(description="the calling rules narrowing the window (docs/compliance.md): none, "
                                         "us-federal or us-states; null: the workspace's (else none)"),
                       Reason(f"compliance must be one of {', '.join(PROFILES)} (or null: the workspace's)")]
StateField = Annotated[str | None, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                                         description="the record variable giving the callee's state for "
                                                     "us-states (default `state`)"),
                       Reason("stateField must be a variable name (letters, digits, _ . -), at most 64 characters")]
_WINDOW_REASON = Reason("callingWindow: calling window must be an object with optional 'start', 'end' and 'days'")
_RETRY_REASON = Reason("retry must be an object {maxAttempts, delaySeconds, on}")


class WindowShape(Shape):
    """When calls may start, in each callee's local time: from `start` to `end` (24:00 = end of day;
    start > end crosses midnight) on the `days` it opens. Default 08:00-21:00 every day."""

    unknown_fields: ClassVar[str] = "callingWindow: unknown calling window field(s) {names}; allowed: start, end, days"

    start: Annotated[str | None, Field(pattern=f"^{_TIME}$", examples=["09:00"], description="HH:MM, default 08:00"),
                     Reason("callingWindow: calling window start must be a string 'HH:MM' from 00:00 to 23:59")] = None
    end: Annotated[str | None, Field(pattern=f"^(?:{_TIME}|24:00)$", examples=["17:00"],
                                     description="HH:MM or 24:00, default 21:00"),
                   Reason("callingWindow: calling window end must be a string 'HH:MM' from 00:00 to 24:00")] = None
    days: Annotated[Annotated[list[Annotated[str, Field(pattern=_DAY)]], Field(min_length=1)] | None,
                    Field(description=f"the days it opens on: {', '.join(DAY_NAMES)} (any case); default every day"),
                    Reason(f"callingWindow: calling window days must be a non-empty list of day names: "
                           f"{', '.join(DAY_NAMES)}")] = None


class RetryShape(Shape):
    """Calls whose outcome is in `on` are dialled again `delaySeconds` later (inside the window), up to
    `maxAttempts` attempts in all. Default: no retry."""

    unknown_fields: ClassVar[str] = "retry has unknown fields: {names}"

    maxAttempts: Annotated[int, Field(ge=1, le=20, description="attempts in all; 1 = no retry"),
                           Reason("retry.maxAttempts must be an integer from 1 to 20 (1 = no retry)")] = \
        DEFAULT_RETRY["maxAttempts"]
    delaySeconds: Annotated[float, Field(ge=0, le=MAX_RETRY_DELAY),
                            Reason(f"retry.delaySeconds must be a number from 0 to {MAX_RETRY_DELAY}")] = \
        DEFAULT_RETRY["delaySeconds"]
    on: Annotated[list[Outcome], Reason(f"retry.on must be a list of outcomes from {sorted(RETRYABLE_OUTCOMES)}")] = \
        DEFAULT_RETRY["on"]


# A name (of a batch, workspace or agent) as people read it in lists: 1-200 characters, not all spaces, and no
# control characters (a NUL or a bell kept in a name, a trailing newline dropped, were accepted before).
NAME_MAX = 200
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
NAME_RULE = f"a string of 1 to {NAME_MAX} characters, not all spaces, without control characters"


class CreateBatchBody(Shape):
    """A new batch: its agent (`agentId`, or found from `callingNumbers`) and its settings."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["agentId"], "properties": {"agentId": {"type": "string"}}},
                  {"required": ["callingNumbers"], "properties": {"callingNumbers": {"minItems": 1}}}],
        "examples": [{"name": "demo", "callingNumbers": ["+15005550006"], "concurrencyLimit": 10}]})

    name: Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN),
                    Reason(f"name is required: {NAME_RULE}")]
    agentId: Annotated[str | None, Field(description="the agent (GET /api/agents); default: the one owning "
                                                     "callingNumbers"), Reason("agentId must be a string")] = None
    callingNumbers: Annotated[list[str], Field(description="caller IDs, owned by the agent; default: all of its own"),
                              Reason("callingNumbers must be a list of phone numbers")] = []
    concurrencyLimit: Concurrency = DEFAULT_CONCURRENCY
    callingWindow: Annotated[WindowShape | None, _WINDOW_REASON] = None
    timezone: Annotated[str | None, Field(description="IANA zone for numbers whose own zone is not known",
                                          examples=["America/New_York"]),
                        Reason("timezone must be an IANA time zone name")] = None
    scheduledAt: Annotated[DateTime | None, Field(description="ISO 8601 with an offset; the batch starts then"),
                           Reason("scheduledAt must be an ISO 8601 date-time string")] = None
    retry: Annotated[RetryShape | None, _RETRY_REASON] = None
    ringingTimeoutSeconds: RingingTimeout = DEFAULT_RINGING_TIMEOUT
    compliance: Compliance = None
    stateField: StateField = None

    @model_validator(mode="after")
    def _an_agent(self) -> "CreateBatchBody":
        if self.agentId is None and not self.callingNumbers:
            raise PydanticCustomError("missing", "give agentId or callingNumbers")
        return self


class UpdateBatchBody(Shape):
    """Some of a batch's changeable settings; the others stay as they are."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={
        "minProperties": 1, "examples": [{"concurrencyLimit": 25}]})
    not_an_object: ClassVar[str] = f"body must be a JSON object with some of {list(UPDATABLE_FIELDS)}"
    unknown_fields: ClassVar[str] = "unknown or unchangeable fields: {names}; a batch's {fields} can change"

    # Absent = unchanged (a null is refused, but for callingWindow and retry: back to the defaults).
    name: Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN),
                    Reason(f"name must be {NAME_RULE}")] = None
    concurrencyLimit: Concurrency = None
    callingWindow: Annotated[WindowShape | None, _WINDOW_REASON] = None
    retry: Annotated[RetryShape | None, _RETRY_REASON] = None
    ringingTimeoutSeconds: RingingTimeout = None
    compliance: Compliance = None  # null: back to the workspace's
    stateField: StateField = None  # null: back to `state`

    @model_validator(mode="before")
    @classmethod
    def _something(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            raise PydanticCustomError("too_short", cls.not_an_object)
        return data


class BatchSpecError(ValueError):
    """A batch setting is wrong; the message names the field and the reason."""


@dataclass(frozen=True)
class BatchSpec:
    name: str
    agent_id: str | None
    calling_numbers: list[str]
    concurrency_limit: int
    window: CallingWindow
    timezone: str | None
    scheduled_at: dt.datetime | None
    retry: dict
    ringing_timeout: int
    compliance: str | None = None
    state_field: str | None = None


def parse_datetime(value: Any, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise BatchSpecError(f"{name} must be an ISO 8601 date-time string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BatchSpecError(f"{name} must be an ISO 8601 date-time, e.g. 2026-11-23T09:00:00Z") from None
    if parsed.tzinfo is None:
        raise BatchSpecError(f"{name} must include a UTC offset or Z")
    try:
        value = as_utc(parsed)
    except OverflowError:
        value = None
    if value is None or not EARLIEST <= value <= LATEST:
        raise BatchSpecError(f"{name} must be between {EARLIEST.year} and {LATEST.year - 1}")
    return value


def parse_retry(value: dict | None) -> dict:
    """A retry policy (RetryShape) over the defaults."""
    merged = {**DEFAULT_RETRY, **(value or {})}
    return {"maxAttempts": merged["maxAttempts"], "delaySeconds": merged["delaySeconds"],
            "on": sorted(set(merged["on"]))}


def _window(value: dict | None) -> CallingWindow:
    try:
        return CallingWindow.parse(value)
    except WindowError as exc:
        raise BatchSpecError(f"callingWindow: {exc}") from None


def parse_batch_spec(body: dict, phones: PhoneNormaliser) -> BatchSpec:
    """The settings of a createBatch body that fits CreateBatchBody: numbers, zone, window and time read."""
    try:
        numbers = phones.e164_each(body.get("callingNumbers", []))
    except PhoneError as exc:
        raise BatchSpecError(f"callingNumbers: {exc}") from None
    agent_id = body.get("agentId")  # or numbers: the shape asks for one of them
    window = _window(body.get("callingWindow"))
    zone = body.get("timezone")
    if zone is not None and not valid_zone(zone):
        raise BatchSpecError(f"timezone: unknown IANA time zone {zone!r}")
    scheduled = body.get("scheduledAt")
    return BatchSpec(
        name=body["name"].strip(),
        agent_id=agent_id,
        calling_numbers=sorted(set(numbers)),
        concurrency_limit=body.get("concurrencyLimit", DEFAULT_CONCURRENCY),
        window=window,
        timezone=zone,
        scheduled_at=None if scheduled is None else parse_datetime(scheduled, "scheduledAt"),
        retry=parse_retry(body.get("retry")),
        ringing_timeout=body.get("ringingTimeoutSeconds", DEFAULT_RINGING_TIMEOUT),
        compliance=body.get("compliance"),
        state_field=body.get("stateField"),
    )


def parse_batch_update(body: dict) -> dict[str, Any]:
    """The stored fields a PATCH body (fitting UpdateBatchBody) sets."""
    changes: dict[str, Any] = {name: body[name] for name in ("concurrencyLimit", "ringingTimeoutSeconds",
                                                             "compliance", "stateField") if name in body}
    if "name" in body:
        changes["name"] = body["name"].strip()
    if "callingWindow" in body:
        changes["callingWindow"] = _window(body["callingWindow"]).to_doc()
    if "retry" in body:
        changes["retry"] = parse_retry(body["retry"])
    return changes
