"""The ElevenLabs face's shapes: reading a submit request (every field of the vendor's schema, nothing
else) and writing BatchCall and recipient objects with the vendor's field names and status values.

Status mapping (DESIGN.md "Compatibility faces"):
batch: pending <- pending; in_progress <- running, paused; completed; cancelled; failed.
recipient: pending <- queued, held; dispatched <- dialing; initiated <- ringing; in_progress;
completed <- completed by a person; voicemail <- completed by a machine; failed <- busy, no_answer,
failed; cancelled <- cancelled, skipped.
Defaults: target_concurrency_limit absent -> half the account's concurrent calls (as the vendor uses
half the workspace's concurrency), at least 1; scheduled_time_unix absent or past -> now.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from dialer.core.batch_spec import DEFAULT_RETRY, MAX_CONCURRENCY, BatchSpec
from dialer.core.clock import as_utc
from dialer.core.windows import DEFAULT_WINDOW, valid_zone
from dialer.settings import Settings

UTC = dt.timezone.utc
SUBMIT_FIELDS = {"call_name", "agent_id", "recipients", "scheduled_time_unix", "agent_phone_number_id",
                 "whatsapp_params", "timezone", "branch_id", "environment", "telephony_call_config",
                 "target_concurrency_limit"}
RECIPIENT_FIELDS = {"id", "phone_number", "whatsapp_user_id", "conversation_initiation_client_data"}
RESERVED_VARIABLES = {"phoneNumber", "timezone"}  # our record's own fields: the number, and its zone
TELEPHONY_FIELDS = {"ringing_timeout_secs", "twilio_call_recording_enabled", "twilio_machine_detection"}
BATCH_STATUS = {"pending": "pending", "running": "in_progress", "paused": "in_progress", "completed": "completed",
                "cancelled": "cancelled", "failed": "failed"}
RECIPIENT_STATUS = {"queued": "pending", "held": "pending", "dialing": "dispatched", "ringing": "initiated",
                    "in_progress": "in_progress", "completed": "completed", "busy": "failed", "no_answer": "failed",
                    "failed": "failed", "cancelled": "cancelled", "skipped": "cancelled"}


class Invalid(Exception):
    """422: the request does not fit the vendor's schema; `details` are FastAPI-style {loc, msg, type}."""

    def __init__(self, details: list[dict]) -> None:
        super().__init__(details[0]["msg"] if details else "invalid")
        self.details = details


def _problem(loc: list, msg: str, kind: str = "value_error") -> dict:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def _optional(body: dict, name: str, kind: type | tuple, loc: list, problems: list) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        problems.append(_problem([*loc, name], f"must be {getattr(kind, '__name__', 'of another type')}", "type_error"))
        return None
    return value


