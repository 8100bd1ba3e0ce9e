"""Do-not-call routes (/api/dnc): the workspace's list, read, added to and removed from. Use cases:
dialer/services/dnc.py. Another workspace's list is invisible: every route reads the key's own."""

from __future__ import annotations

from aiohttp import web

from dialer.api import dnc_shapes as s
from dialer.api import replies as r
from dialer.api.appkeys import DNC
from dialer.api.auth import require_workspace
from dialer.api.documented import WORKSPACE, Reply, documented, request_body, request_query
from dialer.api.envelope import ok
from dialer.api.idempotent import idempotent, per_workspace

NUMBER = {"number": "E.164 (`+` may be sent as %2B) or national"}


def route(summary: str, responses: dict, **more):
    return documented(summary, tags=("do-not-call",), security=WORKSPACE, responses=responses, **more)


@idempotent(per_workspace)
@route("List numbers as not to be called", body=s.DncBody, description=(
    "The numbers join the workspace's do-not-call list at once: no call to them is enqueued (on any face) "
    "or placed from then on (calls already waiting end `skipped` / `suppressed` when their turn comes)."),
    responses={200: Reply(r.envelope(s.DncAdded, "DncAddedAnswer"), "what was listed; impossible numbers "
                                                                    "named one by one"),
               **r.errors(400, 403)})
async def add_numbers(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    body = await request_body(request)
    added = await request.app[DNC].add(principal.workspace_id, body["numbers"], body.get("reason"),
                                       body.get("source", "api"))
    return ok(added, f"{added['added']} numbers listed")


@route("The workspace's do-not-call list, by number", query=s.DncQuery, responses={
    200: Reply(r.envelope(s.DncPage, "DncPageAnswer"), "a page of entries"), **r.errors(400, 403)})
async def list_numbers(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    query = request_query(request)
    return ok(await request.app[DNC].page(principal.workspace_id, query.prefix, query.cursor, query.limit))


@route("Is this number listed?", path=NUMBER, responses={
    200: Reply(r.envelope(s.DncEntry, "DncEntryAnswer"), "its listing"), **r.errors(400, 403, 404)})
async def get_number(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    return ok(await request.app[DNC].get(principal.workspace_id, request.match_info["number"]))


@route("Remove a number from the list", path=NUMBER, responses={
    200: Reply(r.envelope(s.DncRemoved, "DncRemovedAnswer"), "removed"), **r.errors(400, 403, 404)})
async def remove_number(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    number = await request.app[DNC].remove(principal.workspace_id, request.match_info["number"])
    return ok({"number": number}, "Number removed from the do-not-call list")
