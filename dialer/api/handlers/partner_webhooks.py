"""Partner webhook routes (/api/webhooks/): a workspace's endpoints, their delivery log, retries, recovery
and a test ping. Use cases: dialer/services/webhooks.py; deliveries: dialer/delivery. A secret is answered
only on creation and rotation; another workspace's endpoint or message is not found (404)."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from dialer.api import replies as r
from dialer.api import webhook_shapes as s
from dialer.api.appkeys import WEBHOOKS
from dialer.api.auth import require_workspace
from dialer.api.documented import WORKSPACE, Reply, documented, request_body, request_query
from dialer.api.envelope import ApiError, ok
from dialer.api.idempotent import idempotent, per_workspace
from dialer.api.requests import NoOptions
from dialer.services.webhooks import endpoint_view

ENDPOINT_ID = {"endpointId": "from POST /api/webhooks/endpoints"}
MESSAGE_ID = {"messageId": "from GET /api/webhooks/messages"}
EndpointAnswer = r.envelope(s.EndpointView, "WebhookEndpointAnswer")
MessageAnswer = r.envelope(s.MessageView, "WebhookMessageAnswer")
DISABLED = {409: Reply(r.ErrorEnvelope, "the endpoint is disabled: enable it first (PATCH {\"disabled\": false})")}


def route(summary: str, responses: dict, **more):
    return documented(summary, tags=("webhooks",), security=WORKSPACE, responses=responses, **more)


# A URL's host the resolver could not answer for now (a temporary DNS failure): not kept under an Idempotency-Key.
UNRESOLVED_NOW = Reply(r.ErrorEnvelope, "the URL's host could not be resolved now, or the database failed: "
                                        "nothing was written, retry")


@idempotent(per_workspace)
@route("Create a webhook endpoint (its signing secret is answered once)", body=s.EndpointBody, responses={
    200: Reply(EndpointAnswer, "the endpoint, with its secret"), **r.errors(400, 403), 503: UNRESOLVED_NOW})
async def create_endpoint(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    body = await request_body(request)
    return ok(await request.app[WEBHOOKS].create(principal.workspace_id, body), "Webhook endpoint created")


@route("The workspace's webhook endpoints", responses={
    200: Reply(r.envelope(s.Endpoints, "WebhookEndpointsAnswer"), "oldest first"), **r.errors(403)})
async def list_endpoints(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    return ok({"endpoints": await request.app[WEBHOOKS].list(principal.workspace_id)})


@route("A webhook endpoint", path=ENDPOINT_ID, responses={200: Reply(EndpointAnswer, "the endpoint"),
                                                         **r.errors(403, 404)})
async def get_endpoint(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    return ok(endpoint_view(await request.app[WEBHOOKS].endpoint(principal.workspace_id,
                                                                 request.match_info["endpointId"])))


@route("Change a webhook endpoint: url, events, description, disabled", path=ENDPOINT_ID,
       body=s.EndpointUpdateBody, responses={200: Reply(EndpointAnswer, "the endpoint after"),
                                             **r.errors(400, 403, 404), 503: UNRESOLVED_NOW})
async def update_endpoint(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    body = await request_body(request)
    return ok(await request.app[WEBHOOKS].update(principal.workspace_id, request.match_info["endpointId"], body))


@route("Delete a webhook endpoint and its delivery log", path=ENDPOINT_ID, responses={
    200: Reply(r.envelope(s.DeletedEndpoint, "WebhookEndpointDeleted"), "its id"), **r.errors(403, 404)})
async def delete_endpoint(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    endpoint_id = request.match_info["endpointId"]
    await request.app[WEBHOOKS].delete(principal.workspace_id, endpoint_id)
    return ok({"endpointId": endpoint_id}, "Webhook endpoint deleted")


@idempotent(per_workspace)
@route("Rotate an endpoint's signing secret (the old one still signs for 24 h)", path=ENDPOINT_ID, body=NoOptions,
       body_required=False, responses={200: Reply(EndpointAnswer, "the endpoint, with its new secret"),
                                       **r.errors(400, 403, 404)})
async def rotate_secret(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    await request_body(request)
    return ok(await request.app[WEBHOOKS].rotate(principal.workspace_id, request.match_info["endpointId"]))


@idempotent(per_workspace)
@route("Send a webhook.test event to an endpoint", path=ENDPOINT_ID, body=NoOptions, body_required=False,
       responses={200: Reply(MessageAnswer, "the message, delivered as any other"), **r.errors(400, 403, 404),
                  **DISABLED})
async def test_endpoint(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    await request_body(request)
    return ok(await request.app[WEBHOOKS].test(principal.workspace_id, request.match_info["endpointId"]))


@route("Send again every message of an endpoint that failed since a time", path=ENDPOINT_ID, body=s.RecoverBody,
       responses={200: Reply(r.envelope(s.Recovered, "WebhookRecoverAnswer"), "how many"), **r.errors(400, 403, 404),
                  **DISABLED})
async def recover_endpoint(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    body = await request_body(request)
    try:
        since = dt.datetime.fromisoformat(body["since"].replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "Bad Request", "since must be an ISO 8601 time with its offset") from None
    count = await request.app[WEBHOOKS].recover(principal.workspace_id, request.match_info["endpointId"], since)
    return ok({"recovered": count})


@route("The delivery log: messages with their attempts, newest first", query=s.MessagesQuery, responses={
    200: Reply(r.envelope(s.MessagesPage, "WebhookMessagesAnswer"), "a page"), **r.errors(400, 403, 404)})
async def list_messages(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    q = request_query(request)
    return ok(await request.app[WEBHOOKS].messages(principal.workspace_id, q.endpointId, q.status, q.type, q.cursor,
                                                   q.limit))


@route("Send a message again now", path=MESSAGE_ID, body=NoOptions, body_required=False, responses={
    200: Reply(MessageAnswer, "the message, pending"), **r.errors(400, 403, 404), **DISABLED})
async def retry_message(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    await request_body(request)
    return ok(await request.app[WEBHOOKS].retry(principal.workspace_id, request.match_info["messageId"]))
