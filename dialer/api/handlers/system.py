"""Health, Prometheus metrics and the caller's agents."""

from __future__ import annotations

from aiohttp import web

from dialer.api.appkeys import CLOCK, METRICS, REPOS, TENANCY
from dialer.metrics import CONTENT_TYPE
from dialer.api.auth import require_workspace
from dialer.api.envelope import ok
from dialer.services.tenancy import agent_view


async def health(request: web.Request) -> web.Response:
    return ok({"ok": True, "store": request.app[REPOS].kind})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text (no key: bind the API to a private interface, or filter /metrics at the proxy)."""
    app_metrics = request.app[METRICS]
    await app_metrics.refresh(request.app[REPOS], request.app[CLOCK].now())
    return web.Response(body=app_metrics.text(), headers={"Content-Type": CONTENT_TYPE})


async def list_agents(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    agents = await request.app[TENANCY].list_agents(principal.workspace_id)
    return ok({"agents": [agent_view(a) for a in agents]})
