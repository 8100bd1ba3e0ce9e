"""Ingestion planning: validating addCallsToBatch records and turning them into call plans (pure, no I/O).

Everything here runs before the first write, so a request with any bad record writes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Iterator, Sequence

import bson
import orjson
from pydantic import ConfigDict, Field, SkipValidation

from dialer.core.phones import PhoneError, PhoneNormaliser
from dialer.core.shapes import Reason, Shape, ShapeError, check
from dialer.core.windows import CallingWindow, valid_zone

MAX_LISTED_ERRORS = 50
MAX_ECHO = 64  # characters of a rejected record's phoneNumber echoed back (longer than any number: it is not kept)
HORIZON_DAYS = 15


@dataclass(frozen=True, slots=True)
class RecordError:
    index: int
    phone_number: Any
    reason: str
    about: str = "phoneNumber"  # what the reason is about: phoneNumber, variables, timezone or record (its size)

    def view(self) -> dict:
        phone = self.phone_number[:MAX_ECHO] if isinstance(self.phone_number, str) else None
        return {"index": self.index, "phoneNumber": phone, "reason": self.reason}


@dataclass(slots=True)
class PlannedCall:
    """One distinct number of a request, ready to be written."""

    index: int  # position of the record that won (the last one for its number)
    e164: str
    raw_phone: str
    extension: str | None
    variables: dict
    zones: tuple[str, ...]
    zone_source: str  # record | number | batch | agent | multi
    earliest: dt.datetime | None  # first instant the window is open in every zone
    duplicates: int = 0  # earlier records of this request collapsed into this one
    meta: dict | None = None  # what a face keeps with the call beside its variables (a recipient's id...)
    # The call's id, chosen before it is written: by the enrollment face (a resumed intake writes it once)
    # and by addCallsToBatch under an Idempotency-Key (a retry after a crash finds it, see ingestion.py).
    call_id: Any = None
    # Set by the enrollment face (dialer/core/enrollment.py), whose calls are written by `CallRepo.insert_new`:
    held: bool = False  # waits for its group (contact chaining) instead of being queued
    group: dict | None = None  # {key, seq, policy} of its chaining group
    key_suffix: str = ""  # added to activeKey: a later duplicate of a callee, waiting its turn
    # The history entry of a call a rule stopped before it was queued (a face that shows such calls, the
    # ElevenLabs face): `CallRepo.insert_new` writes it `skipped` with outcome `suppressed`.
    suppressed: dict | None = None


@dataclass
class Plan:
    calls: list[PlannedCall] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    records: int = 0

    @property
    def collapsed(self) -> int:
        return self.records - len(self.calls) - len(self.errors)

    def chunks(self, size: int) -> Iterator[list[PlannedCall]]:
        for start in range(0, len(self.calls), size):
            yield self.calls[start:start + size]

    def error_view(self) -> dict:
        return {
            "invalidRecords": len(self.errors),
            "errors": [e.view() for e in self.errors[:MAX_LISTED_ERRORS]],
            "errorsTruncated": len(self.errors) > MAX_LISTED_ERRORS,
        }


@dataclass(frozen=True)
class IngestContext:
    """What validation needs to know about the batch and its agent."""

    required_variables: Sequence[str]
    window: CallingWindow
    batch_zone: str | None
    agent_zone: str | None
    not_before: dt.datetime  # now, or the batch's scheduled start if later


class Planner:
    def __init__(self, phones: PhoneNormaliser, ctx: IngestContext) -> None:
        self.phones = phones
        self.ctx = ctx
        self._earliest: dict[tuple[str, ...], dt.datetime | None] = {}
        self._checked_names: dict[frozenset, str | None] = {}

    def plan(self, call_data: list) -> Plan:
        plan = Plan(records=len(call_data))
        by_callee: dict[tuple[str, str | None], PlannedCall] = {}
        for index, record in enumerate(call_data):
            call = self.plan_one(index, record, plan.errors)
            if call is None:
                continue
            # The callee is the number and its extension: two extensions behind one number are two people.
            callee = (call.e164, call.extension)
            previous = by_callee.get(callee)
            if previous is not None:
                # Same rule as a pending call already stored: the later record replaces the earlier,
                # and takes its place in the order (re-inserting keeps the dict in winner order).
                call.duplicates = previous.duplicates + 1
                del by_callee[callee]
            by_callee[callee] = call
        plan.calls = list(by_callee.values())
        return plan

    def earliest(self, zones: tuple[str, ...]) -> dt.datetime | None:
        if zones not in self._earliest:
            self._earliest[zones] = self.ctx.window.next_open(self.ctx.not_before, zones, HORIZON_DAYS)
        return self._earliest[zones]

    def plan_one(self, index: int, record: Any, errors: list[RecordError]) -> PlannedCall | None:
        if not isinstance(record, dict):
            errors.append(RecordError(index, None, "record must be an object"))
            return None
        raw = record.get("phoneNumber")
        if raw is None:
            errors.append(RecordError(index, None, "phoneNumber is required"))
            return None
        try:
            number = self.phones.normalise(raw)
        except PhoneError as exc:
            errors.append(RecordError(index, raw, str(exc)))
            return None
        variables = dict(record)
        del variables["phoneNumber"]
        given_zone = variables.pop("timezone", None)
        problem, about = self._variables_problem(variables), "variables"
        if problem is None:
            if given_zone is None and len(number.zones) == 1:  # the common case, inline
                zones, source = number.zones, "number"
            else:
                zones, source, problem = self._zones(given_zone, number.zones)
                about = "timezone"
        if problem is not None:
            errors.append(RecordError(index, raw, problem, about))
            return None
        earliest = self.earliest(zones)
        if earliest is None:
            if self.ctx.window.never_open_together(zones):
                errors.append(RecordError(index, raw, "the number maps to several time zones whose calling windows "
                                                      "never overlap; give the record a timezone"))
                return None
            # Open together only in another season: wait at the horizon, the dispatcher looks again then.
            earliest = self.ctx.not_before + dt.timedelta(days=HORIZON_DAYS)
        return PlannedCall(index, number.e164, raw, number.extension, variables, zones, source, earliest)

    def _variables_problem(self, variables: dict) -> str | None:
        missing = [name for name in self.ctx.required_variables if variables.get(name) in (None, "")]
        if missing:
            return f"missing required variables: {', '.join(missing)}"
        keys = frozenset(variables)
        if keys not in self._checked_names:  # records of one request mostly share their field names
            self._checked_names[keys] = next((variable_name_problem(key) for key in keys if bad_variable_name(key)), None)
        problem = self._checked_names[keys]
        if problem is None:
            for value in variables.values():
                if type(value) in (dict, list, int):
                    problem = _value_problem(value, 1)
                    if problem:
                        break
        return problem

    def _zones(self, given: Any, candidates: tuple[str, ...]):
        if given is not None:
            if not valid_zone(given):
                return (), "", f"unknown time zone {given!r} (use an IANA name such as America/New_York)"
            return (given,), "record", None
        if len(candidates) == 1:
            return candidates, "number", None
        if self.ctx.batch_zone:
            return (self.ctx.batch_zone,), "batch", None
        if self.ctx.agent_zone:
            return (self.ctx.agent_zone,), "agent", None
        if not candidates:
            return (), "", "no time zone is known for this number; give the record a timezone"
        return candidates, "multi", None


MAX_DEPTH = 32
INT64 = range(-(2**63), 2**63)
# MongoDB refuses documents over 16 MiB; a call document is its record plus our fields and history.
MAX_RECORD_BYTES = 15 * 1024 * 1024
# BSON spends up to ~6 bytes per JSON byte (an array of small integers: "1," becomes type, index key
# and int32), so only records whose JSON passes this can exceed the limit and need exact measuring.
_BSON_CHECK_FROM = MAX_RECORD_BYTES // 6


def oversized_records(call_data: list) -> list[RecordError]:
    """Records too large to be stored as one document (exact BSON size, measured only where it can matter)."""
    errors = []
    for index, record in enumerate(call_data):
        if isinstance(record, dict) and len(orjson.dumps(record)) > _BSON_CHECK_FROM:
            size = len(bson.encode(record))
            if size > MAX_RECORD_BYTES:
                errors.append(RecordError(index, record.get("phoneNumber"),
                                          f"record is {size} bytes stored; at most {MAX_RECORD_BYTES} (MongoDB's "
                                          "16 MiB document limit, less room for the call's own fields)", "record"))
    return errors


def bad_variable_name(key: str) -> bool:
    return key.startswith("$") or "." in key or "\x00" in key


def variable_name_problem(key: str) -> str:
    return f"variable name {key[:40]!r} may not start with '$' or contain '.' or NUL"


def _value_problem(value: Any, depth: int) -> str | None:
    """What MongoDB could not store in a variable's value: names, integers beyond 64 bits, deep nesting."""
    if depth > MAX_DEPTH:
        return f"variables are nested more than {MAX_DEPTH} levels deep"
    if type(value) is int:
        return None if value in INT64 else "a number in the variables does not fit in 64 bits"
    if isinstance(value, dict):
        for key, item in value.items():
            if bad_variable_name(key):
                return variable_name_problem(key)
            if type(item) in (dict, list, int) and (problem := _value_problem(item, depth + 1)):
                return problem
    elif isinstance(value, list):
        for item in value:
            if type(item) in (dict, list, int) and (problem := _value_problem(item, depth + 1)):
                return problem
    return None


