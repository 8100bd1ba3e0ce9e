"""What the native routes answer, as models for the OpenAPI document: the envelope
`{message, status, code, errorMessage, data}` around each route's `data`, and the error envelopes.

These describe the views the use cases build (services/batches.py batch_view, services/calls.py
call_view, services/tenancy.py agent_view ...); the schemathesis test (tests/test_schemathesis.py)
checks every answer of a live server against them, and their schemas name every field (`View`:
additionalProperties false), so a view that grows a field nobody documented, or changes a type, fails
the suite.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from dialer.api.documented import Reply
from dialer.api.requests import BatchStatusName, CallStatusName, OutcomeName

DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class View(BaseModel):
    """An answer's object: its schema names every field it has (additionalProperties false), so the
    schemathesis test fails on a view that grows a field nobody documented."""

    model_config = ConfigDict(extra="forbid")


class EnvelopeBase(View):
    message: str
    status: Annotated[bool, Field(description="true when everything the request asked was done")]
    code: Annotated[int, Field(description="the HTTP status")]
    errorMessage: Annotated[str, Field(description="empty on success; the reason otherwise")]


def envelope(data: Any, name: str) -> type[BaseModel]:
    """The envelope whose `data` is `data` (a model or a type), named `name` in the document."""
    return create_model(name, __base__=EnvelopeBase, data=(data, ...))


ErrorEnvelope = envelope(dict[str, Any], "ErrorEnvelope")
ErrorEnvelope.__doc__ = "A refusal: `status` false, `errorMessage` the reason, `data` details when there are any."

_ERRORS = {
    400: "bad input: errorMessage says what and where",
    403: "the key is missing or invalid, or does not own the object",
    404: "no such object",
    409: "the batch's status forbids this (data.status names it)",
    413: "the body is larger than DIALER_MAX_BODY_BYTES",
    503: "the database failed; nothing was written, retry",
}


REPLAY_HEADER = {"Idempotent-Replay": {"description": "true: the stored answer to the first request with this "
                                                     "Idempotency-Key (nothing was done again)",
                                      "schema": {"type": "string", "enum": ["true"]}}}


def errors(*codes: int) -> dict[int, Reply]:
    return {code: Reply(ErrorEnvelope, _ERRORS[code]) for code in codes}


class WindowView(View):
    start: str
    end: str
    days: list[str]


class RetryView(View):
    maxAttempts: int
    delaySeconds: float
    on: list[OutcomeName]


class Counters(View):
    """Kept by the calls' transitions: reading them costs the same for ten calls or a million."""

    scheduled: int
    dispatched: int
    attempts: int
    finished: int
    waiting: int
    inFlight: int
    byStatus: dict[CallStatusName, int]
    byOutcome: dict[str, int]


class BatchView(View):
    batchId: str
    name: str
    agentId: str
    status: BatchStatusName
    callingNumbers: list[str]
    concurrencyLimit: int
    callingWindow: WindowView
    timezone: str | None
    scheduledAt: DateTime | None
    retry: RetryView
    ringingTimeoutSeconds: int
    retryCount: int
    compliance: Annotated[Literal["none", "us-federal", "us-states"] | None,
                          Field(description="its own compliance profile; null: the workspace's")] = None
    stateField: Annotated[str | None, Field(description="the variable giving the callee's state; null: state")] = None
    createdAt: DateTime
    updatedAt: DateTime
    counters: Counters | None = None
    internalId: Annotated[str, Field(description="a face's batch (batchId its UUID): our id, which its calls' "
                                                 "batchId holds")] = None
    source: Annotated[Literal["enrollment"], Field(description="the face that created it")] = None


class BatchesPage(View):
    batches: list[BatchView]
    count: int
    nextCursor: str | None


class DeletedBatch(View):
    batchId: str


class InFlightNumber(View):
    phoneNumber: str
    callId: str
    status: CallStatusName


class FailedChunk(View):
    chunkNum: int
    error: str


class RecordError(View):
    index: int
    phoneNumber: str | None
    reason: str


class CallsAdded(View):
    added: Annotated[int, Field(description="calls inserted or updated; one callId each")]
    callIds: list[str]
    inserted: int
    updated: int
    duplicatesCollapsed: Annotated[int, Field(description="records of this request naming a number again")]
    inFlight: Annotated[list[InFlightNumber], Field(description="numbers already in a call, not re-enqueued")]
    suppressed: Annotated[list[RecordError], Field(description="records not enqueued: their number is on the "
                                                               "workspace's do-not-call list (reason: the rule)")]
    batchStatus: BatchStatusName
    failedChunks: Annotated[list[FailedChunk], Field(description="with 207 and 503: chunks not written")] = None


