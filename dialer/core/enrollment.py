"""Contact enrollment (seeds 000/001): the request's shape, each contact's validation, duplicates, contact
chaining groups and the title-casing of `normalizeFields` (pure, no I/O).

A request is refused whole (EnrollmentError, a 400) only for its own shape: `contacts` not an array of
1-1,000 items, an unknown request timezone, `groupByField` with `allowDuplicates`, unknown fields. Every
contact is then judged on its own: a bad one is rejected with a reason in the seed's style ("Missing
custom input variables: account_id."), the others are planned.

Planned contacts become calls. Without chaining each one is `queued`. With `groupByField`, contacts
sharing that variable's value form a group called one at a time, in request order, until one succeeds
(policy `untilSuccess`): the first is queued, the rest `held`. With `allowDuplicates`, contacts sharing a
callee (number and extension) form a group called one after the other whatever the outcome (policy
`each`): a number is never dialled twice at once.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Sequence

import bson
import orjson
from bson import ObjectId
from bson.codec_options import CodecOptions
from email_validator import EmailNotValidError, validate_email
from pydantic import ConfigDict, Field, SkipValidation

from dialer.core.batch_spec import BatchSpecError, parse_datetime
from dialer.core.records import HORIZON_DAYS, MAX_ECHO, Planner, PlannedCall, RecordError
from dialer.core.shapes import Reason, Shape, ShapeError, check
from dialer.core.windows import valid_zone

MAX_CONTACTS = 1000
CONTACT_FIELDS = frozenset({"name", "phoneNumber", "phoneNumberExt", "timezone", "scheduledAt", "toEmailAddress"})
_EXTENSION = re.compile(r"[0-9*#]{1,20}")
UNTIL_SUCCESS = "untilSuccess"
EACH = "each"


class EnrollmentError(ValueError):
    """The request itself is wrong (not one of its contacts): the message says why."""


@dataclass(frozen=True)
class EnrollmentRequest:
    contacts: list
    timezone: str | None
    group_by: str | None
    normalize: tuple[str, ...]
    allow_duplicates: bool


class Contact(Shape):
    """One contact. Checked one by one when planned (ContactPlanner), not by this shape: a bad contact is
    rejected with its reason in `rejected[]` and the others are scheduled. Any other field is a custom
    variable (checked against the agent's required variables)."""

    model_config = ConfigDict(strict=True, extra="allow", json_schema_extra={"examples": [{
        "name": "John Doe", "phoneNumber": "+15551234567", "phoneNumberExt": "123", "timezone": "America/New_York",
        "scheduledAt": "2023-11-07T05:31:56Z", "toEmailAddress": "john@example.com", "account_id": "ACC-1"}]})

    phoneNumber: Annotated[str, Field(description="E.164 or national; normalised before duplicate detection")]
    name: Annotated[str | None, Field(max_length=200, description="kept, and given to the agent as `name`")] = None
    phoneNumberExt: Annotated[str | None, Field(pattern=r"^[0-9*#]{1,20}$",
                                                description="dialled as digits once the call connects")] = None
    timezone: Annotated[str | None, Field(description="IANA zone; default: the request's, else the agent's first")] = None
    scheduledAt: Annotated[str | None, Field(json_schema_extra={"format": "date-time"},
                                             description="the contact is not called before it")] = None
    toEmailAddress: Annotated[str | None, Field(json_schema_extra={"format": "email"})] = None


class EnrollBody(Shape):
    """The request (seeds 000/001). Its own shape refused is a 400; its contacts are judged one by one."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [{
        "groupByField": "account_id", "timezone": "America/New_York", "contacts": [
            {"name": "John Doe", "phoneNumber": "+15551234567", "account_id": "ACC-1"},
            {"name": "Jane Roe", "phoneNumber": "+1 (555) 123-4568", "account_id": "ACC-1"}]}]})
    not_an_object: ClassVar[str] = "Body must be a JSON object with contacts."
    unknown_fields: ClassVar[str] = "Unknown fields: {names}."

    contacts: Annotated[list[SkipValidation[Contact]], Field(min_length=1, max_length=MAX_CONTACTS),
                        Reason("contacts is required: an array of 1 to 1000 contacts.")]
    timezone: Annotated[str | None, Field(description="IANA zone for contacts without their own", examples=[
        "America/New_York"]), Reason("Invalid timezone: it must be an IANA time zone name.")] = None
    groupByField: Annotated[str | None, Field(min_length=1, pattern=r"\S", examples=["account_id"], description=(
        "a custom variable: contacts sharing its value are called one at a time until one succeeds")),
        Reason("groupByField must be the name of a custom variable.")] = None
    normalizeFields: Annotated[list[Annotated[str, Field(min_length=1)]] | None, Field(
        description="custom variables to title-case (workspaces on the normalization allowlist)"),
        Reason("normalizeFields must be an array of variable names.")] = None
    allowDuplicates: Annotated[bool, Field(description="schedule repeated numbers too (one after the other)"),
                               Reason("allowDuplicates must be true or false.")] = False


def parse_request(body: Any) -> EnrollmentRequest:
    """The request by its shape (EnrollBody), then what the shape cannot say: the counts (named in the
    message), IANA zones, groupByField against the contact fields and allowDuplicates."""
    if not isinstance(body, dict):
        raise EnrollmentError(EnrollBody.not_an_object)
    unknown = sorted(set(body) - set(EnrollBody.model_fields))
    if unknown:
        raise EnrollmentError(f"Unknown fields: {', '.join(unknown)}.")
    contacts = body.get("contacts")
    if isinstance(contacts, list) and not 1 <= len(contacts) <= MAX_CONTACTS:
        raise EnrollmentError(f"contacts must hold 1 to {MAX_CONTACTS} contacts; it holds {len(contacts)}.")
    zone = body.get("timezone")
    if isinstance(zone, str) and not valid_zone(zone):
        raise EnrollmentError(f"Invalid timezone: {_show(zone)} is not an IANA time zone (e.g. America/New_York).")
    try:
        check(EnrollBody, body)
    except ShapeError as exc:
        raise EnrollmentError(exc.reason) from None
    group_by = body.get("groupByField")
    if group_by in CONTACT_FIELDS:
        raise EnrollmentError(f"groupByField must name a custom variable, not the contact field {group_by}.")
    allow = body.get("allowDuplicates", False)
    if allow and group_by is not None:
        raise EnrollmentError("groupByField cannot be combined with allowDuplicates.")
    normalize = body.get("normalizeFields") or []
    return EnrollmentRequest(contacts, zone, group_by, tuple(dict.fromkeys(normalize)), allow)


def title_case(value: str) -> str:
    """"JOHN" -> "John", "o'BRIEN-SMITH" -> "O'Brien-Smith", "mary ann" -> "Mary Ann", "it's" -> "It's".

    The rule: every letter is lower case except the first letter of a word, where words are separated
    by whitespace or a hyphen; after an apostrophe a letter is capitalised only when the apostrophe
    follows a single letter at the word's start (O'Brien, D'Angelo), not in contractions."""
    out: list[str] = []
    word_start = True
    letters_in_word = 0
    for ch in value:
        if ch.isalpha():
            out.append(ch.upper() if word_start else ch.lower())
            word_start = False
            letters_in_word += 1
        else:
            out.append(ch)
            if ch.isspace() or ch == "-":
                word_start, letters_in_word = True, 0
            elif ch in "'\u2019" and letters_in_word == 1:
                word_start = True
    return "".join(out)


@dataclass
class ContactPlan:
    calls: list[PlannedCall]
    rejected: list[RecordError]
    total: int

    def rejected_view(self) -> list[dict]:
        """The rejections as answered; a phoneNumber longer than any number is cut (it is echoed, not kept)."""
        return [{"index": e.index, "phoneNumber": e.phone_number[:MAX_ECHO] if isinstance(e.phone_number, str) else None,
                 "error": e.reason} for e in self.rejected]


class ContactPlanner:
    """Judges each contact of a request for one agent, then forms the chaining groups."""

    def __init__(self, planner: Planner, request: EnrollmentRequest, required: Sequence[str],
                 agent_zone: str | None, normalize: bool, now: dt.datetime) -> None:
        self.planner = planner  # built with no required variables and no default zones: checked here
        self.request = request
        self.required = list(required)
        self.default_zone = request.timezone or agent_zone
        self.normalize = request.normalize if normalize else ()
        self.now = now

    def plan(self) -> ContactPlan:
        rejected: list[RecordError] = []
        accepted: list[PlannedCall] = []
        first_of_callee: dict[tuple[str, str | None], int] = {}
        for index, contact in enumerate(self.request.contacts):
            call = self._contact(index, contact, rejected)
            if call is None:
                continue
            callee = (call.e164, call.extension)
            if callee in first_of_callee and not self.request.allow_duplicates:
                rejected.append(RecordError(index, call.raw_phone, "Duplicate phone number: the same number as "
                                                                   f"contact {first_of_callee[callee]}."))
                continue
            first_of_callee.setdefault(callee, index)
            accepted.append(call)
        rejected.sort(key=lambda e: e.index)
        self._group(accepted)
        return ContactPlan(accepted, rejected, len(self.request.contacts))

    def suppress(self, plan: ContactPlan, rules: dict[str, str]) -> None:
        """Contacts whose number a rule stops (number -> the rule, e.g. the do-not-call list's) are rejected
        with it, and the chaining groups formed again without them."""
        kept = []
        for call in plan.calls:
            if call.e164 in rules:
                plan.rejected.append(RecordError(call.index, call.raw_phone, f"Not scheduled: {rules[call.e164]}."))
            else:
                call.group, call.held, call.key_suffix = None, False, ""
                kept.append(call)
        plan.rejected.sort(key=lambda e: e.index)
        plan.calls = kept
        self._group(kept)

    def _contact(self, index: int, contact: Any, rejected: list[RecordError]) -> PlannedCall | None:
        def reject(reason: str) -> None:
            phone = contact.get("phoneNumber") if isinstance(contact, dict) else None
            rejected.append(RecordError(index, phone, reason))

        if not isinstance(contact, dict):
            reject("Contact must be an object.")
            return None
        phone = contact.get("phoneNumber")
        if phone is None or phone == "":
            reject("Missing phoneNumber.")
            return None
        variables = {k: v for k, v in contact.items() if k not in CONTACT_FIELDS}
        given = {**variables, **({"name": contact["name"]} if "name" in contact else {})}  # the agent gets `name` too
        missing = [name for name in self.required if given.get(name) in (None, "")]
        if missing:
            reject(f"Missing custom input variables: {', '.join(missing)}.")
            return None
        group_by = self.request.group_by
        if group_by is not None and variables.get(group_by) in (None, ""):
            reject(f"Missing the groupByField variable: {group_by}.")
            return None
        name = contact.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            reject("name must be a string of at most 200 characters.")
            return None
        zone = contact.get("timezone")
        if zone is not None and not valid_zone(zone):
            reject(f"Invalid timezone: {_show(zone)} is not an IANA time zone.")
            return None
        email = contact.get("toEmailAddress")
        if email is not None:
            try:
                email = validate_email(email, check_deliverability=False).normalized if isinstance(email, str) \
                    else _raise_email()
            except EmailNotValidError as exc:
                reject(f"Invalid toEmailAddress: {exc}")
                return None
        try:
            scheduled = None if contact.get("scheduledAt") is None else parse_datetime(contact["scheduledAt"],
                                                                                       "scheduledAt")
        except BatchSpecError as exc:  # "scheduledAt must ...": said as the other fields' reasons are
            reject(f"Invalid scheduledAt: {str(exc).removeprefix('scheduledAt ')}.")
            return None
        ext = contact.get("phoneNumberExt")
        if ext is not None and ext != "":
            ext = str(ext) if isinstance(ext, int) and not isinstance(ext, bool) and ext >= 0 else ext
            if not isinstance(ext, str) or not _EXTENSION.fullmatch(ext):
                reject("Invalid phoneNumberExt: only digits, * and # (at most 20).")
                return None
        else:
            ext = None
        for field in self.normalize:
            if field == "name" and isinstance(name, str):
                name = title_case(name)
            elif isinstance(variables.get(field), str):
                variables[field] = title_case(variables[field])
        if name is not None:
            variables["name"] = name
        errors: list[RecordError] = []
        record = {"phoneNumber": phone, **variables}
        if zone or self.default_zone:
            record["timezone"] = zone or self.default_zone
        call = self.planner.plan_one(index, record, errors)
        if call is None:
            reject(_sentence(errors[0].reason))
            return None
        if ext is not None:
            if call.extension not in (None, ext):
                reject(f"phoneNumberExt {ext} differs from the extension in phoneNumber ({call.extension}).")
                return None
            call.extension = ext
        if scheduled is not None and scheduled > self.now:
            earliest = self.planner.ctx.window.next_open(scheduled, call.zones, HORIZON_DAYS)
            call.earliest = earliest or scheduled + dt.timedelta(days=HORIZON_DAYS)
        call.meta = {"contact": {"index": index, **({"name": name} if name is not None else {}),
                                 **({"toEmailAddress": email} if email is not None else {}),
                                 **({"scheduledAt": contact["scheduledAt"]} if scheduled is not None else {})}}
        call.call_id = ObjectId()
        return call

    def _group(self, calls: list[PlannedCall]) -> None:
        """Chaining groups: the first call of each is queued, the others held, in request order."""
        members: dict[str, list[PlannedCall]] = {}
        policy = UNTIL_SUCCESS
        if self.request.group_by is not None:
            field = self.request.group_by
            for call in calls:
                members.setdefault(f"{field}={_group_value(call.variables[field])}", []).append(call)
        elif self.request.allow_duplicates:
            policy = EACH
            for call in calls:
                members.setdefault(f"callee={call.e164};{call.extension or ''}", []).append(call)
        for key, group in members.items():
            if len(group) == 1 and policy == EACH:
                continue  # a number given once is no group
            for seq, call in enumerate(group):
                call.group = {"key": key, "seq": seq, "policy": policy}
                call.held = seq > 0
                if policy == EACH and seq > 0:
                    call.key_suffix = f"#{seq}"  # the same callee, waiting its turn


def encode_planned(calls: list[PlannedCall]) -> bytes:
    """The planned calls of an intake as one BSON blob: stored and copied as one immutable value (no
    walk over a thousand documents in either backend), ids and datetimes kept exactly."""
    return bson.encode({"calls": [_planned_to_doc(c) for c in calls]})


def decode_planned(blob: bytes) -> list[PlannedCall]:
    return [_planned_from_doc(doc) for doc in bson.decode(blob, codec_options=_TZ_AWARE)["calls"]]


_TZ_AWARE = CodecOptions(tz_aware=True)


def _planned_to_doc(call: PlannedCall) -> dict:
    return {"callId": call.call_id, "index": call.index, "e164": call.e164, "raw": call.raw_phone,
            "extension": call.extension, "variables": call.variables, "zones": list(call.zones),
            "zoneSource": call.zone_source, "earliest": call.earliest, "meta": call.meta, "held": call.held,
            "group": call.group, "keySuffix": call.key_suffix}


def _planned_from_doc(doc: dict) -> PlannedCall:
    return PlannedCall(index=doc["index"], e164=doc["e164"], raw_phone=doc["raw"], extension=doc["extension"],
                       variables=doc["variables"], zones=tuple(doc["zones"]), zone_source=doc["zoneSource"],
                       earliest=doc["earliest"], meta=doc["meta"], call_id=doc["callId"], held=doc["held"],
                       group=doc["group"], key_suffix=doc["keySuffix"])


def _group_value(value: Any) -> str:
    """The value as JSON: 1 and "1" are two groups; objects with the same keys in another order, one."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _sentence(reason: str) -> str:
    """The planner's lower-case reason in the seed's style: a capital (unless it starts with a field
    name, such as phoneNumber) and a full stop."""
    first = reason.split(" ", 1)[0]
    if first.islower():
        reason = reason[:1].upper() + reason[1:]
    return reason if reason.endswith(".") else reason + "."


def _raise_email():
    raise EmailNotValidError("it must be a string.")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
