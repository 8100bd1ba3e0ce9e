"""Batch routes: createBatch, addCallsToBatch, reading a batch and its calls back, the lifecycle
(list, start, stop, cancel, retry, delete), and contacts uploaded as a CSV file (the console's). Each
declares its shapes and answers with @documented."""

from __future__ import annotations

from aiohttp import web

from dialer.api import replies as r
from dialer.api.appkeys import BATCHES, INGESTION, LIFECYCLE, PHONES, REPOS, TENANCY
from dialer.api.auth import require_workspace
from dialer.api.documented import WORKSPACE, Reply, documented, links_to, request_body, request_query
from dialer.api.envelope import ApiError, envelope, ok
from dialer.api.idempotent import CLAIM, idempotent, per_workspace
from dialer.api.requests import BatchesQuery, CallsQuery, CancelOptions, CsvFile, CsvQuery, NoOptions, RetryOptions
from dialer.core.batch_spec import (BatchSpecError, CreateBatchBody, UpdateBatchBody, parse_batch_spec,
                                    parse_batch_update)
from dialer.core.records import AddCallsBody
from dialer.services.batches import BatchForbidden, BatchNotFound, batch_view
from dialer.services.calls import list_calls
from dialer.services.csv_import import import_csv
from dialer.services.ingestion import Outcome

TAGS = ("batches",)
BATCH_ID = {"batchId": "from createBatch"}
BatchAnswer = r.envelope(r.BatchView, "BatchAnswer")
ANSWERED_BATCH = {200: Reply(BatchAnswer, "the batch as GET answers it, counters included")}
LIFECYCLE_ERRORS = r.errors(400, 403, 404, 409)


def route(summary: str, responses: dict, **more):
    return documented(summary, tags=TAGS, security=WORKSPACE, responses=responses, **more)


BATCH_LINKS = links_to("$response.body#/data/batchId", "batchId", {
    verb: f"batches_{verb}_batch" for verb in ("get", "update", "delete", "start", "stop", "cancel", "retry")} | {
    "calls": "batches_get_batch_calls", "uploadCsv": "batches_upload_csv"},
    bodies={"addCalls": ("batches_add_calls_to_batch", "batchId")})


@idempotent(per_workspace)
@route("Create a batch", body=CreateBatchBody, responses={
    200: Reply(BatchAnswer, "the batch, pending until calls arrive (or its scheduledAt)", links=BATCH_LINKS),
    **r.errors(400, 403, 404)})
