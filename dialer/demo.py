"""The demo tenant created at start-up with the in-memory store, so a newcomer can call the API at once."""

from __future__ import annotations

import logging

from dialer.settings import Settings
from dialer.services.tenancy import Tenancy

log = logging.getLogger("dialer.demo")
DEMO_CALLING_NUMBER = "+15005550006"
DEMO_ZONE = "America/New_York"


async def seed_demo(tenancy: Tenancy, settings: Settings) -> dict:
    workspace, key = await tenancy.create_workspace("demo")
    if settings.demo_api_key:
        await tenancy.revoke_key(key)
        key = await tenancy.create_key(workspace["_id"], settings.demo_api_key)
    agent = await tenancy.create_agent(workspace["_id"], {
        "name": "demo agent",
        "requiredVariables": [],
        "callingNumbers": [DEMO_CALLING_NUMBER],
        "timezones": [DEMO_ZONE],
    })
    # Printed on purpose, once: this is a throwaway key for an in-memory demo workspace.
    print(f"\n  demo workspace: {workspace['_id']}\n  demo agent:     {agent['_id']} "
          f"(calling number {DEMO_CALLING_NUMBER})\n  demo API key:   {key}\n", flush=True)
    log.info("demo workspace created", extra={"workspaceId": str(workspace["_id"]), "agentId": str(agent["_id"])})
    return {"workspace": workspace, "agent": agent, "apiKey": key}
