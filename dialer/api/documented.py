"""One declaration per route, next to its handler: what it reads (validated here) and what it answers
(documented in /openapi.json, see dialer/api/openapi.py).

    @documented(
        summary="Create a batch", tags=("batches",), security=WORKSPACE,
        body=CreateBatchBody,                        # a Shape: request_body() validates with it
        responses={200: Reply(envelope(BatchView, "BatchAnswer"), "the batch"), **errors(400, 403, 404)},
    )
    async def create_batch(request):
        principal = await require_workspace(request)  # who asks first, then what they sent
        body = await request_body(request)           # the JSON body, checked against CreateBatchBody

`request_body` and `request_query` find the shapes through the route the request matched, so a
handler cannot validate with one shape while the document shows another. A face whose vendor answers
invalid input differently passes `invalid=` (the ElevenLabs face: 422 with pydantic's own details).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from aiohttp import web
from pydantic import BaseModel

from dialer.api.envelope import ApiError
from dialer.core.shapes import Shape, ShapeError, check
from dialer.services.bodies import parse_json
from dialer.services.errors import Refused

ROUTE_DOC = "__route_doc__"


@dataclass(frozen=True)
class Scheme:
    """A security scheme: its name in components.securitySchemes and its OpenAPI definition."""

    name: str
    spec: Mapping[str, Any]


API_KEY = Scheme("ApiKey", {"type": "apiKey", "in": "header", "name": "x-api-key",
                            "description": "A workspace API key (dk_...)."})
BEARER_KEY = Scheme("BearerKey", {"type": "http", "scheme": "bearer",
                                  "description": "The same workspace API key as `Authorization: Bearer <key>`."})
ADMIN_TOKEN = Scheme("AdminToken", {"type": "http", "scheme": "bearer",
                                    "description": "DIALER_ADMIN_TOKEN as `Authorization: Bearer <token>`; "
                                                   "admin routes are disabled while it is empty."})
TWILIO_SIGNATURE = Scheme("TwilioSignature", {
    "type": "apiKey", "in": "header", "name": "X-Twilio-Signature",
    "description": "Twilio's HMAC-SHA1 signature of DIALER_PUBLIC_BASE_URL + path and query + the form."})
WORKSPACE = (API_KEY, BEARER_KEY)  # either one
ADMIN = (ADMIN_TOKEN,)
PUBLIC = ()


@dataclass(frozen=True)
class Reply:
    """One documented answer: a model (None: no body), or a media type other than JSON; `links` name the
    operations its values lead to (OpenAPI links: what a client, or schemathesis, can call next)."""

    model: type[BaseModel] | None
    description: str
    media_type: str = "application/json"
    headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    links: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def links_to(expression: str, parameter: str, operation_ids: Mapping[str, str],
             bodies: Mapping[str, tuple[str, str]] = {}) -> dict[str, dict]:
    """OpenAPI links passing one value of an answer (`$response.body#/data/batchId`) on: as the path
    parameter `parameter` of each operation in `operation_ids` (link name -> operationId), and as a
    body field of those in `bodies` (link name -> (operationId, field))."""
    links = {name: {"operationId": op, "parameters": {parameter: expression}} for name, op in operation_ids.items()}
    for name, (op, body_field) in bodies.items():
        links[name] = {"operationId": op, "requestBody": {body_field: expression}}
    return links


def _native_invalid(error: ShapeError, where: str) -> Exception:
    return ApiError(400, "Bad Request", error.reason)


@dataclass(frozen=True)
class RouteDoc:
    summary: str
    tags: tuple[str, ...]
    security: tuple[Scheme, ...]
    responses: Mapping[int, Reply]
    description: str = ""
    body: type[BaseModel] | None = None  # a Shape where request_body() reads it
    body_required: bool = True
    body_media_type: str = "application/json"
    query: type[Shape] | None = None
    headers: type[BaseModel] | None = None  # documented; read elsewhere (Idempotency-Key: by @idempotent)
    path: Mapping[str, str] = field(default_factory=dict)  # path parameter -> description
    invalid: Callable[[ShapeError, str], Exception] = _native_invalid
    operation_id: str | None = None


def documented(summary: str, *, tags: tuple[str, ...], security: tuple[Scheme, ...],
               responses: Mapping[int, Reply], **more: Any) -> Callable:
    """Attach a RouteDoc to a handler (see the module docstring); the handler itself is unchanged."""
    doc = RouteDoc(summary, tuple(tags), tuple(security), dict(responses), **more)

    def attach(handler: Callable) -> Callable:
        setattr(handler, ROUTE_DOC, doc)
        return handler

    return attach


def route_doc(handler: Any) -> RouteDoc | None:
    return getattr(handler, ROUTE_DOC, None)


def _doc_of(request: web.Request) -> RouteDoc:
    doc = route_doc(request.match_info.handler)
    if doc is None:
        raise RuntimeError(f"{request.match_info.route.resource} has no RouteDoc")
    return doc


async def request_body(request: web.Request) -> Any:
    """The JSON body, checked against the route's `body` shape (as parsed, so integers stay exact)."""
    doc = _doc_of(request)
    if doc.body is None:
        raise RuntimeError(f"{request.match_info.route.resource} documents no body")
    raw = await request.read()
    if not raw.strip() and not doc.body_required:
        return {}
    try:
        value = parse_json(raw)
    except Refused as exc:
        raise doc.invalid(ShapeError(exc.error, [{"loc": (), "msg": exc.error, "type": "json_invalid"}]),
                          "body") from None
    try:
        check(doc.body, value)
    except ShapeError as exc:
        raise doc.invalid(exc, "body") from None
    return value


def request_query(request: web.Request) -> Shape:
    """The query string, checked against the route's `query` shape, as that shape."""
    doc = _doc_of(request)
    if doc.query is None:
        raise RuntimeError(f"{request.match_info.route.resource} documents no query")
    try:
        return check(doc.query, {name: request.query[name] for name in request.query})
    except ShapeError as exc:
        raise doc.invalid(exc, "query") from None
