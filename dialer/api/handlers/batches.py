"""Batch routes: createBatch, addCallsToBatch, reading a batch and its calls back, the lifecycle
(list, start, stop, cancel, retry, delete), and contacts uploaded as a CSV file (the console's)."""

from __future__ import annotations

from aiohttp import web

from dialer.api.appkeys import BATCHES, INGESTION, LIFECYCLE, PHONES, REPOS, TENANCY
from dialer.api.auth import require_workspace
from dialer.core.batch_spec import BatchSpecError, parse_batch_spec, parse_batch_update
from dialer.services.batches import BatchForbidden, BatchNotFound, batch_view
from dialer.services.calls import list_calls
from dialer.api.envelope import ApiError, envelope, ok
from dialer.api.handlers.common import json_body
from dialer.services.bodies import parse_json
from dialer.services.csv_import import import_csv
from dialer.services.ingestion import Outcome


async def create_batch(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    body = await json_body(request)
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
    batch = await request.app[BATCHES].create(principal.workspace_id, agent, spec)
    return ok({"batchId": str(batch["_id"]), **batch_view(batch)}, "Batch created")


async def add_calls_to_batch(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    raw = await request.read()
    outcome = await request.app[INGESTION].add_calls(principal, raw, request.headers.get("Idempotency-Key"))
    return _answer(outcome)


def _answer(outcome: Outcome) -> web.Response:
    response = envelope(outcome.code, outcome.message, outcome.data, outcome.error, status=outcome.code == 200)
    if outcome.replayed:
        response.headers["Idempotent-Replay"] = "true"
    return response


async def _owned_batch(request: web.Request) -> dict:
    principal = await require_workspace(request)
    try:
        return await request.app[BATCHES].get_owned(principal.workspace_id, request.match_info["batchId"])
    except BatchNotFound:
        raise ApiError(404, "Not Found", "batch not found") from None
    except BatchForbidden:
        raise ApiError(403, "Forbidden", "this API key does not own the batch") from None


async def get_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    counters = await request.app[BATCHES].counters(batch["_id"])
    return ok(batch_view(batch, counters))


async def get_batch_calls(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    page = await list_calls(request.app[REPOS].calls, batch["_id"], request.query)
    return ok(page)



async def _options(request: web.Request, allowed: dict[str, type]) -> dict:
    """An optional JSON object body with only these fields, of these types."""
    raw = await request.read()
    if not raw.strip():
        return {}
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "Bad Request", "body must be a JSON object")
    unknown = set(body) - set(allowed)
    if unknown:
        raise ApiError(400, "Bad Request", f"unknown fields: {sorted(unknown)}; allowed: {sorted(allowed)}")
    for name, kind in allowed.items():
        if name in body and not (isinstance(body[name], kind) and not (kind is not bool and isinstance(body[name], bool))):
            raise ApiError(400, "Bad Request", f"{name} must be a {kind.__name__}")
    return body


async def list_batches(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    return ok(await request.app[LIFECYCLE].list(principal.workspace_id, request.query))


async def start_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    await _options(request, {})
    lifecycle = request.app[LIFECYCLE]
    return ok(await lifecycle.view(await lifecycle.start(batch)), "Batch running")


async def stop_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    await _options(request, {})
    lifecycle = request.app[LIFECYCLE]
    return ok(await lifecycle.view(await lifecycle.stop(batch)), "Batch paused")


async def cancel_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    options = await _options(request, {"hangUp": bool})
    lifecycle = request.app[LIFECYCLE]
    return ok(await lifecycle.view(await lifecycle.cancel(batch, options.get("hangUp", False))), "Batch cancelled")


async def retry_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    options = await _options(request, {"outcomes": list})
    lifecycle = request.app[LIFECYCLE]
    return ok(await lifecycle.view(await lifecycle.retry(batch, options.get("outcomes"))), "Batch retried")


async def delete_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    return ok({"batchId": await request.app[LIFECYCLE].delete(batch)}, "Batch deleted")


async def update_batch(request: web.Request) -> web.Response:
    batch = await _owned_batch(request)
    try:
        changes = parse_batch_update(await json_body(request))
    except BatchSpecError as exc:
        raise ApiError(400, "Bad Request", str(exc)) from None
    lifecycle = request.app[LIFECYCLE]
    return ok(await lifecycle.view(await lifecycle.update(batch, changes)), "Batch updated")


async def upload_csv(request: web.Request) -> web.Response:
    """The CSV file is the body (any content type); `?dryRun=true` checks it without writing."""
    batch = await _owned_batch(request)
    dry_run = request.query.get("dryRun", "false").lower()
    if dry_run not in ("true", "false", "1", "0"):
        raise ApiError(400, "Bad Request", "dryRun must be true or false")
    outcome = await import_csv(request.app[INGESTION], batch, await request.read(), dry_run in ("true", "1"),
                               request.headers.get("Idempotency-Key"))
    return _answer(outcome)
