"""The `calls` table's rows: a call document to its columns and back, and the edits every call method shares.

A call is changed by reading its document, changing the dict, and writing it back with its columns, all
inside one writer transaction (dialer/store/sqlite/database.py): a compare-and-set is a plain `if` on
the document read under the write lock. Every status change is checked against the state machine
(`check`) before anything is written; the batch counters follow by trigger (schema.py).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Iterable

from bson import ObjectId

from dialer.core.machine import call_move_allowed
from dialer.core.statuses import IN_FLIGHT_VALUES
from dialer.ports.calls import line_key
from dialer.store.sqlite.documents import decode, docs, encode, marks, ms

COLUMNS = ("id", "batch_id", "status", "outcome", "attempts", "next_attempt_at", "lease_until", "active_key",
           "claim_token", "provider_call_id", "uncertain", "group_key", "retried_at", "line_key", "doc")
INSERT = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({marks(COLUMNS)})"
SAVE = ("UPDATE calls SET " + ", ".join(f"{c} = ?" for c in COLUMNS[2:]) + " WHERE id = ?")
CLAIM_FIELDS = ("leaseUntil", "claimedBy", "dialAt", "uncertain")


def columns(doc: dict) -> tuple:
    """Every column after id and batch_id, in COLUMNS order."""
    group = doc.get("group")
    return (doc["status"], doc.get("outcome"), doc["attempts"], ms(doc.get("nextAttemptAt")),
            ms(doc.get("leaseUntil")), doc.get("activeKey"), doc.get("claimToken"), doc.get("providerCallId"),
            1 if doc.get("uncertain") else 0, group["key"] if isinstance(group, dict) else None,
            ms(doc.get("retriedAt")), line_of(doc) if doc["status"] in IN_FLIGHT_LINES else None, encode(doc))


IN_FLIGHT_LINES = frozenset(IN_FLIGHT_VALUES)


def line_of(doc: dict) -> str:
    """The call's callee as CallRepo.claim keeps it busy (line_key): the column is set while the call is in flight."""
    return line_key(doc["workspaceId"], doc["phoneNumber"], doc.get("extension"))


def insert(conn: sqlite3.Connection, docs: Iterable[dict]) -> None:
    conn.executemany(INSERT, [(d["_id"].binary, d["batchId"].binary, *columns(d)) for d in docs])


def save(conn: sqlite3.Connection, doc: dict) -> None:
    conn.execute(SAVE, (*columns(doc), doc["_id"].binary))


def save_many(conn: sqlite3.Connection, docs: Iterable[dict]) -> None:
    conn.executemany(SAVE, [(*columns(d), d["_id"].binary) for d in docs])


def load(conn: sqlite3.Connection, call_id: Any) -> dict | None:
    if not isinstance(call_id, ObjectId):
        return None
    row = conn.execute("SELECT doc FROM calls WHERE id = ?", (call_id.binary,)).fetchone()
    return None if row is None else decode(row[0])


def load_where(conn: sqlite3.Connection, where: str, params: tuple = (), tail: str = "") -> list[dict]:
    return docs(conn.execute(f"SELECT doc FROM calls WHERE {where} {tail}", params))


def by_ids(conn: sqlite3.Connection, call_ids: list[ObjectId]) -> dict[ObjectId, dict]:
    ids = [c.binary for c in call_ids if isinstance(c, ObjectId)]
    if not ids:
        return {}
    found = {}
    for row in conn.execute(f"SELECT doc FROM calls WHERE id IN ({marks(ids)})", ids):
        doc = decode(row[0])
        found[doc["_id"]] = doc
    return found


def check(doc: dict, target: str) -> str:
    """A status change, checked against the state machine before anything is written (a bug guard)."""
    if not call_move_allowed(doc["status"], target):
        raise AssertionError(f"call move {doc['status']} -> {target} is not allowed")
    return target


def push(doc: dict, entry: dict) -> None:
    doc["history"] = [*doc.get("history", ()), entry]


def withdraw(doc: dict, target: str, now: Any, entry: dict) -> None:
    """A waiting call ends without being dialled (cancelled, or skipped by its group): the WITHDRAW move."""
    doc["status"] = check(doc, target)
    doc.update(outcome=target, updatedAt=now, finishedAt=now)
    doc.pop("activeKey", None)
    push(doc, {**entry, "result": target})


def holders_of(conn: sqlite3.Connection, ids: list[ObjectId]) -> dict[ObjectId, tuple[str, str | None]]:
    """(status, claim token) of each of these calls that exists (CallRepo.holders, and the slot ledger's read)."""
    binary = [c.binary for c in ids]
    return {ObjectId(i): (status, token) for i, status, token in conn.execute(
        f"SELECT id, status, claim_token FROM calls WHERE id IN ({marks(binary)})", binary)}
