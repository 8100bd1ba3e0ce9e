"""Request shapes of the native routes that are not batch settings (those are core's, in batch_spec.py;
addCallsToBatch's is core's too, in records.py): listings' query strings, the lifecycle verbs' optional
bodies, the admin bodies, the idempotency header and Twilio's callbacks. Each states its reasons in
the words the routes always answered with."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, model_validator
from pydantic_core import PydanticCustomError

from dialer.core.batch_spec import NAME_MAX, NAME_PATTERN, NAME_RULE
from dialer.core.compliance import PROFILES
from dialer.core.shapes import Reason, Shape
from dialer.core.statuses import RETRYABLE_OUTCOMES, BatchStatus, CallStatus
from dialer.services import calls, lifecycle, tenancy
from dialer.services.idempotency import MAX_KEY_LENGTH

OBJECT_ID = "^(?:[0-9a-fA-F]{24})?$"  # an id of ours, or nothing
BatchStatusName = Literal[tuple(s.value for s in BatchStatus)]
CallStatusName = Literal[tuple(s.value for s in CallStatus)]
OutcomeName = Literal[tuple(sorted(RETRYABLE_OUTCOMES))]


def _comma_separated(value: Any) -> Any:
    return [part for part in value.split(",") if part] if isinstance(value, str) else value


def _as_int(value: Any) -> Any:
    """Text read as Python's int() reads it (so "10.0" is refused, as the use cases refuse it)."""
    if not isinstance(value, str):
        return value
    try:
        return int(value)
    except ValueError:
        raise PydanticCustomError("int_parsing", "Input should be a valid integer") from None


def query_int(low: int, high: int) -> Any:
    """An integer parameter from low to high, read from its text as int() reads it."""
    return Annotated[int, Field(ge=low, le=high), BeforeValidator(_as_int)]


CallsLimit = query_int(1, calls.MAX_PAGE)
BatchesLimit = query_int(1, lifecycle.MAX_PAGE)


class Query(Shape):
    """A query string: values arrive as text ("20" is read as 20); unknown parameters are ignored."""

    model_config = ConfigDict(strict=False, extra="ignore")


class CallsQuery(Query):
    status: Annotated[list[CallStatusName], BeforeValidator(_comma_separated),
                      Field(description="only calls in these statuses (comma-separated)"),
                      Reason(f"unknown status; use {sorted(s.value for s in CallStatus)}")] = None
    limit: Annotated[CallsLimit,
                     Reason(f"limit must be from 1 to {calls.MAX_PAGE}", int_parsing="limit must be an integer",
                            int_type="limit must be an integer")] = calls.DEFAULT_PAGE
    cursor: Annotated[str, Field(pattern=OBJECT_ID, description="a previous page's nextCursor"),
                      Reason("cursor must be a callId from a previous page's nextCursor")] = None


class BatchesQuery(Query):
    status: Annotated[list[BatchStatusName], BeforeValidator(_comma_separated),
                      Field(description="only batches in these statuses (comma-separated)"),
                      Reason(f"unknown status; use {sorted(s.value for s in BatchStatus)}")] = None
    agentId: Annotated[str, Field(pattern=OBJECT_ID, description="only this agent's batches"),
                       Reason("agentId must be an agent's id")] = None
    limit: Annotated[BatchesLimit,
                     Reason(f"limit must be from 1 to {lifecycle.MAX_PAGE}", int_parsing="limit must be an integer",
                            int_type="limit must be an integer")] = lifecycle.DEFAULT_PAGE
    cursor: Annotated[str, Field(pattern=OBJECT_ID, description="a previous page's nextCursor"),
                      Reason("cursor must be a batchId from a previous page's nextCursor")] = None


class VerdictBody(Shape):
    not_an_object: ClassVar[str] = "body must be an object {successful?: true | false, optOut?: true, reason?: string}"
    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["successful"]},
                                                           {"required": ["optOut"], "properties": {"optOut": {"const": True}}}]})

    successful: Annotated[bool, Field(description="true: the call reached its goal (required unless optOut)"),
                          Reason("successful must be true or false")] = None
    optOut: Annotated[bool, Field(description="true: the callee asked not to be called again; the number joins "
                                              "the workspace's do-not-call list at once and its waiting calls "
                                              "are withdrawn"),
                      Reason("optOut must be true or false")] = False
    reason: Annotated[str | None, Field(max_length=500), Reason("reason must be a string of at most 500 characters")] = None


class CsvQuery(Query):
    dryRun: Annotated[bool, Field(description="true: check the file, write nothing (the console's preview)"),
                      Reason("dryRun must be true or false")] = False


class CsvFile(RootModel[str]):
    """A CSV file of contacts (the body as it is; read by dialer/core/contacts_csv.py)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        "phone_number,name,account_id\n+12125550101,Zoë Ünal,ACC-1\n(212) 555-0102,Bo Li,ACC-2\n"]})


class Options(Shape):
    """A lifecycle verb's optional body: nothing, or a JSON object of these fields."""

    unknown_fields: ClassVar[str] = "unknown fields: {names}; allowed: {allowed}"


class NoOptions(Options):
    pass


class CancelOptions(Options):
    hangUp: Annotated[bool, Field(description="also hang up the calls in flight through the provider"),
                      Reason("hangUp must be a bool")] = False


class RetryOptions(Options):
    outcomes: Annotated[list[OutcomeName], Field(min_length=1, description="default: failed, no_answer, busy, machine"),
                        Reason(f"outcomes must be a non-empty list of {sorted(RETRYABLE_OUTCOMES)}",
                               list_type="outcomes must be a list")] = None


