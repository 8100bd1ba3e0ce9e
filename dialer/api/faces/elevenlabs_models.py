"""The ElevenLabs face's shapes as models: the submit request as the vendor's schema has it (every field
the SDK can send, nothing else; validated with it, pydantic's errors are the vendor's 422 `detail`),
the query of the listing, and the objects it answers (BatchCall, recipients, errors) for /openapi.json.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dialer.api.documented import Reply, Scheme
from dialer.api.requests import OBJECT_ID, query_int
from dialer.core.batch_spec import EARLIEST, LATEST, MAX_CONCURRENCY, NAME_MAX, NAME_PATTERN
from dialer.core.shapes import Shape

XI_API_KEY = Scheme("XiApiKey", {"type": "apiKey", "in": "header", "name": "xi-api-key",
                                 "description": "The workspace API key, as the ElevenLabs SDK sends it."})
MAX_LIST = 100
BatchStatusName = Literal["pending", "in_progress", "completed", "cancelled", "failed"]
RecipientStatusName = Literal["pending", "dispatched", "initiated", "in_progress", "completed", "voicemail",
                              "failed", "cancelled"]
Limit = query_int(1, MAX_LIST)
NonEmpty = Annotated[str, Field(min_length=1, pattern=r"\S")]
# The face takes no value the native API refuses for the same batch: a name by createBatch's rule (NAME_MAX
# characters, no control characters), a start in scheduledAt's years.
EARLIEST_UNIX, LATEST_UNIX = int(EARLIEST.timestamp()), int(LATEST.timestamp())


class ClientData(Shape):
    """conversation_initiation_client_data: `dynamic_variables` become the call's variables; the rest is
    kept and handed to the agent with the call."""

    model_config = ConfigDict(strict=True, extra="allow")

    dynamic_variables: dict[str, Any] | None = None


class Recipient(Shape):
    id: str | None = None
    phone_number: NonEmpty
    whatsapp_user_id: str | None = None
    conversation_initiation_client_data: ClientData | None = None


class TelephonyCallConfig(Shape):
    ringing_timeout_secs: Annotated[int | None, Field(ge=5, le=600)] = None
    twilio_call_recording_enabled: bool | None = None
    twilio_machine_detection: dict[str, Any] | None = None


class SubmitBody(Shape):
    """A batch calling job: `agent_id` is our agentId, `agent_phone_number_id` one of its calling numbers
    (our id for it, or the number in E.164)."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [
        {"call_name": "Survey", "agent_id": "64e5f12345abcdef98765432",
         "recipients": [{"phone_number": "+12125550100",
                         "conversation_initiation_client_data": {"dynamic_variables": {"name": "Sarah"}}}]}]})

    call_name: Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN,
                                    description="the batch's name (our `name`)")]
    agent_id: NonEmpty
    recipients: Annotated[list[Recipient], Field(min_length=1, description="at most DIALER_MAX_RECORDS")]
    scheduled_time_unix: Annotated[int | None, Field(
        ge=EARLIEST_UNIX, le=LATEST_UNIX,
        description=f"when to start, in Unix seconds ({EARLIEST.year} to {LATEST.year - 1}, as our "
                    f"scheduledAt); absent or past: now")] = None
    agent_phone_number_id: str | None = None
    whatsapp_params: dict[str, Any] | None = None
    timezone: Annotated[str | None, Field(description="IANA zone for numbers whose own zone is not known")] = None
    branch_id: str | None = None
    environment: str | None = None
    telephony_call_config: TelephonyCallConfig | None = None
    target_concurrency_limit: Annotated[int | None, Field(ge=1, le=MAX_CONCURRENCY)] = None


class ListQuery(Shape):
    model_config = ConfigDict(strict=False, extra="ignore")

    limit: Limit = 30
    last_doc: Annotated[str, Field(pattern=OBJECT_ID, description="a page's next_doc")] = None
    agent_id: Annotated[str, Field(description="only this agent's batch calls")] = None


class TelephonyView(BaseModel):
    ringing_timeout_secs: int


class BatchCall(BaseModel):
    id: str
    phone_number_id: str | None
    phone_provider: Literal["twilio"] | None
    whatsapp_params: dict[str, Any] | None
    name: str
    agent_id: str
    branch_id: str | None
    environment: str | None
    created_at_unix: int
    scheduled_time_unix: int
    timezone: str | None
    total_calls_dispatched: int
    total_calls_scheduled: int
    total_calls_finished: int
    last_updated_at_unix: int
    status: BatchStatusName
    retry_count: int
    telephony_call_config: TelephonyView
    target_concurrency_limit: int | None
    agent_name: str
    branch_name: str | None


class RecipientView(BaseModel):
    id: str
    phone_number: str
    whatsapp_user_id: str | None
    status: RecipientStatusName
    created_at_unix: int | None
    updated_at_unix: int | None
    conversation_id: str | None
    conversation_initiation_client_data: dict[str, Any]
    reason: Annotated[str | None, Field(description="ours, beyond the vendor's fields: the rule that cancelled the "
                                                    "recipient (e.g. \"dnc: opt-out 2026-12-05\")")] = None


class BatchCallDetail(BatchCall):
    recipients: list[RecipientView]


class BatchCallPage(BaseModel):
    batch_calls: list[BatchCall]
    next_doc: str | None
    has_more: bool


class ErrorDetail(BaseModel):
    status: str
    message: str


class VendorError(BaseModel):
    detail: ErrorDetail


class InvalidItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class HTTPValidationError(BaseModel):
    detail: list[InvalidItem]


def vendor_errors(*codes: int) -> dict[int, Reply]:
    says = {401: "missing or invalid xi-api-key", 404: "no such batch call or agent (another workspace's included)",
            409: "the batch's status forbids this", 503: "the database failed; retry"}
    replies = {code: Reply(VendorError, says[code]) for code in codes if code != 422}
    if 422 in codes:
        replies[422] = Reply(HTTPValidationError, "invalid input: each problem with its location")
    return replies
