"""Call routes: the agent's verdict on one of its calls (contact chaining reads it)."""

from __future__ import annotations

from aiohttp import web

from dialer.api.appkeys import CHAINS, REPOS
from dialer.api.auth import require_workspace
from dialer.api.envelope import ApiError, ok
from dialer.api import replies as r
from dialer.api.documented import WORKSPACE, Reply, documented, request_body
from dialer.api.requests import VerdictBody
from dialer.services.calls import call_view
from dialer.services.tenancy import parse_id


@documented("The agent's verdict on a call: did the conversation reach its goal?", tags=("calls",),
            security=WORKSPACE, body=VerdictBody, path={"callId": "a call's callId"}, description=(
                "Contact chaining reads it: a chained contact's group moves on at once when the call did not "
                "succeed, and skips its other contacts when it did (see the enrollment face)."),
            responses={200: Reply(r.envelope(r.CallView, "VerdictAnswer"), "the call, its verdict included"),
                       **r.errors(400, 403, 404, 409)})
async def record_verdict(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    body = await request_body(request)
    reason = body.get("reason")
    oid = parse_id(request.match_info["callId"])
    call = None if oid is None else await request.app[REPOS].calls.get(oid)
    if call is None or call["workspaceId"] != principal.workspace_id:
        raise ApiError(404, "Not Found", "call not found")
    after = await request.app[CHAINS].record_verdict(call, body["successful"], reason)
    if after is None:
        raise ApiError(404, "Not Found", "call not found")
    return ok(call_view(after), "Verdict recorded")
