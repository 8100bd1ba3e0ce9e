"""The contact-enrollment face (seeds 000/001): `POST /api/v1/agents/{agentId}/schedule/sequences`.

A partner that schedules contacts through that vendor's API points its code at us and keeps working:
`x-api-key` (or `Authorization: Bearer`), optional `Idempotency-Key`, the vendor's request body, and its
answer `202 {batchId, total, accepted, rejected[{index, phoneNumber, error}]}` (plus `message` when
`normalizeFields` was ignored). Errors use the vendor's plain shape
`{"statusCode": 400, "error": "Bad Request", "message": "..."}` (400 request shape or no contact passed,
with `rejected`; 401 key; 402 credits, with `required` / `available`; 404 agent; 413 body; 422
misconfigured agent; 503 database). Everything else is the use case's (dialer/services/enrollment.py);
the batch it creates is read back by its UUID through the native `GET /api/call/batches/{batchId}`.
"""

from __future__ import annotations

import functools
from http import HTTPStatus
from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from dialer.api.documented import API_KEY, BEARER_KEY, Reply, documented
from dialer.api.replies import REPLAY_HEADER
from dialer.api.requests import IdempotencyHeaders
from dialer.core.enrollment import EnrollBody

from dialer.api.appkeys import ENROLLMENT, TENANCY
from dialer.api.auth import presented_key
from dialer.services.errors import Refused
from dialer.services.tenancy import Principal

PATH = "/api/v1/agents/{agentId}/schedule/sequences"
PREFIX = "/api/v1/"
MAX_BODY_BYTES = 8 * 1024 * 1024  # 1,000 contacts; the intake must fit one 16 MiB MongoDB document


def error_response(code: int, message: str, extra: Any = None) -> web.Response:
    """The vendor's error shape (also for what aiohttp itself refuses on this path: 404, 405)."""
    body = {"statusCode": code, "error": HTTPStatus(code).phrase, "message": message, **(extra or {})}
    return web.Response(body=orjson.dumps(body), status=code, content_type="application/json")


def face(handler):
    """The vendor's error shape for whatever a handler of this face refuses."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as exc:
            return error_response(exc.code, exc.error, exc.data if isinstance(exc.data, dict) else None)
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, f"Request body is larger than {MAX_BODY_BYTES} bytes; send at most 1000 contacts.")

    return wrapped


async def _principal(request: web.Request) -> Principal:
    key = presented_key(request)
    principal = await request.app[TENANCY].authenticate(key) if key else None
    if principal is None:
        raise Refused(401, "Unauthorized", "Missing or invalid x-api-key.")
    return principal


class Rejection(BaseModel):
    index: Annotated[int, Field(description="the contact's position in `contacts`")]
    phoneNumber: Annotated[str | None, Field(description="as sent (at most 64 characters)")]
    error: str


class EnrollAnswer(BaseModel):
    """Batch accepted for asynchronous processing; valid contacts are scheduled even when others fail."""

    batchId: Annotated[str, Field(json_schema_extra={"format": "uuid"},
                                  description="read it back with GET /api/call/batches/{batchId}")]
    total: Annotated[int, Field(description="contacts submitted")]
    accepted: Annotated[int, Field(description="contacts that passed validation and will be scheduled")]
    rejected: Annotated[list[Rejection], Field(description="per-contact failures (empty when all passed)")]
    message: Annotated[str, Field(description="when normalizeFields was ignored")] = None


class EnrollError(BaseModel):
    """The request failed whole (nothing was scheduled)."""

    statusCode: int
    error: Annotated[str, Field(description="the HTTP status's name")]
    message: str
    rejected: Annotated[list[Rejection], Field(description="400 when no contact passed: why each failed")] = None
    required: Annotated[int, Field(description="402: the credits the accepted contacts need")] = None
    available: Annotated[int, Field(description="402: the workspace's balance")] = None


def _errors(*codes: int) -> dict[int, Reply]:
    said = {400: "the request's own shape, or no contact passed", 401: "a missing or invalid key",
            402: "not enough credits for the accepted contacts", 404: "an unknown agent (another workspace's too)",
            413: "a body over 8 MiB, or contacts too large to be stored together",
            422: "the agent cannot call: it has no calling number", 503: "the database failed; nothing was scheduled"}
    return {code: Reply(EnrollError, said[code]) for code in codes}


@documented("Enroll multiple contacts (the contact-enrollment API of seeds 000/001)", tags=("enrollment",),
            security=(API_KEY, BEARER_KEY), body=EnrollBody, headers=IdempotencyHeaders,
            path={"agentId": "our agent's id (GET /api/agents)"}, description=(
                "Up to 1,000 contacts; each is validated on its own. A 202 means the accepted contacts are stored; "
                "the calls are created in the background. `groupByField` chains the contacts of a group (one at a "
                "time until one succeeds); `allowDuplicates` schedules repeated numbers one after the other."),
            responses={202: Reply(EnrollAnswer, "accepted; check rejected[] for per-contact failures",
                                  headers=REPLAY_HEADER),
                       **_errors(400, 401, 402, 404, 413, 422, 503)})
@face
async def enroll(request: web.Request) -> web.Response:
    principal = await _principal(request)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=request.content_length)
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=len(raw))
    answer = await request.app[ENROLLMENT].enroll(principal, request.match_info["agentId"], raw,
                                                  request.headers.get("Idempotency-Key"))
    response = web.Response(body=answer.body, status=answer.code, content_type="application/json")
    if answer.replayed:
        response.headers["Idempotent-Replay"] = "true"
    return response


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, enroll)
