"""The relay: events the stores recorded in their outbox become messages, one per subscribed endpoint of
the event's workspace, each with the body it will carry on every attempt: {type, timestamp, data}.

data: a call as GET .../calls shows it, with the partner's own ids (an ElevenLabs recipient's `id`, an
enrollment contact's index, in `contact`) and its duration and end; a batch as GET shows it, counters
included (read when relayed); an enrollment's 202 body. Messages are named after their event, so a relay
repeated after a crash writes nothing twice (WebhookRepo.relay).
"""

from __future__ import annotations

import json
import logging

from dialer.core.clock import Clock, iso
from dialer.ports import OutboxEvent, Repositories
from dialer.services.batches import batch_view, counters_view
from dialer.services.calls import call_view
from dialer.services.webhooks import event_body, new_message, subscribed

log = logging.getLogger("dialer.webhooks")
BATCH = 200


async def event_data(repos: Repositories, event: OutboxEvent) -> dict:
    doc = event.doc
    if event.kind == "call":
        meta = doc.get("meta") or {}
        return {**call_view(doc), "workspaceId": str(doc["workspaceId"]), "recipientId": meta.get("recipientId"),
                "duration": doc.get("duration"), "finishedAt": iso(doc.get("finishedAt")),
                "answeredBy": doc.get("answeredBy")}
    if event.kind == "batch":
        return batch_view(doc, counters_view(await repos.calls.tallies(doc["_id"])))
    return json.loads(doc["answer"])  # the 202's body, kept as sent


async def relay_once(repos: Repositories, clock: Clock, first_delay: float) -> int:
    """Relay up to BATCH events; how many were taken from the outbox."""
    events = await repos.webhooks.outbox(BATCH)
    if not events:
        return 0
    endpoints: dict = {}
    messages = []
    for event in events:
        if event.type is None:
            continue
        workspace = event.doc["workspaceId"]
        if workspace not in endpoints:
            endpoints[workspace] = await repos.webhooks.list_endpoints(workspace)
        targets = [e for e in endpoints[workspace] if subscribed(e, event.type)]
        if targets:
            body = event_body(event.type, event.at, await event_data(repos, event))
            messages += [new_message(e, event.id, event.type, body, clock.now(), first_delay) for e in targets]
    await repos.webhooks.relay(events, messages)
    log.debug("webhook events relayed", extra={"events": len(events), "messages": len(messages)})
    return len(events)
