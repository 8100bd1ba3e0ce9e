"""The demo tenant of the embedded store, so a newcomer can call the API at once.

Created at the first start on a new data file (its API key printed once: only its hash is kept) and
found again at every later start, so a restart keeps the workspace, its agent and its batches.
"""

from __future__ import annotations

import logging

from dialer.settings import Settings
from dialer.services.tenancy import Tenancy

log = logging.getLogger("dialer.demo")
DEMO_NAME = "demo"
DEMO_CALLING_NUMBER = "+15005550006"
DEMO_ZONE = "America/New_York"


async def seed_demo(tenancy: Tenancy, settings: Settings) -> dict:
    workspace = next((w for w in await tenancy.list_workspaces() if w.get("name") == DEMO_NAME), None)
    if workspace is not None:
        agents = await tenancy.list_agents(workspace["_id"])
        key = settings.demo_api_key or None
        if key and await tenancy.authenticate(key) is None:
            await tenancy.create_key(workspace["_id"], key)
        print(f"\n  demo workspace: {workspace['_id']} (kept from an earlier start)\n"
              + (f"  demo agent:     {agents[0]['_id']}\n" if agents else "")
              + ("  demo API key:   the one configured (DIALER_DEMO_API_KEY or demo_api_key)\n" if key else
                 "  demo API key:   printed when the workspace was created; "
                 f"`dialer key-create {workspace['_id']}` makes another\n"), flush=True)
        return {"workspace": workspace, "agent": agents[0] if agents else None, "apiKey": key}
    workspace, key = await tenancy.create_workspace(DEMO_NAME)
    if settings.demo_api_key:
        await tenancy.revoke_key(key)
        key = await tenancy.create_key(workspace["_id"], settings.demo_api_key)
    agent = await tenancy.create_agent(workspace["_id"], {
        "name": "demo agent",
        "requiredVariables": [],
        "callingNumbers": [DEMO_CALLING_NUMBER],
        "timezones": [DEMO_ZONE],
    })
    # Printed on purpose, once: the key of a demo workspace on this machine (only its hash is stored). A key the
    # operator configured is not: they know it, and the output goes to logs (journald, a container's) kept for long.
    shown = "the one configured (DIALER_DEMO_API_KEY or demo_api_key)" if settings.demo_api_key else key
    print(f"\n  demo workspace: {workspace['_id']}\n  demo agent:     {agent['_id']} "
          f"(calling number {DEMO_CALLING_NUMBER})\n  demo API key:   {shown}\n", flush=True)
    log.info("demo workspace created", extra={"workspaceId": str(workspace["_id"]), "agentId": str(agent["_id"])})
    return {"workspace": workspace, "agent": agent, "apiKey": key}