class CallRecord(Shape):
    """One record of `call_data`: `phoneNumber` and any variables the agent uses (names may not start
    with '$' or hold '.'; values stored as sent), optionally the callee's own IANA `timezone`.
    Records are checked one by one when planned (Planner), not by this shape: a bad record is named
    in `data.errors` with its index, and nothing of the request is written."""

    model_config = ConfigDict(strict=True, extra="allow",
                              json_schema_extra={"examples": [{"phoneNumber": "12125551001", "name": "Sarah Johnson",
                                                               "account_id": "ACC-1001"}]})

    phoneNumber: Annotated[str, Field(description="E.164 or national (read in DIALER_DEFAULT_REGION); "
                                                  "an extension may follow ('ext 22', 'x 22')")]
    timezone: Annotated[str | None, Field(description="IANA zone of the callee (e.g. America/New_York); "
                                               "default: the number's own, else the batch's, else the agent's")] = None


class AddCallsBody(Shape):
    """The addCallsToBatch request. Its records are documented by CallRecord but not validated here: a
    100,000-record body is checked once as a whole, then record by record by the Planner."""

    model_config = ConfigDict(strict=True, extra="allow")
    not_an_object: ClassVar[str] = "body must be a JSON object with batchId and call_data"

    batchId: Annotated[str, Field(min_length=1, description="from createBatch"),
                       Reason("batchId must be a string", missing="batchId is required", null="batchId is required",
                              string_too_short="batchId is required")]
    call_data: Annotated[list[SkipValidation[CallRecord]],
                         Field(min_length=1, description="the records (at most DIALER_MAX_RECORDS, 100,000 by "
                                                         "default, per request); written in chunks of 1,000"),
                         Reason("call_data must be an array of call records", missing="call_data is required",
                                too_short="call_data is empty")]


def validate_envelope(body: Any, max_records: int) -> tuple[str, list]:
    """The request's outer shape (AddCallsBody): returns (batchId, call_data) or raises ValueError with the reason."""
    try:
        check(AddCallsBody, body)
    except ShapeError as exc:
        raise ValueError(exc.reason) from None
    call_data = body["call_data"]
    if len(call_data) > max_records:
        raise ValueError(f"call_data has {len(call_data)} records; at most {max_records} per request")
    return body["batchId"], call_data
