"""WebhookRepo: partner webhook endpoints, the outbox, and the messages senders lease and deliver."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from bson import ObjectId


@dataclass(frozen=True)
class OutboxEvent:
    """A change partners subscribe to, recorded by the store in the same write as the change (the outbox):
    `doc` is the call, batch or intake it reports (`kind`), `type` from dialer.core.webhook_events (None: the
    change yields no event, the relay just drops it), `at` when it happened (the document's clock)."""

    id: str
    kind: str  # call | batch | intake
    type: str | None
    at: dt.datetime
    doc: dict


class WebhookRepo(Protocol):
    """Partner webhook endpoints `{_id, workspaceId, url, events (list; empty: all), description, secret,
    previousSecret?, previousUntil?, disabled, disabledReason?, failingSince?, createdAt, updatedAt}` and
    their messages `{_id: "msg_<eventId>_<endpointId>", workspaceId, endpointId, eventId, type, body (the
    JSON sent, fixed at creation), status: pending | delivered | failed, step (attempts of the current
    schedule), nextAttemptAt, createdAt, settledAt? (when it became delivered or failed: its last attempt's time;
    unset while pending), attempts [{at, httpStatus?, error?, ms, response}], acquiredBy?, acquiredUntil?}`.
    Message ids sort as their events happened (cursor order). Messages in a final state are kept for a retention
    (DIALER_WEBHOOK_RETENTION_DAYS), then purged by the reaper (purge_messages); pending ones are kept."""

    # -- endpoints
    async def insert_endpoint(self, endpoint: dict) -> None: ...

    async def get_endpoint(self, endpoint_id: ObjectId) -> dict | None: ...

    async def list_endpoints(self, workspace_id: ObjectId) -> list[dict]:
        """The workspace's endpoints, oldest first."""

    async def update_endpoint(self, endpoint_id: ObjectId, set_fields: dict[str, Any],
                              unset: tuple[str, ...] = ()) -> dict | None:
        """Set (and unset) these fields: the endpoint after, or None if unknown."""

    async def delete_endpoint(self, endpoint_id: ObjectId) -> bool:
        """Remove the endpoint and its messages."""

    async def note_result(self, endpoint_id: ObjectId, ok: bool, now: dt.datetime) -> dict | None:
        """A delivery's result: failingSince = now on a failure if unset, removed on a success. The endpoint after."""

    # -- the outbox
    async def outbox(self, limit: int) -> list[OutboxEvent]:
        """Up to `limit` recorded events not relayed yet, oldest first."""

    async def relay(self, events: list[OutboxEvent], messages: list[dict]) -> None:
        """Write these messages (one whose _id exists is left as it is) and then drop these events from the
        outbox: a relay that dies in between is repeated without a second message (deterministic ids)."""

    # -- messages
    async def due_endpoints(self, now: dt.datetime, limit: int) -> list[ObjectId]:
        """Endpoints with a pending message due by `now` and not leased (or its lease past)."""

    async def lease(self, endpoint_id: ObjectId, now: dt.datetime, by: str, until: dt.datetime,
                    limit: int) -> list[dict]:
        """Up to `limit` of the endpoint's due, unleased pending messages, oldest first, leased to `by` until
        `until` (compare-and-set: a message is leased by one sender at a time)."""

    async def record_attempt(self, message_id: str, by: str, attempt: dict, status: str, step: int,
                             next_attempt_at: dt.datetime | None) -> bool:
        """Append the attempt, set status / step / nextAttemptAt, release the lease; only while `by` holds it.
        A final status (delivered, failed) sets settledAt to the attempt's `at`; pending unsets it."""

    async def get_message(self, message_id: str) -> dict | None: ...

    async def list_messages(self, workspace_id: ObjectId, endpoint_id: ObjectId | None, status: str | None,
                            type_: str | None, before: str | None, limit: int) -> list[dict]:
        """The workspace's messages, newest first (_id descending), before the cursor `before` if given."""

    async def requeue(self, message_id: str, now: dt.datetime, step: int) -> dict | None:
        """A message back to pending (settledAt unset), due now, at schedule position `step` (a manual retry): the
        message after."""

    async def recover(self, endpoint_id: ObjectId, since: dt.datetime, now: dt.datetime, step: int) -> int:
        """Every failed message of the endpoint created at or after `since` back to pending (settledAt unset), due
        now. How many."""

    async def oldest_pending(self) -> dt.datetime | None:
        """createdAt of the oldest pending message (and of unrelayed events' changes: the outbox's backlog)."""

    async def purge_messages(self, before: dt.datetime, limit: int) -> int:
        """Delete up to `limit` messages in a final state (delivered, failed) settled before `before` (a time of
        the injected clock, never the machine's or the database's); pending messages are never deleted. How many
        (`limit` of them: more may remain for the next run)."""
