"""The partner webhook routes' shapes: request bodies and queries (checked before a handler runs) and the
views they answer with (documented in /openapi.json, checked by the schemathesis test)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from dialer.api.replies import DateTime, View
from dialer.api.requests import Query, query_int
from dialer.core.shapes import Reason, Shape
from dialer.core.webhook_events import EVENT_TYPES
from dialer.services import webhooks
from dialer.services.webhook_urls import MAX_URL_LENGTH

EventType = Literal[EVENT_TYPES]
EVENTS_REASON = f"events must be a list of event types: {list(EVENT_TYPES)}"
URL = Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH, description="https://, public address"),
                Reason("url must be an https:// URL")]
EVENTS = Annotated[list[EventType], Field(description="the event types sent (empty or absent: all)"),
                   Reason(EVENTS_REASON)]
DESCRIPTION = Annotated[str, Field(max_length=500), Reason("description must be a string of at most 500 characters")]
ID = "^[0-9a-fA-F]{24}$"


class EndpointBody(Shape):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [
        {"url": "https://partner.example/hooks", "events": ["call.completed", "batch.completed"]}]})
    not_an_object: ClassVar[str] = "body must be an object {url, events?, description?}"

    url: URL
    events: EVENTS = []
    description: DESCRIPTION = ""


class EndpointUpdateBody(Shape):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={
        "examples": [{"disabled": False}, {"events": []}], "minProperties": 1})
    not_an_object: ClassVar[str] = "body must be an object with url, events, description or disabled"

    url: URL = None
    events: EVENTS = None
    description: DESCRIPTION = None
    disabled: Annotated[bool, Reason("disabled must be true or false")] = None

    @model_validator(mode="before")
    @classmethod
    def _something(cls, data: Any) -> Any:  # {} changes nothing: refused, as a batch's or workspace's PATCH
        if isinstance(data, dict) and not data:
            raise PydanticCustomError("too_short", cls.not_an_object)
        return data


class RecoverBody(Shape):
    model_config = ConfigDict(strict=False, extra="forbid", json_schema_extra={
        "examples": [{"since": "2026-11-23T15:00:00Z"}]})
    not_an_object: ClassVar[str] = "body must be an object {since: an ISO 8601 time}"

    since: Annotated[DateTime, Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$"),
                     Reason("since must be an ISO 8601 time with its offset, e.g. 2026-11-23T15:00:00Z")]


class MessagesQuery(Query):
    endpointId: Annotated[str, Field(pattern=ID, description="only this endpoint's messages"),
                          Reason("endpointId must be an endpoint's id")] = None
    status: Annotated[Literal[webhooks.MESSAGE_STATUSES], Field(description="only messages in this status"),
                      Reason(f"status must be one of {list(webhooks.MESSAGE_STATUSES)}")] = None
    type: Annotated[EventType, Field(description="only messages of this event type"),
                    Reason(f"type must be one of {list(EVENT_TYPES)}")] = None
    limit: Annotated[query_int(1, webhooks.MAX_PAGE), Reason(f"limit must be from 1 to {webhooks.MAX_PAGE}")] = \
        webhooks.DEFAULT_PAGE
    cursor: Annotated[str, Field(pattern=r"^msg_[0-9a-f_]{1,120}$", description="a previous page's nextCursor"),
                      Reason("cursor must be a messageId from a previous page's nextCursor")] = None


class EndpointView(View):
    endpointId: str
    url: str
    events: list[str]
    description: str
    disabled: bool
    disabledReason: str | None
    failingSince: DateTime | None
    createdAt: DateTime | None
    updatedAt: DateTime | None
    secret: Annotated[str, Field(description="whsec_...: shown on creation and rotation only")] = None


class DeletedEndpoint(View):
    endpointId: str


class Endpoints(View):
    endpoints: list[EndpointView]


class Attempt(View):
    at: DateTime | None
    ms: Annotated[int, Field(description="how long the attempt took")]
    httpStatus: Annotated[int, Field(description="the receiver's HTTP status")] = None
    error: Annotated[str, Field(description="why no answer was read (timeout, connection, refused URL)")] = None
    response: Annotated[str, Field(description="the first 1 KB of the answer")] = None
    retryAfterSeconds: Annotated[int, Field(description="the receiver's Retry-After: the next attempt waits at "
                                                        "least this long (at most a day)")] = None
    aborted: Annotated[bool, Field(description="the receiver answered `webhook-delivery: abort-message`: "
                                               "no further attempt")] = None


class MessageView(View):
    messageId: Annotated[str, Field(description="the webhook-id header: the same on every attempt")]
    endpointId: str
    eventId: str
    type: str
    status: Literal[webhooks.MESSAGE_STATUSES]
    payload: Annotated[dict[str, Any], Field(description="the body sent: {type, timestamp, data}")]
    createdAt: DateTime | None
    nextAttemptAt: DateTime | None
    attempts: list[Attempt]


class MessagesPage(View):
    messages: list[MessageView]
    nextCursor: str | None


class Recovered(View):
    recovered: Annotated[int, Field(description="failed messages sent again")]
