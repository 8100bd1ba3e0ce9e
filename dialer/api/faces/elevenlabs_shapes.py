"""The ElevenLabs face's mapping: a submit request (shaped by elevenlabs_models.SubmitBody) onto our batch
settings and records, and BatchCall and recipient objects with the vendor's field names and status values.

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

from dialer.core.batch_spec import DEFAULT_RETRY, MAX_CONCURRENCY, BatchSpec
from dialer.core.clock import as_utc
from dialer.core.phones import PhoneError, PhoneNormaliser
from dialer.core.records import RecordError
from dialer.core.shapes import ShapeError
from dialer.core.windows import DEFAULT_WINDOW, valid_zone
from dialer.settings import Settings

UTC = dt.timezone.utc
RESERVED_VARIABLES = {"phoneNumber", "timezone"}  # our record's own fields: the number, and its zone
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


def shape_invalid(error: ShapeError, where: str) -> Invalid:
    """A request outside the vendor's schema: pydantic's own details, as the vendor (FastAPI) gives them."""
    return Invalid([{"loc": [where, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors[:100]])


def _problem(loc: list, msg: str, kind: str = "value_error") -> dict:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


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


def parse_submit(body: dict, max_recipients: int, now: dt.datetime) -> Submit:
    """What a submit body that fits SubmitBody (elevenlabs_models.py) asks for: the checks beyond its shape
    (the number of recipients, reserved variable names, the zone) as 422 details."""
    problems: list[dict] = []
    recipients = body["recipients"]
    if len(recipients) > max_recipients:
        problems.append(_problem(["recipients"], f"at most {max_recipients} recipients per batch", "too_long"))
    for i, recipient in enumerate(recipients[:max_recipients]):
        if len(problems) > 100:
            break
        variables = (recipient.get("conversation_initiation_client_data") or {}).get("dynamic_variables") or {}
        loc = ["recipients", i, "conversation_initiation_client_data", "dynamic_variables"]
        for name in sorted(RESERVED_VARIABLES & set(variables)):
            problems.append(_problem([*loc, name], "a reserved name: the recipient's own field says it"))
    scheduled, scheduled_at = body.get("scheduled_time_unix"), None
    if scheduled is not None:  # within SubmitBody's bounds (the native API's years): a time
        scheduled_at = dt.datetime.fromtimestamp(scheduled, UTC)
        if scheduled_at <= as_utc(now):
            scheduled_at = None  # the past: start now
    zone = body.get("timezone")
    if zone is not None and not valid_zone(zone):
        problems.append(_problem(["timezone"], f"unknown IANA time zone {zone!r}"))
    if problems:
        raise Invalid(problems[:100])
    telephony = body.get("telephony_call_config") or {}
    kept = {name: body.get(name) for name in ("branch_id", "environment", "whatsapp_params")}
    kept["telephony_call_config"] = telephony
    return Submit(body["call_name"].strip(), body["agent_id"], recipients, scheduled_at,
                  body.get("agent_phone_number_id"), zone, body.get("target_concurrency_limit"),
                  telephony.get("ringing_timeout_secs"), kept)


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


def repeated_numbers(recipients: list[dict], phones: PhoneNormaliser) -> list[dict]:
    """A 422 detail for each recipient calling someone an earlier recipient calls: the native ingestion would
    keep only the last of them (dialer/core/records.py's Planner), and a submit loses no recipient in silence.
    The callee is the Planner's: the normalised number and its extension (two extensions are two people).
    A number that is no number is left to the Planner, which says why."""
    first: dict[tuple[str, str | None], int] = {}
    problems = []
    for i, recipient in enumerate(recipients):
        try:
            number = phones.normalise(recipient["phone_number"], zones=False)
        except PhoneError:
            continue
        callee = (number.e164, number.extension)
        if callee in first:
            problems.append(_problem(["recipients", i, "phone_number"],
                                     f"duplicate phone number: the same as recipients[{first[callee]}]"))
        else:
            first[callee] = i
    return problems


def record_error_loc(error: RecordError) -> list:
    """Where a recipient the Planner refused (dialer/core/records.py) goes wrong: its variables (required ones
    missing, a name that cannot be stored, nesting too deep, an integer beyond 64 bits) at its dynamic_variables,
    a recipient too large to store at the recipient, anything else (not a number, no calling time zone for it)
    at its number."""
    about = {"variables": ["conversation_initiation_client_data", "dynamic_variables"], "record": []}
    return ["body", "recipients", error.index, *about.get(error.about, ["phone_number"])]


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
        **({"reason": rule} if (rule := stopped_by(call)) else {}),
    }


def stopped_by(call: dict) -> str | None:
    """The rule that stopped a call a rule stopped (its last history entry naming one)."""
    if call.get("outcome") != "suppressed":
        return None
    return next((h["rule"] for h in reversed(call.get("history") or []) if h.get("rule")), None)
