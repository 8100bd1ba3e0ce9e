"""Call routes: the agent's verdict on one of its calls (contact chaining reads it)."""

from __future__ import annotations

from aiohttp import web

from dialer.api.appkeys import CHAINS, REPOS
from dialer.api.auth import require_workspace
from dialer.api.envelope import ApiError, ok
from dialer.api.handlers.common import json_body
from dialer.services.calls import call_view
from dialer.services.tenancy import parse_id


async def record_verdict(request: web.Request) -> web.Response:
    """`POST /api/call/calls/{callId}/verdict {"successful": bool, "reason"?: str}`: whether the agent's
    conversation reached its goal. A chained contact's group moves on at once when it did not."""
    principal = await require_workspace(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("successful"), bool):
        raise ApiError(400, "Bad Request", "body must be an object {successful: true | false, reason?: string}")
    unknown = set(body) - {"successful", "reason"}
    if unknown:
        raise ApiError(400, "Bad Request", f"unknown fields: {sorted(unknown)}")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise ApiError(400, "Bad Request", "reason must be a string of at most 500 characters")
    oid = parse_id(request.match_info["callId"])
    call = None if oid is None else await request.app[REPOS].calls.get(oid)
    if call is None or call["workspaceId"] != principal.workspace_id:
        raise ApiError(404, "Not Found", "call not found")
    after = await request.app[CHAINS].record_verdict(call, body["successful"], reason)
    if after is None:
        raise ApiError(404, "Not Found", "call not found")
    return ok(call_view(after), "Verdict recorded")
