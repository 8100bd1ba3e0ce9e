"""Admin routes (/api/admin/, Bearer DIALER_ADMIN_TOKEN): workspaces, keys and agents, as the CLI does. The
routes that write take an Idempotency-Key, the admin token's own (apart from every workspace's keys): those
that create, and the settings' change (`addCredits` retried would add twice)."""

from __future__ import annotations

from aiohttp import web

from dialer.api import replies as r
from dialer.api.appkeys import TENANCY
from dialer.api.auth import require_admin
from dialer.api.documented import ADMIN, Reply, documented, links_to, request_body
from dialer.api.envelope import ApiError, ok
from dialer.api.idempotent import CLAIM, idempotent, per_admin
from dialer.api.requests import AgentBody, RevokeKeyBody, WorkspaceBody, WorkspaceSettingsBody
from dialer.services.tenancy import TenancyError, agent_view, workspace_view

WORKSPACE_ID = {"workspaceId": "from POST /api/admin/workspaces"}


def route(summary: str, responses: dict, **more):
    return documented(summary, tags=("admin",), security=ADMIN, responses=responses, **more)


async def _workspace(request: web.Request) -> dict:
    workspace = await request.app[TENANCY].get_workspace(request.match_info["workspaceId"])
    if workspace is None:
        raise ApiError(404, "Not Found", "workspace not found")
    return workspace


@idempotent(per_admin)
@route("Create a workspace and its first API key", body=WorkspaceBody, responses={
    200: Reply(r.envelope(r.NewWorkspace, "NewWorkspaceAnswer"), "the workspace and its key", links=links_to(
        "$response.body#/data/workspaceId", "workspaceId", {"key": "admin_create_key", "agent": "admin_create_agent"})),
    **r.errors(400, 403)})
async def create_workspace(request: web.Request) -> web.Response:
    require_admin(request)
    body = await request_body(request)
    try:
        workspace, key = await request.app[TENANCY].create_workspace(body["name"], request.get(CLAIM))
    except TenancyError as exc:
        raise ApiError(400, "Bad Request", str(exc)) from None
    return ok({"workspaceId": str(workspace["_id"]), "name": workspace["name"], "apiKey": key}, "Workspace created")


@route("A workspace and its settings", path=WORKSPACE_ID, responses={
    200: Reply(r.envelope(r.WorkspaceView, "WorkspaceAnswer"), "the workspace"), **r.errors(403, 404)})
async def get_workspace(request: web.Request) -> web.Response:
    require_admin(request)
    return ok(workspace_view(await _workspace(request)))


@idempotent(per_admin)
@route("Change a workspace's settings: credits, the normalizeFields allowlist, enrollment concurrency, "
       "the compliance profile and the attempts per number per day",
       path=WORKSPACE_ID, body=WorkspaceSettingsBody, responses={
           200: Reply(r.envelope(r.WorkspaceView, "WorkspaceAnswer"), "the workspace after"),
           **r.errors(400, 403, 404)})
async def update_workspace(request: web.Request) -> web.Response:
    """The settings are Tenancy.update_settings's (the CLI's `workspace-set` uses this route)."""
    require_admin(request)
    workspace = await _workspace(request)
    body = await request_body(request)
    try:
        claim = request.get(CLAIM)  # under an Idempotency-Key: addCredits noted under the claim
        after = await request.app[TENANCY].update_settings(workspace["_id"], body, claim and claim.ids.hex())
    except TenancyError as exc:
        raise ApiError(400, "Bad Request", str(exc)) from None
    return ok(workspace_view(after), "Workspace updated")


@route("Every workspace", responses={
    200: Reply(r.envelope(r.Workspaces, "WorkspacesAnswer"), "their ids, names and settings"), **r.errors(403)})
async def list_workspaces(request: web.Request) -> web.Response:
    require_admin(request)
    workspaces = await request.app[TENANCY].list_workspaces()
    return ok({"workspaces": [workspace_view(w) for w in workspaces]})


@idempotent(per_admin)
@route("Another API key for a workspace", path=WORKSPACE_ID, responses={
    200: Reply(r.envelope(r.NewKey, "NewKeyAnswer"), "the key, shown once"), **r.errors(403, 404)})
async def create_key(request: web.Request) -> web.Response:
    require_admin(request)
    workspace = await _workspace(request)
    claim = request.get(CLAIM)  # under an Idempotency-Key: the key's id is the claim's first
    key = await request.app[TENANCY].create_key(workspace["_id"], key_id=claim and claim.object_id(0))
    return ok({"workspaceId": str(workspace["_id"]), "apiKey": key}, "API key created")


@route("Revoke one of a workspace's API keys (a key rotation: create the new key first, then revoke the old)",
       path=WORKSPACE_ID, body=RevokeKeyBody, responses={
           200: Reply(r.envelope(r.RevokedKey, "RevokedKeyAnswer"), "the key is refused from now on"),
           **r.errors(400, 403, 404)})
async def revoke_key(request: web.Request) -> web.Response:
    """No Idempotency-Key: repeated, it changes nothing more (a key already revoked is a 404, as one never issued)."""
    require_admin(request)
    workspace = await _workspace(request)
    key = (await request_body(request))["apiKey"]
    if not await request.app[TENANCY].revoke_key(key, workspace["_id"]):
        raise ApiError(404, "Not Found", "no live API key of this workspace matches apiKey")
    return ok({"workspaceId": str(workspace["_id"]), "revoked": True, "hint": key[:6] + "…"}, "API key revoked")


@idempotent(per_admin)
@route("Create an agent in a workspace", path=WORKSPACE_ID, body=AgentBody, responses={
    200: Reply(r.envelope(r.AgentView, "AgentAnswer"), "the agent"), **r.errors(400, 403, 404)})
async def create_agent(request: web.Request) -> web.Response:
    require_admin(request)
    workspace = await _workspace(request)
    body = await request_body(request)
    try:
        claim = request.get(CLAIM)  # under an Idempotency-Key: the agent's id is the claim's first
        agent = await request.app[TENANCY].create_agent(workspace["_id"], body, claim and claim.object_id(0))
    except TenancyError as exc:
        raise ApiError(400, "Bad Request", str(exc)) from None
    return ok(agent_view(agent), "Agent created")
