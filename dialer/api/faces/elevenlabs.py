"""The ElevenLabs batch-calling face (seed 003): its paths, field names, status values and error shapes,
mapped onto our batches and calls. A team moving from the vendor changes only the base URL and the key.

- Auth: `xi-api-key` (our workspace key); 401 `{"detail": {"status", "message"}}` without a valid one.
- `POST /v1/convai/batch-calling/submit`, `GET .../workspace`, `GET .../{id}`, `POST .../{id}/cancel`,
  `POST .../{id}/retry`, `DELETE .../{id}`. Submit and retry take an Idempotency-Key (ours: the vendor's
  API has none), its refusals in the vendor's shapes: a malformed or reused key 422, one in use 409.
- Invalid input: 422 `{"detail": [{"loc", "msg", "type"}]}`; an unknown batch or agent (another
  workspace's too): 404; a change the batch's status forbids: 409; every field of the vendor's request
  schema is accepted, others are refused.
The mapping of fields and statuses is in elevenlabs_shapes.py; the use cases are the native ones.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import orjson
from aiohttp import web

from dialer.api.appkeys import BATCHES, CLOCK, LIFECYCLE, PHONES, REPOS, SETTINGS, SUBMISSIONS, TENANCY
from dialer.api.documented import Reply, documented, links_to, request_body, request_query
from dialer.api.faces import elevenlabs_models as models
from dialer.api.faces.elevenlabs_shapes import (Invalid, batch_call, parse_submit, recipient_view, record_error_loc,
                                                 repeated_numbers, shape_invalid, submit_records)
from dialer.api.idempotent import CLAIM, Answers, idempotent
from dialer.services.calls import all_calls
from dialer.services.errors import Refused
from dialer.services.ingestion import offload
from dialer.services.submissions import CallingNumberRefused, RecordsRefused
from dialer.services.tenancy import Principal, parse_id

log = logging.getLogger("dialer.faces.elevenlabs")
PREFIX = "/v1/convai/batch-calling"
TAGS = ("ElevenLabs batch calling",)
BATCH_ID = {"batchId": "the batch call's id (our batchId)"}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _detail(status: int, kind: str, message: str) -> web.Response:
    return _json({"detail": {"status": kind, "message": message}}, status)


def refusal(exc: Refused) -> web.Response:
    """A refusal in the vendor's shapes: bad input a 422 with its location (the body, or the header named in
    `data`), anything else `{"detail": {status, message}}`."""
    kinds = {400: "invalid_request", 401: "invalid_api_key", 403: "not_found", 404: "not_found",
             405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 503: "unavailable"}
    # Another workspace's batch is as unknown here as a batch that does not exist.
    code = 404 if exc.code == 403 else (422 if exc.code == 400 else exc.code)
    if code == 422:
        header = exc.data.get("header") if isinstance(exc.data, dict) else None
        loc = ["header", header] if header else ["body"]
        return _json({"detail": [{"loc": loc, "msg": exc.error, "type": "value_error"}]}, 422)
    return _detail(code, kinds.get(exc.code, "error"), exc.error)


def face(handler):
    """The vendor's error shapes for everything a handler of this face raises."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Invalid as exc:
            return _json({"detail": exc.details}, 422)
        except Refused as exc:
            return refusal(exc)

    return wrapped


# An Idempotency-Key's refusals in this face's shapes (dialer/api/idempotent.py).
VENDOR = Answers(refusal, {
    409: Reply(models.VendorError, "a request with this Idempotency-Key is still running: retry later"),
    422: Reply(models.HTTPValidationError, "the Idempotency-Key is malformed, or was used for another request "
                                           "(another route, target or body)")})


async def _principal(request: web.Request) -> Principal:
    key = request.headers.get("xi-api-key", "").strip()
    principal = await request.app[TENANCY].authenticate(key) if key else None
    if principal is None:
        raise Refused(401, "Unauthorized", "missing or invalid xi-api-key")
    return principal


async def _owner(request: web.Request) -> str:
    """Idempotency-Keys are the workspace's, as on the native routes."""
    return str((await _principal(request)).workspace_id)


async def _batch(request: web.Request, principal: Principal) -> dict:
    oid = parse_id(request.match_info["batchId"])
    batch = None if oid is None else await request.app[REPOS].batches.get(oid)
    if batch is None or batch["workspaceId"] != principal.workspace_id:
        raise Refused(404, "Not Found", "batch call not found")
    return batch


async def _shape(request: web.Request, batch: dict, recipients: bool = False) -> dict:
    agent = await request.app[TENANCY].get_agent(batch["workspaceId"], batch["agentId"])
    view = batch_call(batch, await request.app[BATCHES].counters(batch["_id"]), agent)
    if recipients:
        view["recipients"] = [recipient_view(c) for c in await all_calls(request.app[REPOS].calls, batch["_id"])]
    return view


def vendor_route(summary: str, responses: dict, **more):
    """This face's routes: its tag, its key, its error shapes."""
    return documented(summary, tags=TAGS, security=(models.XI_API_KEY,), invalid=shape_invalid,
                      responses=responses, **more)


