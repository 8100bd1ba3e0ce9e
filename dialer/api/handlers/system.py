"""Health and the caller's agents."""

from __future__ import annotations

from aiohttp import web

from dialer.api.appkeys import REPOS, TENANCY
from dialer.api.auth import require_workspace
from dialer.api.envelope import ok
from dialer.services.tenancy import agent_view


async def health(request: web.Request) -> web.Response:
    return ok({"ok": True, "store": request.app[REPOS].kind})


async def list_agents(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    agents = await request.app[TENANCY].list_agents(principal.workspace_id)
    return ok({"agents": [agent_view(a) for a in agents]})
