"""Health, Prometheus metrics and the caller's agents."""

from __future__ import annotations

from aiohttp import web

from dialer.api import replies as r
from dialer.api.appkeys import CLOCK, METRICS, REPOS, TENANCY
from dialer.api.auth import require_workspace
from dialer.api.documented import PUBLIC, WORKSPACE, Reply, documented, links_to
from dialer.api.envelope import ok
from dialer.metrics import CONTENT_TYPE
from dialer.services.tenancy import agent_view


@documented("Liveness, and which store the engine runs on", tags=("system",), security=PUBLIC,
            responses={200: Reply(r.envelope(r.Health, "HealthAnswer"), "the process answers")})
async def health(request: web.Request) -> web.Response:
    return ok({"ok": True, "store": request.app[REPOS].kind})


@documented("Prometheus metrics", tags=("system",), security=PUBLIC, description=(
    "Prometheus text, without a key: bind the API to a private interface, or filter /metrics at the proxy."),
    responses={200: Reply(None, "dialer_http_requests_total, dialer_calls_in_flight, ...", media_type="text/plain")})
async def metrics(request: web.Request) -> web.Response:
    app_metrics = request.app[METRICS]
    await app_metrics.refresh(request.app[REPOS], request.app[CLOCK].now())
    return web.Response(body=app_metrics.text(), headers={"Content-Type": CONTENT_TYPE})


@documented("The caller's agents", tags=("agents",), security=WORKSPACE, responses={
    200: Reply(r.envelope(r.Agents, "AgentsAnswer"), "every agent of the key's workspace", links=links_to(
        "$response.body#/data/agents/0/agentId", "agentId", {"enroll": "enrollment_enroll"})),
    **r.errors(403)})
async def list_agents(request: web.Request) -> web.Response:
    principal = await require_workspace(request)
    agents = await request.app[TENANCY].list_agents(principal.workspace_id)
    return ok({"agents": [agent_view(a) for a in agents]})
