"""Call routes: the agent's verdict on one of its calls (contact chaining reads it), and the callee's opt-out
(the do-not-call list takes the number)."""

from __future__ import annotations

from aiohttp import web

from dialer.api.appkeys import CHAINS, DNC, REPOS
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
                "succeed, and skips its other contacts when it did (see the enrollment face). With `optOut: true` "
                "(the callee asked not to be called again) the number joins the workspace's do-not-call list "
                "before the answer, and its waiting calls in every batch end `skipped` / `suppressed`."),
            responses={200: Reply(r.envelope(r.CallView, "VerdictAnswer"), "the call, its verdict included"),
                       **r.errors(400, 403, 404, 409)})
async def record_verdict(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    body = await request_body(request)
    reason, opted_out = body.get("reason"), body.get("optOut", False)
    if body.get("successful") is None and not opted_out:
        raise ApiError(400, "Bad Request", "successful is required (true or false), unless optOut is true")
    oid = parse_id(request.match_info["callId"])
    call = None if oid is None else await request.app[REPOS].calls.get(oid)
    if call is None or call["workspaceId"] != principal.workspace_id:
        raise ApiError(404, "Not Found", "call not found")
    chains = request.app[CHAINS]
    if opted_out:
        chains.ensure_placed(call)
        await request.app[DNC].opt_out(call, reason)
    after = await chains.record_verdict(call, body.get("successful"), reason, opted_out)
    if after is None:
        raise ApiError(404, "Not Found", "call not found")
    return ok(call_view(after), "Verdict recorded")