@idempotent(_owner, VENDOR)
@face
@vendor_route("Submit a batch calling job", body=models.SubmitBody, responses={
    200: Reply(models.BatchCall, "the batch call, scheduled", links=links_to("$response.body#/id", "batchId", {
        verb: f"elevenlabs_{verb}_batch" for verb in ("get", "cancel", "retry", "delete")})),
    **models.vendor_errors(401, 404, 422, 503)})
async def submit(request: web.Request) -> web.Response:
    principal = await _principal(request)
    body = await request_body(request)  # integers exact, as the native API reads them
    app = request.app
    submit_ = parse_submit(body, app[SETTINGS].max_records_per_request, app[CLOCK].now())
    # A number given twice is refused whole, before anything is written (the Planner would keep the last).
    repeated = await offload(len(submit_.recipients), repeated_numbers, submit_.recipients, app[PHONES])
    if repeated:
        raise Invalid(repeated[:100])
    records, meta = submit_records(submit_.recipients)
    try:
        batch = await app[SUBMISSIONS].submit(
            principal.workspace_id, submit_.agent_id, submit_.phone_number_id,
            lambda calling: submit_.batch_spec(calling, app[SETTINGS]), submit_.kept(), records, meta,
            request.get(CLAIM))
    except CallingNumberRefused as exc:
        raise Invalid([{"loc": ["body", "agent_phone_number_id"], "msg": str(exc), "type": "value_error"}]) from None
    except RecordsRefused as exc:
        raise Invalid([{"loc": record_error_loc(e), "msg": e.reason, "type": "value_error"}
                       for e in exc.errors[:100]]) from None
    return _json(await _shape(request, batch))


@face
@vendor_route("List the workspace's batch calling jobs", query=models.ListQuery, responses={
    200: Reply(models.BatchCallPage, "newest first"), **models.vendor_errors(401, 422)})
async def list_batches(request: web.Request) -> web.Response:
    principal = await _principal(request)
    query = request_query(request)
    native = {"limit": str(query.limit)}
    if query.last_doc:
        native["cursor"] = query.last_doc
    if query.agent_id:
        native["agentId"] = query.agent_id
        if parse_id(query.agent_id) is None:  # an agent id of another system: no batch of ours
            return _json({"batch_calls": [], "next_doc": None, "has_more": False})
    docs, counters, cursor = await request.app[LIFECYCLE].page(principal.workspace_id, native)
    agents = {a["_id"]: a for a in await request.app[TENANCY].list_agents(principal.workspace_id)}
    calls = [batch_call(d, counters[d["_id"]], agents.get(d["agentId"])) for d in docs]
    return _json({"batch_calls": calls, "next_doc": cursor, "has_more": cursor is not None})


@face
@vendor_route("Get a batch call and its recipients", path=BATCH_ID, responses={
    200: Reply(models.BatchCallDetail, "the batch call and every recipient"), **models.vendor_errors(401, 404)})
async def get_batch(request: web.Request) -> web.Response:
    principal = await _principal(request)
    return _json(await _shape(request, await _batch(request, principal), recipients=True))


async def _changed(request: web.Request, change: str) -> web.Response:
    """A lifecycle change (`cancel`, `retry`) of the addressed batch, answered as the BatchCall after it."""
    principal = await _principal(request)
    batch = await getattr(request.app[LIFECYCLE], change)(await _batch(request, principal))
    return _json(await _shape(request, batch))


@face
@vendor_route("Cancel a batch calling job", path=BATCH_ID, responses={
    200: Reply(models.BatchCall, "the batch call, cancelled"), **models.vendor_errors(401, 404, 409)})
async def cancel_batch(request: web.Request) -> web.Response:
    return await _changed(request, "cancel")


@idempotent(_owner, VENDOR)
@face
@vendor_route("Retry a batch calling job's failed recipients", path=BATCH_ID, responses={
    200: Reply(models.BatchCall, "the batch call, running again"), **models.vendor_errors(401, 404, 409)})
async def retry_batch(request: web.Request) -> web.Response:
    return await _changed(request, "retry")


@face
@vendor_route("Delete a batch calling job", path=BATCH_ID, responses={
    204: Reply(None, "deleted"), **models.vendor_errors(401, 404, 409)})
async def delete_batch(request: web.Request) -> web.Response:
    principal = await _principal(request)
    await request.app[LIFECYCLE].delete(await _batch(request, principal))
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_post(f"{PREFIX}/submit", submit)
    app.router.add_get(f"{PREFIX}/workspace", list_batches)
    # A batch call's id is never one of the face's own words: GET .../submit is a 405, not an unknown batch.
    one = PREFIX + "/{batchId:(?!submit$|workspace$)[^/]+}"
    app.router.add_get(one, get_batch)
    app.router.add_delete(one, delete_batch)
    app.router.add_post(PREFIX + "/{batchId}/cancel", cancel_batch)
    app.router.add_post(PREFIX + "/{batchId}/retry", retry_batch)