class WorkspaceBody(Shape):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [{"name": "Acme"}]})
    not_an_object: ClassVar[str] = "body must be an object {name}"

    name: Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN),
                    Reason(f"name must be {NAME_RULE}")]


class RevokeKeyBody(Shape):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [{"apiKey": "dk_..."}]})
    not_an_object: ClassVar[str] = "body must be an object {apiKey}"

    apiKey: Annotated[str, Field(min_length=1, max_length=1000), Reason("apiKey must be the key to revoke")]


_CREDITS = (f"credits must be null (unlimited) or an integer from 0 to {tenancy.MAX_CREDITS}")


class WorkspaceSettingsBody(Shape):
    """A workspace's settings; each field optional (Tenancy.update_settings says what each does)."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={
        "examples": [{"credits": 5000, "normalizationAllowed": True}, {"addCredits": 1000}],
        "minProperties": 1, "not": {"required": ["credits", "addCredits"]}})
    not_an_object: ClassVar[str] = ("body must be an object with credits, addCredits, normalizationAllowed, "
                                    "defaultConcurrencyLimit, compliance or maxAttemptsPerNumberPerDay")
    unknown_fields: ClassVar[str] = "unknown fields: {names}"

    credits: Annotated[int | None, Field(ge=0, le=tenancy.MAX_CREDITS,
                                         description="the balance the enrollment face spends; null: unlimited"),
                       Reason(_CREDITS)] = None
    addCredits: Annotated[int, Field(ge=-tenancy.MAX_CREDITS, le=tenancy.MAX_CREDITS,
                                     description="added to a set balance (negative takes away, never below 0)"),
                          Reason(f"addCredits must be an integer from {-tenancy.MAX_CREDITS} to {tenancy.MAX_CREDITS}")] = None
    normalizationAllowed: Annotated[bool, Field(description="the enrollment face's normalizeFields applies"),
                                    Reason("normalizationAllowed must be true or false")] = None
    defaultConcurrencyLimit: Annotated[int | None, Field(ge=1, le=1000, description="of its enrollment batches"),
                                       Reason("defaultConcurrencyLimit must be null or an integer from 1 to 1000")] = None
    compliance: Annotated[Literal[PROFILES] | None,
                          Field(description="the compliance profile of its batches without their own; null: none"),
                          Reason(f"compliance must be one of {', '.join(PROFILES)} (or null: none)")] = None
    maxAttemptsPerNumberPerDay: Annotated[
        int | None, Field(ge=1, le=tenancy.MAX_ATTEMPTS_PER_DAY,
                          description="attempts per number per rolling 24 h across its batches; null: no cap"),
        Reason(f"maxAttemptsPerNumberPerDay must be null or an integer from 1 to {tenancy.MAX_ATTEMPTS_PER_DAY}")] = None

    @model_validator(mode="before")
    @classmethod
    def _one_change_at_least(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            raise PydanticCustomError("too_short", cls.not_an_object)
        if isinstance(data, dict) and "credits" in data and "addCredits" in data:
            raise PydanticCustomError("value_error", "give credits or addCredits, not both")
        return data


_URL = r"^(?:https?|wss?)://"


class AgentBody(Shape):
    """A voice agent: what its calls need, the caller IDs it owns and where an answered call goes."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [
        {"name": "sales", "requiredVariables": ["account_id"], "callingNumbers": ["+14155550100"],
         "timezones": ["America/Los_Angeles"], "streamUrl": "wss://agent.example/stream"}]})
    not_an_object: ClassVar[str] = "agent must be an object"

    name: Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN),
                    Reason(f"agent name must be {NAME_RULE}")]
    requiredVariables: Annotated[list[Annotated[str, Field(min_length=1)]],
                                 Field(description="variables every record must carry"),
                                 Reason("requiredVariables must be a list of non-empty strings")] = []
    callingNumbers: Annotated[list[str], Field(description="caller IDs; each belongs to one agent only"),
                              Reason("callingNumbers must be a list of phone numbers")] = []
    timezones: Annotated[list[str] | str, Field(description="IANA zones; the first is the default zone"),
                         Reason("timezones must be a list of IANA time zone names")] = []
    twimlUrl: Annotated[str | None, Field(pattern=_URL, description="TwiML an answered call is redirected to"),
                        Reason("twimlUrl must be an http(s) or ws(s) URL")] = None
    streamUrl: Annotated[str | None, Field(pattern=_URL, description="media stream an answered call connects to"),
                         Reason("streamUrl must be an http(s) or ws(s) URL")] = None


class IdempotencyHeaders(BaseModel):
    """Read by @idempotent (dialer/api/idempotent.py, which adds it to a route's document) and by the enrollment
    face; their refusals word what is wrong with a key."""

    idempotency_key: Annotated[str, Field(
        alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_LENGTH,
        description="printable ASCII; a retry with the same key gets the first answer and nothing is done again "
                    "(kept 24 h)")] = None


class TwilioQuery(Query):
    callId: Annotated[str, Field(description="our call id, set by the dispatcher in the callback URL")] = None
    batchId: Annotated[str, Field(description="its batch")] = None
    attempt: Annotated[str, Field(description="the attempt the callback belongs to")] = None


class TwilioForm(BaseModel):
    """Twilio's callback parameters that are read (every other one is accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    CallSid: str = None
    CallStatus: Annotated[str, Field(examples=["completed"], description=(
        "queued, initiated, ringing, in-progress, completed, busy, no-answer, failed, canceled"))] = None
    CallDuration: Annotated[str, Field(description="seconds, when completed")] = None
    AnsweredBy: Annotated[str, Field(description="human or machine_*, with machine detection")] = None
    ErrorMessage: str = None
