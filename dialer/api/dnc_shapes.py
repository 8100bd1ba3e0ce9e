"""The do-not-call routes' shapes: the request body and query (checked before a handler runs) and the views
they answer with (documented in /openapi.json, checked by the schemathesis test)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import ConfigDict, Field

from dialer.api.replies import DateTime, View
from dialer.api.requests import Query, query_int
from dialer.core.dnc import MAX_NUMBERS, MAX_REASON, SOURCE
from dialer.core.shapes import Reason, Shape
from dialer.services import dnc

SOURCE_REASON = "source must be a lower-case word such as manual, import, opt-out or api (at most 32 characters)"


class DncBody(Shape):
    """Numbers to list. Each is read as every number here (E.164, or national in DIALER_DEFAULT_REGION; an
    extension is dropped: the line is listed). Strings that are not possible numbers are named one by one
    in `invalidEntries`; the valid ones are listed anyway."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [
        {"numbers": ["+12125550100", "(212) 555-0101"], "reason": "asked by letter", "source": "manual"}]})
    not_an_object: ClassVar[str] = "body must be an object {numbers: [...], reason?, source?}"

    numbers: Annotated[list[str], Field(min_length=1, max_length=MAX_NUMBERS,
                                        description=f"1 to {MAX_NUMBERS:,} phone numbers (strings)"),
                       Reason(f"numbers must be an array of 1 to {MAX_NUMBERS} phone numbers, each a string")]
    reason: Annotated[str | None, Field(max_length=MAX_REASON),
                      Reason(f"reason must be a string of at most {MAX_REASON} characters")] = None
    source: Annotated[str, Field(pattern=f"^{SOURCE.pattern}$", description="where the listing comes from"),
                      Reason(SOURCE_REASON)] = "api"


class DncQuery(Query):
    limit: Annotated[query_int(1, dnc.MAX_PAGE), Reason(f"limit must be from 1 to {dnc.MAX_PAGE}",
                                                        int_parsing="limit must be an integer",
                                                        int_type="limit must be an integer")] = dnc.DEFAULT_PAGE
    # A `+` sent unencoded in a query string arrives as a space: read as the `+` it was.
    cursor: Annotated[str, Field(pattern=r"^[+ ][0-9]{1,15}$", description="a previous page's nextCursor (a number)"),
                      Reason("cursor must be a number from a previous page's nextCursor")] = None
    prefix: Annotated[str, Field(pattern=r"^[+ ]?[0-9]{1,15}$", description="only numbers starting with these digits "
                                                                         "(E.164, e.g. +1212)"),
                      Reason("prefix must be the first digits of a number in E.164 (e.g. +1212)")] = None


class InvalidNumber(View):
    index: int
    phoneNumber: str | None
    reason: str


class DncAdded(View):
    received: Annotated[int, Field(description="= added + alreadyListed + repeated + invalid")]
    added: int
    alreadyListed: Annotated[int, Field(description="listed before: their first listing stands")]
    repeated: Annotated[int, Field(description="entries naming a number given earlier in this request")]
    invalid: int
    invalidEntries: Annotated[list[InvalidNumber], Field(description="every entry that is not a possible number")]


class DncEntry(View):
    number: Annotated[str, Field(description="E.164")]
    source: str
    reason: str | None
    callId: Annotated[str | None, Field(description="an opt-out's call")]
    listedAt: DateTime
    rule: Annotated[str, Field(description="what a call it stops says in its history")]


class DncPage(View):
    entries: list[DncEntry]
    count: int
    total: Annotated[int, Field(description="numbers the workspace lists")]
    nextCursor: str | None


class DncRemoved(View):
    number: str
