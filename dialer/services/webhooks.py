"""Partner webhooks, the use cases: a workspace's endpoints (create, read, change, delete, rotate the
secret), their messages (the delivery log, a retry, a recovery, a test ping) and how a message is made.

Secrets are Standard Webhooks' `whsec_` + base64 of 32 random bytes, shown once (on creation and on
rotation); a rotated-out secret keeps signing beside the new one for 24 h. Nothing here returns a secret
except those two answers, and nothing logs one. A disabled endpoint takes no retry, recovery or test (409):
its sender would fail each message at once, so the answer would claim a delivery that is never tried. Deliveries themselves are dialer/delivery's.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets
from typing import Any

from bson import ObjectId

from dialer.core.clock import Clock, iso
from dialer.core.webhook_events import EVENT_TYPES
from dialer.ports import WebhookRepo
from dialer.services.errors import Refused
from dialer.services.tenancy import parse_id
from dialer.services.webhook_urls import HostUnresolvedNow, UrlRefused, check_url

log = logging.getLogger("dialer.webhooks")
ROTATION_OVERLAP = dt.timedelta(hours=24)
MESSAGE_STATUSES = ("pending", "delivered", "failed")
DEFAULT_PAGE, MAX_PAGE = 50, 200
SVIX_DELAYS = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def event_body(type_: str, at: dt.datetime, data: dict) -> str:
    """The message's body, as sent on every attempt: {type, timestamp, data}."""
    return json.dumps({"type": type_, "timestamp": iso(at), "data": data}, ensure_ascii=False, separators=(",", ":"))


def new_message(endpoint: dict, event_id: str, type_: str, body: str, now: dt.datetime, first_delay: float) -> dict:
    return {"_id": f"msg_{event_id}_{endpoint['_id']}", "workspaceId": endpoint["workspaceId"],
            "endpointId": endpoint["_id"], "eventId": event_id, "type": type_, "body": body, "status": "pending",
            "step": 0, "nextAttemptAt": now + dt.timedelta(seconds=first_delay), "createdAt": now, "attempts": []}


def subscribed(endpoint: dict, type_: str) -> bool:
    return not endpoint.get("disabled") and (not endpoint.get("events") or type_ in endpoint["events"])


def endpoint_view(endpoint: dict, secret: str | None = None) -> dict:
    view = {"endpointId": str(endpoint["_id"]), "url": endpoint["url"], "events": endpoint.get("events") or [],
            "description": endpoint.get("description") or "", "disabled": bool(endpoint.get("disabled")),
            "disabledReason": endpoint.get("disabledReason"), "failingSince": iso(endpoint.get("failingSince")),
            "createdAt": iso(endpoint["createdAt"]), "updatedAt": iso(endpoint.get("updatedAt"))}
    if secret is not None:
        view["secret"] = secret
    return view


def message_view(message: dict) -> dict:
    return {"messageId": message["_id"], "endpointId": str(message["endpointId"]), "eventId": message["eventId"],
            "type": message["type"], "status": message["status"], "payload": json.loads(message["body"]),
            "createdAt": iso(message.get("createdAt")), "nextAttemptAt": iso(message.get("nextAttemptAt"))
            if message["status"] == "pending" else None,
            "attempts": [{**a, "at": iso(a.get("at"))} for a in message.get("attempts", ())]}


def check_events(events: Any) -> list[str]:
    unknown = sorted({e for e in events if e not in EVENT_TYPES}) if isinstance(events, list) else None
    if unknown:
        raise Refused(400, "Bad Request", f"unknown event types: {unknown}; use {list(EVENT_TYPES)}")
    return list(dict.fromkeys(events or []))