async def create_batch(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    body = await request_body(request)
    try:
        spec = parse_batch_spec(body, request.app[PHONES])
    except BatchSpecError as exc:
        raise ApiError(400, "Bad Request", str(exc)) from None
    tenancy = request.app[TENANCY]
    if spec.agent_id is not None:
        agent = await tenancy.get_agent(principal.workspace_id, spec.agent_id)
        if agent is None:
            raise ApiError(404, "Not Found", "agent not found")
        foreign = set(spec.calling_numbers) - set(agent["callingNumbers"])
        if foreign:
            raise ApiError(400, "Bad Request", f"callingNumbers not owned by the agent: {sorted(foreign)}")
    else:
        agent = await tenancy.agent_for_numbers(principal.workspace_id, spec.calling_numbers)
        if agent is None:
            raise ApiError(404, "Not Found", "no agent found for the batch's calling numbers")
    if not (spec.calling_numbers or agent["callingNumbers"]):
        raise ApiError(400, "Bad Request", "the batch has no calling number: give callingNumbers or an agent that owns some")
    claim = request.get(CLAIM)  # under an Idempotency-Key: the batch's id is the claim's first
    batch = await request.app[BATCHES].create(principal.workspace_id, agent, spec, claim and claim.object_id(0))
    return ok({"batchId": str(batch["_id"]), **batch_view(batch)}, "Batch created")


CallsAnswer = r.envelope(r.CallsAdded, "CallsAddedAnswer")


@idempotent(per_workspace)
@route("Add calls to a batch", body=AddCallsBody, description=(
    "Every record is validated before anything is written: one bad record refuses the request (400, "
    "`data.errors` names them by index). Numbers are normalised; a number waiting in the batch is updated, "
    "a completed one gets a new call. The batch starts unless paused, cancelled or scheduled later."),
    responses={200: Reply(CallsAnswer, "every call written"),
               207: Reply(CallsAnswer, "some chunks failed: data.failedChunks; resend their records"),
               400: Reply(r.AddCallsRefusal, "bad input; with invalid records, data names them"),
               **r.errors(403, 404, 409, 413, 503)})
async def add_calls_to_batch(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    raw = await request.read()  # validated as AddCallsBody by the use case, after parsing large bodies aside
    return _answer(await request.app[INGESTION].add_calls(principal, raw, request.get(CLAIM)))


def _answer(outcome: Outcome) -> web.Response:
    return envelope(outcome.code, outcome.message, outcome.data, outcome.error, status=outcome.code == 200)


async def _owned_batch(request: web.Request) -> dict:
    principal = await require_workspace(request)
    try:
        return await request.app[BATCHES].get_owned(principal.workspace_id, request.match_info["batchId"])
    except BatchNotFound:
        raise ApiError(404, "Not Found", "batch not found") from None
    except BatchForbidden:
        raise ApiError(403, "Forbidden", "this API key does not own the batch") from None


@route("Read a batch: settings, status, counters", path=BATCH_ID,
       responses={**ANSWERED_BATCH, **r.errors(403, 404)})
async def get_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    counters = await request.app[BATCHES].counters(batch["_id"])
    return ok(batch_view(batch, counters))


@route("A page of a batch's calls, in enqueue order", path=BATCH_ID, query=CallsQuery,
       responses={200: Reply(r.envelope(r.CallsPage, "CallsPageAnswer"), "pass data.nextCursor as cursor for more"),
                  **r.errors(400, 403, 404)})
async def get_batch_calls(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    request_query(request)
    page = await list_calls(request.app[REPOS].calls, batch["_id"], request.query)
    return ok(page)


@route("The workspace's batches, newest first", query=BatchesQuery, responses={
    200: Reply(r.envelope(r.BatchesPage, "BatchesPageAnswer"), "pass data.nextCursor as cursor for more"),
    **r.errors(400, 403)})
async def list_batches(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    request_query(request)
    return ok(await request.app[LIFECYCLE].list(principal.workspace_id, request.query))


@route("Start a batch now (pending or paused -> running)", path=BATCH_ID, body=NoOptions, body_required=False,
       responses={**ANSWERED_BATCH, **LIFECYCLE_ERRORS})
async def start_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    await request_body(request)
    lifecycle = request.app[LIFECYCLE]
    return ok(await lifecycle.view(await lifecycle.start(batch)), "Batch running")


@route("Stop a batch (running -> paused): no call is placed after the answer", path=BATCH_ID, body=NoOptions,
       body_required=False, responses={**ANSWERED_BATCH, **LIFECYCLE_ERRORS})
async def stop_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    await request_body(request)
    lifecycle = request.app[LIFECYCLE]
    return ok(await lifecycle.view(await lifecycle.stop(batch)), "Batch paused")


@route("Cancel a batch (final): waiting calls are cancelled", path=BATCH_ID, body=CancelOptions,
       body_required=False, responses={**ANSWERED_BATCH, **LIFECYCLE_ERRORS})
async def cancel_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    options = await request_body(request)
    lifecycle = request.app[LIFECYCLE]
    return ok(await lifecycle.view(await lifecycle.cancel(batch, options.get("hangUp", False))), "Batch cancelled")


@idempotent(per_workspace)
@route("Retry the final calls whose outcome is in `outcomes`", path=BATCH_ID, body=RetryOptions,
       body_required=False, responses={**ANSWERED_BATCH, **LIFECYCLE_ERRORS})
async def retry_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    options = await request_body(request)
    lifecycle = request.app[LIFECYCLE]
    return ok(await lifecycle.view(await lifecycle.retry(batch, options.get("outcomes"))), "Batch retried")


@route("Delete a batch and its calls (refused while calls are in flight)", path=BATCH_ID, responses={
    200: Reply(r.envelope(r.DeletedBatch, "DeletedBatchAnswer"), "deleted"), **r.errors(403, 404, 409)})
async def delete_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    return ok({"batchId": await request.app[LIFECYCLE].delete(batch)}, "Batch deleted")


@route("Change a batch's settings (dispatchers follow within a second)", path=BATCH_ID, body=UpdateBatchBody,
       responses={**ANSWERED_BATCH, **LIFECYCLE_ERRORS})
async def update_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    try:
        changes = parse_batch_update(await request_body(request))
    except BatchSpecError as exc:
        raise ApiError(400, "Bad Request", str(exc)) from None
    lifecycle = request.app[LIFECYCLE]
    return ok(await lifecycle.view(await lifecycle.update(batch, changes)), "Batch updated")


@idempotent(per_workspace)
@route("Add contacts from a CSV file (the console's upload)", path=BATCH_ID, query=CsvQuery, body=CsvFile,
       body_media_type="text/csv", description=(
           "The file is the body. Columns by header: phone_number, phoneNumber or phone (any case); every other "
           "column is a variable. UTF-8 with or without BOM; `,` or `;`. Valid rows are written and rejected ones "
           "listed with their file line and reason (`dryRun=true` only checks)."),
       responses={200: Reply(r.envelope(r.CsvImport, "CsvImportAnswer"), "rows written (or checked) and rejected"),
                  207: Reply(r.envelope(r.CsvImport, "CsvImportAnswer"), "some chunks failed: data.failedChunks"),
                  **r.errors(400, 403, 404, 409, 413, 503)})
async def upload_csv(request: web.Request) -> web.Response:
    """The CSV file is the body (any content type); `?dryRun=true` checks it without writing."""
    batch = await _owned_batch(request)
    query = request_query(request)
    return _answer(await import_csv(request.app[INGESTION], batch, await request.read(), query.dryRun,
                                    request.get(CLAIM)))