class RecordErrors(View):
    invalidRecords: int
    errors: Annotated[list[RecordError], Field(description="the first 50")]
    errorsTruncated: bool


class AddCallsRefusal(EnvelopeBase):
    """A refused addCallsToBatch: with invalid records, `data` names them (nothing was written)."""

    data: RecordErrors | dict[str, Any]


class CsvRejectedRow(View):
    line: Annotated[int, Field(description="the file's line (the header is line 1)")]
    phoneNumber: str | None
    reason: str


class CsvImport(View):
    dryRun: bool
    rows: int
    accepted: int
    rejectedCount: int
    rejected: Annotated[list[CsvRejectedRow], Field(description="the first 1,000")]
    rejectedTruncated: bool
    duplicatesCollapsed: int
    added: int
    inserted: int = None
    updated: int = None
    batchStatus: BatchStatusName = None
    inFlightCount: int = None
    inFlight: list[InFlightNumber] = None
    suppressedCount: int = None
    suppressed: Annotated[list[CsvRejectedRow], Field(description="rows on the do-not-call list (the first 1,000)")] = None
    failedChunks: list[FailedChunk] = None


class HistoryEntry(BaseModel):
    at: DateTime | None
    event: str
    rule: Annotated[str, Field(description="the rule that moved or stopped the call (e.g. \"dnc: opt-out "
                                           "2026-12-05\")")] = None


class ChainGroup(View):
    key: str
    seq: Annotated[int, Field(description="its place in the group (0 is called first)")]
    policy: Annotated[Literal["untilSuccess", "each"], Field(description="untilSuccess: groupByField; each: "
                                                                         "allowDuplicates' repeated numbers")]


class Verdict(View):
    successful: bool = None
    at: DateTime | None
    optOut: Annotated[bool, Field(description="the callee asked not to be called again")] = None
    reason: str = None


class CallView(View):
    callId: str
    batchId: str
    phoneNumber: Annotated[str, Field(description="E.164")]
    extension: str | None
    input: Annotated[dict[str, Any], Field(description="the record's phoneNumber as sent")]
    variables: dict[str, Any]
    timezones: list[str]
    zoneSource: Literal["record", "number", "batch", "agent", "multi"] | None
    status: CallStatusName
    attempts: int
    nextAttemptAt: DateTime | None
    providerCallId: str | None
    outcome: str | None
    duration: Annotated[int | None, Field(description="the last attempt's length in seconds, once it ended")]
    answeredBy: Annotated[str | None, Field(description="who answered the last attempt, as the provider told "
                                                        "(human, machine_start, ...)")]
    history: list[HistoryEntry]
    createdAt: DateTime | None
    updatedAt: DateTime | None
    contact: Annotated[dict[str, Any], Field(description="an enrolled contact's own fields (index, name, "
                                                         "toEmailAddress, scheduledAt)")] = None
    group: Annotated[ChainGroup, Field(description="its contact-chaining group")] = None
    verdict: Annotated[Verdict, Field(description="the agent's verdict on the call")] = None


class CallsPage(View):
    calls: list[CallView]
    count: int
    nextCursor: str | None


class AgentView(View):
    agentId: str
    name: str
    requiredVariables: list[str]
    callingNumbers: list[str]
    timezones: list[str]
    twimlUrl: str | None
    streamUrl: str | None


class Agents(View):
    agents: list[AgentView]


class Health(View):
    ok: bool
    store: Annotated[str, Field(description="sqlite (embedded) or mongodb")]


class NewWorkspace(View):
    workspaceId: str
    name: str
    apiKey: Annotated[str, Field(description="shown once; stored hashed")]


class WorkspaceView(View):
    workspaceId: str
    name: str
    credits: Annotated[int | None, Field(description="null: unlimited")]
    normalizationAllowed: bool
    defaultConcurrencyLimit: Annotated[int | None, Field(description="of its enrollment batches; null: 10")]
    compliance: Annotated[Literal["none", "us-federal", "us-states"] | None,
                          Field(description="the compliance profile of its batches without their own; null: none")] = None
    maxAttemptsPerNumberPerDay: Annotated[int | None, Field(description="attempts per number per rolling 24 h, "
                                                                        "across its batches; null: no cap")] = None


class Workspaces(View):
    workspaces: list[WorkspaceView]


class RevokedKey(View):
    workspaceId: str
    revoked: Annotated[bool, Field(description="always true: the key no longer opens anything")]
    hint: Annotated[str, Field(description="the key's first characters, to tell which one it was")]


class NewKey(View):
    workspaceId: str
    apiKey: Annotated[str, Field(description="shown once; stored hashed")]
