"""Every route of the API app, in one table. Each handler documents itself (@documented, see
dialer/api/documented.py); /openapi.json and /docs are built from this router (dialer/api/openapi.py)."""

from aiohttp import web

from dialer.api import console, openapi
from dialer.api.faces import elevenlabs, enrollment
from dialer.api.handlers import admin, batches, calls, dnc, partner_webhooks as hooks, system, webhooks


def setup_routes(app: web.Application) -> None:
    elevenlabs.setup(app)
    enrollment.setup(app)
    app.router.add_get("/health", system.health)
    app.router.add_get("/api/health", system.health)
    app.router.add_get("/metrics", system.metrics)
    app.router.add_get("/api/agents", system.list_agents)
    app.router.add_post("/api/call/createBatch", batches.create_batch)
    app.router.add_post("/api/call/addCallsToBatch", batches.add_calls_to_batch)
    app.router.add_get("/api/call/batches", batches.list_batches)
    app.router.add_get("/api/call/batches/{batchId}", batches.get_batch)
    app.router.add_delete("/api/call/batches/{batchId}", batches.delete_batch)
    app.router.add_patch("/api/call/batches/{batchId}", batches.update_batch)
    app.router.add_post("/api/call/batches/{batchId}/start", batches.start_batch)
    app.router.add_post("/api/call/batches/{batchId}/stop", batches.stop_batch)
    app.router.add_post("/api/call/batches/{batchId}/cancel", batches.cancel_batch)
    app.router.add_post("/api/call/batches/{batchId}/retry", batches.retry_batch)
    app.router.add_get("/api/call/batches/{batchId}/calls", batches.get_batch_calls)
    app.router.add_post("/api/call/batches/{batchId}/csv", batches.upload_csv)
    app.router.add_post("/api/call/calls/{callId}/verdict", calls.record_verdict)
    app.router.add_post("/webhooks/twilio/status", webhooks.twilio_status)
    app.router.add_post("/webhooks/twilio/twiml", webhooks.twilio_twiml)
    app.router.add_post("/api/webhooks/endpoints", hooks.create_endpoint)
    app.router.add_get("/api/webhooks/endpoints", hooks.list_endpoints)
    app.router.add_get("/api/webhooks/endpoints/{endpointId}", hooks.get_endpoint)
    app.router.add_patch("/api/webhooks/endpoints/{endpointId}", hooks.update_endpoint)
    app.router.add_delete("/api/webhooks/endpoints/{endpointId}", hooks.delete_endpoint)
    app.router.add_post("/api/webhooks/endpoints/{endpointId}/rotate-secret", hooks.rotate_secret)
    app.router.add_post("/api/webhooks/endpoints/{endpointId}/test", hooks.test_endpoint)
    app.router.add_post("/api/webhooks/endpoints/{endpointId}/recover", hooks.recover_endpoint)
    app.router.add_get("/api/webhooks/messages", hooks.list_messages)
    app.router.add_post("/api/webhooks/messages/{messageId}/retry", hooks.retry_message)
    app.router.add_post("/api/dnc", dnc.add_numbers)
    app.router.add_get("/api/dnc", dnc.list_numbers)
    app.router.add_get("/api/dnc/{number}", dnc.get_number)
    app.router.add_delete("/api/dnc/{number}", dnc.remove_number)
    app.router.add_get("/api/admin/workspaces", admin.list_workspaces)
    app.router.add_post("/api/admin/workspaces", admin.create_workspace)
    app.router.add_get("/api/admin/workspaces/{workspaceId}", admin.get_workspace)
    app.router.add_patch("/api/admin/workspaces/{workspaceId}", admin.update_workspace)
    app.router.add_post("/api/admin/workspaces/{workspaceId}/keys", admin.create_key)
    app.router.add_post("/api/admin/workspaces/{workspaceId}/keys/revoke", admin.revoke_key)
    app.router.add_post("/api/admin/workspaces/{workspaceId}/agents", admin.create_agent)
    console.setup(app)
    openapi.setup(app)