class Webhooks:
    def __init__(self, repo: WebhookRepo, clock: Clock, allow_insecure: bool, delays: tuple[float, ...],
                 resolver=None) -> None:
        self.repo = repo
        self.resolver = resolver  # the sender's too (the composition's): one answer for checks and connections
        self.clock = clock
        self.allow_insecure = allow_insecure
        self.delays = delays

    async def _url(self, url: str) -> str:
        try:
            await check_url(url, self.allow_insecure, self.resolver)
        except HostUnresolvedNow as exc:  # a 503 is not kept under an Idempotency-Key: the retry asks DNS again
            raise Refused(503, "Service Unavailable", f"{exc}: try again") from None
        except UrlRefused as exc:
            raise Refused(400, "Bad Request", str(exc)) from None
        return url

    async def endpoint(self, workspace_id: ObjectId, endpoint_id: Any) -> dict:
        found = await self.repo.get_endpoint(parse_id(endpoint_id))
        if found is None or found["workspaceId"] != workspace_id:
            raise Refused(404, "Not Found", "webhook endpoint not found")
        return found

    async def enabled_endpoint(self, workspace_id: ObjectId, endpoint_id: Any) -> dict:
        """The endpoint, when it may be sent to: a disabled one would fail every message at once (409)."""
        found = await self.endpoint(workspace_id, endpoint_id)
        if found.get("disabled"):
            why = f" ({found['disabledReason']})" if found.get("disabledReason") else ""
            raise Refused(409, "Conflict", f"the webhook endpoint is disabled{why}: enable it with PATCH "
                                           '{"disabled": false} first', {"disabled": True})
        return found

    async def create(self, workspace_id: ObjectId, body: dict) -> dict:
        now = self.clock.now()
        secret = new_secret()
        endpoint = {"_id": ObjectId(), "workspaceId": workspace_id, "url": await self._url(body["url"]),
                    "events": check_events(body.get("events") or []), "description": body.get("description") or "",
                    "secret": secret, "disabled": False, "createdAt": now, "updatedAt": now}
        await self.repo.insert_endpoint(endpoint)
        log.info("webhook endpoint created", extra={"endpointId": str(endpoint["_id"]), "workspaceId": str(workspace_id)})
        return endpoint_view(endpoint, secret)

    async def list(self, workspace_id: ObjectId) -> list[dict]:
        return [endpoint_view(e) for e in await self.repo.list_endpoints(workspace_id)]

    async def update(self, workspace_id: ObjectId, endpoint_id: Any, body: dict) -> dict:
        endpoint = await self.endpoint(workspace_id, endpoint_id)
        changes: dict[str, Any] = {"updatedAt": self.clock.now()}
        unset: tuple[str, ...] = ()
        if "url" in body:
            changes["url"] = await self._url(body["url"])
        if "events" in body:
            changes["events"] = check_events(body["events"])
        if "description" in body:
            changes["description"] = body["description"]
        if "disabled" in body:
            changes["disabled"] = body["disabled"]
            if not body["disabled"]:  # enabled again: a fresh start
                unset = ("disabledReason", "failingSince")
        return endpoint_view(await self.repo.update_endpoint(endpoint["_id"], changes, unset) or endpoint)

    async def delete(self, workspace_id: ObjectId, endpoint_id: Any) -> None:
        endpoint = await self.endpoint(workspace_id, endpoint_id)
        await self.repo.delete_endpoint(endpoint["_id"])

    async def rotate(self, workspace_id: ObjectId, endpoint_id: Any) -> dict:
        endpoint = await self.endpoint(workspace_id, endpoint_id)
        now, secret = self.clock.now(), new_secret()
        changed = await self.repo.update_endpoint(endpoint["_id"], {
            "secret": secret, "previousSecret": endpoint["secret"], "previousUntil": now + ROTATION_OVERLAP,
            "updatedAt": now})
        log.info("webhook secret rotated", extra={"endpointId": str(endpoint["_id"])})
        return endpoint_view(changed or endpoint, secret)

    async def messages(self, workspace_id: ObjectId, endpoint_id: str | None, status: str | None,
                       type_: str | None, cursor: str | None, limit: int) -> dict:
        endpoint = (await self.endpoint(workspace_id, endpoint_id))["_id"] if endpoint_id else None
        found = await self.repo.list_messages(workspace_id, endpoint, status, type_, cursor, limit + 1)
        page = found[:limit]
        return {"messages": [message_view(m) for m in page],
                "nextCursor": page[-1]["_id"] if len(found) > limit else None}

    async def message(self, workspace_id: ObjectId, message_id: str) -> dict:
        found = await self.repo.get_message(message_id)
        if found is None or found["workspaceId"] != workspace_id:
            raise Refused(404, "Not Found", "webhook message not found")
        return found

    async def retry(self, workspace_id: ObjectId, message_id: str) -> dict:
        """An attempt now. A delivered or failed message gets one more (failed again: failed again); a pending
        one has its next attempt brought forward and keeps the rest of its schedule."""
        message = await self.message(workspace_id, message_id)
        await self.enabled_endpoint(workspace_id, message["endpointId"])
        last = len(self.delays) - 1
        step = min(message.get("step", 0), last) if message["status"] == "pending" else last
        return message_view(await self.repo.requeue(message["_id"], self.clock.now(), step) or message)

    async def recover(self, workspace_id: ObjectId, endpoint_id: Any, since: dt.datetime) -> int:
        """Every message of the endpoint that failed since then gets one more attempt, now."""
        endpoint = await self.enabled_endpoint(workspace_id, endpoint_id)
        return await self.repo.recover(endpoint["_id"], since, self.clock.now(), len(self.delays) - 1)

    async def test(self, workspace_id: ObjectId, endpoint_id: Any) -> dict:
        """A webhook.test event to this endpoint alone, delivered as any other message."""
        endpoint = await self.enabled_endpoint(workspace_id, endpoint_id)
        now = self.clock.now()
        message = new_message(endpoint, str(ObjectId()), "webhook.test",
                              event_body("webhook.test", now, {"endpointId": str(endpoint["_id"])}), now, 0)
        await self.repo.relay([], [message])
        return message_view(message)