@dataclass
class Submit:
    call_name: str
    agent_id: str
    recipients: list[dict]
    scheduled_at: dt.datetime | None
    phone_number_id: str | None
    timezone: str | None
    concurrency: int | None
    ringing_timeout: int | None
    kept_fields: dict = field(default_factory=dict)

    def batch_spec(self, calling_numbers: list[str], settings: Settings) -> BatchSpec:
        concurrency = self.concurrency or max(1, min(MAX_CONCURRENCY, settings.max_concurrent_calls // 2))
        return BatchSpec(name=self.call_name, agent_id=self.agent_id, calling_numbers=calling_numbers,
                         concurrency_limit=concurrency, window=DEFAULT_WINDOW, timezone=self.timezone,
                         scheduled_at=self.scheduled_at, retry=dict(DEFAULT_RETRY),
                         ringing_timeout=self.ringing_timeout or 60)

    def kept(self) -> dict:
        """The vendor's fields we keep and show but do not act on (branch, environment, WhatsApp...)."""
        return {"elevenlabs": self.kept_fields}


def parse_submit(body: Any, max_recipients: int, now: dt.datetime) -> Submit:
    if not isinstance(body, dict):
        raise Invalid([_problem([], "must be an object", "model_attributes_type")])
    problems: list[dict] = [_problem([name], "extra fields not permitted", "extra_forbidden")
                            for name in sorted(set(body) - SUBMIT_FIELDS)]
    for name in ("call_name", "agent_id"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            problems.append(_problem([name], "field required: a non-empty string", "missing"))
    recipients = body.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        problems.append(_problem(["recipients"], "field required: a non-empty list", "missing"))
        recipients = []
    elif len(recipients) > max_recipients:
        problems.append(_problem(["recipients"], f"at most {max_recipients} recipients per batch", "too_long"))
    for i, recipient in enumerate(recipients[:max_recipients]):
        if len(problems) > 100:
            break
        if not isinstance(recipient, dict):
            problems.append(_problem(["recipients", i], "must be an object", "model_attributes_type"))
            continue
        for name in sorted(set(recipient) - RECIPIENT_FIELDS):
            problems.append(_problem(["recipients", i, name], "extra fields not permitted", "extra_forbidden"))
        if not isinstance(recipient.get("phone_number"), str) or not recipient["phone_number"].strip():
            problems.append(_problem(["recipients", i, "phone_number"], "a phone number is required", "missing"))
        _optional(recipient, "id", str, ["recipients", i], problems)
        _optional(recipient, "whatsapp_user_id", str, ["recipients", i], problems)
        data = _optional(recipient, "conversation_initiation_client_data", dict, ["recipients", i], problems)
        if data is not None:
            loc = ["recipients", i, "conversation_initiation_client_data", "dynamic_variables"]
            variables = _optional(data, "dynamic_variables", dict, loc[:-1], problems) or {}
            for name in sorted(RESERVED_VARIABLES & set(variables)):
                problems.append(_problem([*loc, name], "a reserved name: the recipient's own field says it"))
    scheduled = _optional(body, "scheduled_time_unix", int, [], problems)
    scheduled_at = None
    if scheduled is not None:
        try:
            scheduled_at = dt.datetime.fromtimestamp(scheduled, UTC)
        except (OverflowError, OSError, ValueError):
            problems.append(_problem(["scheduled_time_unix"], "not a time"))
        if scheduled_at is not None and scheduled_at <= as_utc(now):
            scheduled_at = None  # the past: start now
    zone = _optional(body, "timezone", str, [], problems)
    if zone is not None and not valid_zone(zone):
        problems.append(_problem(["timezone"], f"unknown IANA time zone {zone!r}"))
    concurrency = _optional(body, "target_concurrency_limit", int, [], problems)
    if concurrency is not None and not 1 <= concurrency <= MAX_CONCURRENCY:
        problems.append(_problem(["target_concurrency_limit"], f"must be from 1 to {MAX_CONCURRENCY}"))
    telephony = _optional(body, "telephony_call_config", dict, [], problems) or {}
    for name in sorted(set(telephony) - TELEPHONY_FIELDS):
        problems.append(_problem(["telephony_call_config", name], "extra fields not permitted", "extra_forbidden"))
    ringing = _optional(telephony, "ringing_timeout_secs", int, ["telephony_call_config"], problems)
    if ringing is not None and not 5 <= ringing <= 600:
        problems.append(_problem(["telephony_call_config", "ringing_timeout_secs"], "must be from 5 to 600"))
    phone_number_id = _optional(body, "agent_phone_number_id", str, [], problems)
    kept = {name: body.get(name) for name in ("branch_id", "environment", "whatsapp_params")}
    for name in ("branch_id", "environment"):
        _optional(body, name, str, [], problems)
    _optional(body, "whatsapp_params", dict, [], problems)
    kept["telephony_call_config"] = telephony
    if problems:
        raise Invalid(problems[:100])
    return Submit(body["call_name"].strip(), body["agent_id"], recipients, scheduled_at, phone_number_id, zone,
                  concurrency, ringing, kept)


def submit_records(recipients: list[dict]) -> tuple[list[dict], list[dict]]:
    """Our records (phoneNumber + the dynamic variables), and per record what the call keeps beside them:
    the recipient's own id and the rest of its client data, handed to the agent."""
    records, meta = [], []
    for recipient in recipients:
        data = dict(recipient.get("conversation_initiation_client_data") or {})
        variables = data.pop("dynamic_variables", None) or {}
        records.append({**variables, "phoneNumber": recipient["phone_number"]})
        meta.append({"recipientId": recipient.get("id"), "clientData": data,
                     **({"whatsappUserId": recipient["whatsapp_user_id"]} if recipient.get("whatsapp_user_id") else {})})
    return records, meta


def _unix(value: dt.datetime | None) -> int | None:
    return None if value is None else int(as_utc(value).timestamp())


def batch_call(batch: dict, counters: dict, agent: dict | None) -> dict:
    kept = batch.get("elevenlabs") or {}
    return {
        "id": str(batch["_id"]),
        "phone_number_id": batch["callingNumbers"][0] if batch["callingNumbers"] else None,
        "phone_provider": "twilio",
        "whatsapp_params": kept.get("whatsapp_params"),
        "name": batch["name"],
        "agent_id": str(batch["agentId"]),
        "branch_id": kept.get("branch_id"),
        "environment": kept.get("environment"),
        "created_at_unix": _unix(batch["createdAt"]),
        "scheduled_time_unix": _unix(batch.get("scheduledAt") or batch.get("startedAt") or batch["createdAt"]),
        "timezone": batch.get("timezone"),
        "total_calls_dispatched": counters["dispatched"],
        "total_calls_scheduled": counters["scheduled"],
        "total_calls_finished": counters["finished"],
        "last_updated_at_unix": _unix(batch["updatedAt"]),
        "status": BATCH_STATUS[batch["status"]],
        "retry_count": batch.get("retryCount", 0),
        "telephony_call_config": {"ringing_timeout_secs": batch["ringingTimeoutSeconds"]},
        "target_concurrency_limit": batch["concurrencyLimit"],
        "agent_name": agent["name"] if agent else "",
        "branch_name": None,
    }


def recipient_view(call: dict) -> dict:
    meta = call.get("meta") or {}
    status = RECIPIENT_STATUS[call["status"]]
    if call["status"] == "completed" and call.get("outcome") == "machine":
        status = "voicemail"
    return {
        "id": meta.get("recipientId") or str(call["_id"]),
        "phone_number": call["phoneNumber"],
        "whatsapp_user_id": meta.get("whatsappUserId"),
        "status": status,
        "created_at_unix": _unix(call["createdAt"]),
        "updated_at_unix": _unix(call["updatedAt"]),
        "conversation_id": call.get("providerCallId"),
        "conversation_initiation_client_data": {**meta.get("clientData", {}), "dynamic_variables": call["variables"]},
    }
