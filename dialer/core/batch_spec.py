"""Batch settings: validating what `createBatch` is given into the stored settings (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from dialer.core.clock import as_utc
from dialer.core.phones import PhoneError, PhoneNormaliser
from dialer.core.statuses import RETRYABLE_OUTCOMES
from dialer.core.windows import CallingWindow, WindowError, valid_zone

MAX_CONCURRENCY = 1000
DEFAULT_CONCURRENCY = 10
DEFAULT_RINGING_TIMEOUT = 60
DEFAULT_RETRY = {"maxAttempts": 1, "delaySeconds": 600, "on": ["busy", "no_answer"]}
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
KNOWN_FIELDS = {
    "name", "agentId", "callingNumbers", "concurrencyLimit", "callingWindow", "timezone",
    "scheduledAt", "retry", "ringingTimeoutSeconds",
}


class BatchSpecError(ValueError):
    """A batch setting is wrong; the message names the field and the reason."""


@dataclass(frozen=True)
class BatchSpec:
    name: str
    agent_id: str | None
    calling_numbers: list[str]
    concurrency_limit: int
    window: CallingWindow
    timezone: str | None
    scheduled_at: dt.datetime | None
    retry: dict
    ringing_timeout: int


def _int(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BatchSpecError(f"{name} must be an integer from {low} to {high}")
    return value


def parse_datetime(value: Any, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise BatchSpecError(f"{name} must be an ISO 8601 date-time string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BatchSpecError(f"{name} must be an ISO 8601 date-time, e.g. 2026-11-23T09:00:00Z") from None
    if parsed.tzinfo is None:
        raise BatchSpecError(f"{name} must include a UTC offset or Z")
    try:
        value = as_utc(parsed)
    except OverflowError:
        value = None
    if value is None or not EARLIEST <= value <= LATEST:
        raise BatchSpecError(f"{name} must be between {EARLIEST.year} and {LATEST.year - 1}")
    return value


def parse_retry(value: Any) -> dict:
    if value is None:
        return dict(DEFAULT_RETRY)
    if not isinstance(value, dict):
        raise BatchSpecError("retry must be an object {maxAttempts, delaySeconds, on}")
    unknown = set(value) - {"maxAttempts", "delaySeconds", "on"}
    if unknown:
        raise BatchSpecError(f"retry has unknown fields: {sorted(unknown)}")
    merged = {**DEFAULT_RETRY, **value}
    attempts, delay, on = merged["maxAttempts"], merged["delaySeconds"], merged["on"]
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 20:
        raise BatchSpecError("retry.maxAttempts must be an integer from 1 to 20 (1 = no retry)")
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 7 * 86400:
        raise BatchSpecError("retry.delaySeconds must be a number from 0 to 604800")
    if not isinstance(on, list) or not all(isinstance(o, str) and o in RETRYABLE_OUTCOMES for o in on):
        raise BatchSpecError(f"retry.on must be a list of outcomes from {sorted(RETRYABLE_OUTCOMES)}")
    return {"maxAttempts": attempts, "delaySeconds": delay, "on": sorted(set(on))}


def parse_batch_spec(body: Any, phones: PhoneNormaliser) -> BatchSpec:
    if not isinstance(body, dict):
        raise BatchSpecError("body must be a JSON object")
    unknown = set(body) - KNOWN_FIELDS
    if unknown:
        raise BatchSpecError(f"unknown fields: {sorted(unknown)}")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise BatchSpecError("name is required: a non-empty string of at most 200 characters")
    agent_id = body.get("agentId")
    if agent_id is not None and not isinstance(agent_id, str):
        raise BatchSpecError("agentId must be a string")
    raw_numbers = body.get("callingNumbers", [])
    if not isinstance(raw_numbers, list):
        raise BatchSpecError("callingNumbers must be a list of phone numbers")
    try:
        numbers = phones.e164_each(raw_numbers)
    except PhoneError as exc:
        raise BatchSpecError(f"callingNumbers: {exc}") from None
    if agent_id is None and not numbers:
        raise BatchSpecError("give agentId or callingNumbers")
    try:
        window = CallingWindow.parse(body.get("callingWindow"))
    except WindowError as exc:
        raise BatchSpecError(f"callingWindow: {exc}") from None
    zone = body.get("timezone")
    if zone is not None and not valid_zone(zone):
        raise BatchSpecError(f"timezone: unknown IANA time zone {zone!r}")
    scheduled = body.get("scheduledAt")
    return BatchSpec(
        name=name.strip(),
        agent_id=agent_id,
        calling_numbers=sorted(set(numbers)),
        concurrency_limit=_int(body, "concurrencyLimit", DEFAULT_CONCURRENCY, 1, MAX_CONCURRENCY),
        window=window,
        timezone=zone,
        scheduled_at=None if scheduled is None else parse_datetime(scheduled, "scheduledAt"),
        retry=parse_retry(body.get("retry")),
        ringing_timeout=_int(body, "ringingTimeoutSeconds", DEFAULT_RINGING_TIMEOUT, 5, 600),
    )


UPDATABLE_FIELDS = ("name", "concurrencyLimit", "callingWindow", "retry", "ringingTimeoutSeconds")


def parse_batch_update(body: Any) -> dict[str, Any]:
    """A PATCH body: some of UPDATABLE_FIELDS, validated as createBatch does; the stored fields to set."""
    if not isinstance(body, dict) or not body:
        raise BatchSpecError(f"body must be a JSON object with some of {list(UPDATABLE_FIELDS)}")
    unknown = set(body) - set(UPDATABLE_FIELDS)
    if unknown:
        raise BatchSpecError(f"unknown or unchangeable fields: {sorted(unknown)}; a batch's {list(UPDATABLE_FIELDS)} "
                             "can change")
    changes: dict[str, Any] = {}
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise BatchSpecError("name must be a non-empty string of at most 200 characters")
        changes["name"] = name.strip()
    if "concurrencyLimit" in body:
        changes["concurrencyLimit"] = _int(body, "concurrencyLimit", 0, 1, MAX_CONCURRENCY)
    if "ringingTimeoutSeconds" in body:
        changes["ringingTimeoutSeconds"] = _int(body, "ringingTimeoutSeconds", 0, 5, 600)
    if "callingWindow" in body:
        try:
            changes["callingWindow"] = CallingWindow.parse(body["callingWindow"]).to_doc()
        except WindowError as exc:
            raise BatchSpecError(f"callingWindow: {exc}") from None
    if "retry" in body:
        changes["retry"] = parse_retry(body["retry"])
    return changes
