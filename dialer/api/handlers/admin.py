"""Admin routes (/api/admin/, Bearer DIALER_ADMIN_TOKEN): workspaces, keys and agents, as the CLI does."""

from __future__ import annotations

from aiohttp import web

from dialer.api.appkeys import TENANCY
from dialer.api.auth import require_admin
from dialer.api.envelope import ApiError, ok
from dialer.services.tenancy import TenancyError, agent_view, workspace_view
from dialer.api.handlers.common import json_body


async def _workspace(request: web.Request) -> dict:
    workspace = await request.app[TENANCY].get_workspace(request.match_info["workspaceId"])
    if workspace is None:
        raise ApiError(404, "Not Found", "workspace not found")
    return workspace


async def create_workspace(request: web.Request) -> web.Response:
    require_admin(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "Bad Request", "body must be an object {name}")
    try:
        workspace, key = await request.app[TENANCY].create_workspace(body.get("name"))
    except TenancyError as exc:
        raise ApiError(400, "Bad Request", str(exc)) from None
    return ok({"workspaceId": str(workspace["_id"]), "name": workspace["name"], "apiKey": key}, "Workspace created")


async def get_workspace(request: web.Request) -> web.Response:
    require_admin(request)
    return ok(workspace_view(await _workspace(request)))


async def update_workspace(request: web.Request) -> web.Response:
    """`PATCH /api/admin/workspaces/{id}` `{credits?: int | null, addCredits?: int, normalizationAllowed?: bool,
    defaultConcurrencyLimit?: int | null}`: the workspace's settings (see Tenancy.update_settings)."""
    require_admin(request)
    workspace = await _workspace(request)
    try:
        after = await request.app[TENANCY].update_settings(workspace["_id"], await json_body(request))
    except TenancyError as exc:
        raise ApiError(400, "Bad Request", str(exc)) from None
    return ok(workspace_view(after), "Workspace updated")


async def list_workspaces(request: web.Request) -> web.Response:
    require_admin(request)
    workspaces = await request.app[TENANCY].list_workspaces()
    return ok({"workspaces": [workspace_view(w) for w in workspaces]})


async def create_key(request: web.Request) -> web.Response:
    require_admin(request)
    workspace = await _workspace(request)
    key = await request.app[TENANCY].create_key(workspace["_id"])
    return ok({"workspaceId": str(workspace["_id"]), "apiKey": key}, "API key created")


async def create_agent(request: web.Request) -> web.Response:
    require_admin(request)
    workspace = await _workspace(request)
    body = await json_body(request)
    try:
        agent = await request.app[TENANCY].create_agent(workspace["_id"], body)
    except TenancyError as exc:
        raise ApiError(400, "Bad Request", str(exc)) from None
    return ok(agent_view(agent), "Agent created")
