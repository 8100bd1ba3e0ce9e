"""Reading a page request (`status`, `limit`, `cursor`) the same way for every listing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping

from bson import ObjectId

from dialer.services.errors import Refused
from dialer.services.tenancy import parse_id


@dataclass(frozen=True)
class PageQuery:
    statuses: list[str] | None
    limit: int
    cursor: ObjectId | None


def page_query(query: Mapping[str, str], statuses: Collection[str], default: int, most: int,
               cursor_of: str) -> PageQuery:
    """`status` (comma-separated, each one of `statuses`), `limit` (1..most), `cursor` (an id of
    `cursor_of`, from a previous page's nextCursor); a 400 naming the parameter otherwise."""
    wanted = [s for s in query.get("status", "").split(",") if s]
    unknown = set(wanted) - set(statuses)
    if unknown:
        raise Refused(400, "Bad Request", f"unknown status {sorted(unknown)}; use {sorted(statuses)}")
    try:
        limit = int(query.get("limit", default))
    except ValueError:
        raise Refused(400, "Bad Request", "limit must be an integer") from None
    if not 1 <= limit <= most:
        raise Refused(400, "Bad Request", f"limit must be from 1 to {most}")
    cursor = None
    if query.get("cursor"):
        cursor = parse_id(query["cursor"])
        if cursor is None:
            raise Refused(400, "Bad Request", f"cursor must be a {cursor_of} from a previous page's nextCursor")
    return PageQuery(wanted or None, limit, cursor)
