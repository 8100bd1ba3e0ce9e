"""The SQLite file's schema: its tables and indexes, declared once, and the migrations between versions.

The file says what it is in its header: `application_id` (ours: "DILR") and `user_version` (the schema
version). `migrate` brings an older file of ours up to `SCHEMA_VERSION`, one step per version, each step
in its own transaction; it refuses a file of another application and a file written by a newer dialer,
with a message that says what to do.

Each table keeps the document whole (`doc`, a BSON blob: the same shape the MongoDB repositories store)
and, as real columns, what its queries select and sort on; each index names the queries it serves.
Datetimes in columns are integer milliseconds since the epoch (BSON's precision). The `tallies` table is
kept by triggers on `calls`, in the same transaction as the change: batch counters cannot drift.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from typing import Callable

from dialer.ports import StoreOpenFailed

log = logging.getLogger("dialer.store.sqlite")

APPLICATION_ID = int.from_bytes(b"DILR", "big")

TALLY_ADD = """INSERT INTO tallies (batch_id, status, outcome, calls, dialled, attempts)
    VALUES ({row}.batch_id, {row}.status, coalesce({row}.outcome, ''), 1, {row}.attempts > 0, {row}.attempts)
    ON CONFLICT (batch_id, status, outcome) DO UPDATE SET calls = calls + 1,
        dialled = dialled + excluded.dialled, attempts = attempts + excluded.attempts;"""
TALLY_REMOVE = """UPDATE tallies SET calls = calls - 1, dialled = dialled - ({row}.attempts > 0),
    attempts = attempts - {row}.attempts
    WHERE batch_id = {row}.batch_id AND status = {row}.status AND outcome = coalesce({row}.outcome, '');"""

# Version 1: the first schema.
V1 = f"""
CREATE TABLE calls (
    id BLOB NOT NULL PRIMARY KEY,      -- the ObjectId's 12 bytes (they sort as ObjectIds do)
    batch_id BLOB NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER,
    lease_until INTEGER,
    active_key TEXT UNIQUE,            -- one waiting or in-flight call per callee of a batch (enqueue)
    claim_token TEXT,
    provider_call_id TEXT,
    uncertain INTEGER NOT NULL DEFAULT 0,
    group_key TEXT,
    retried_at INTEGER,
    doc BLOB NOT NULL
);
-- due (queued, nextAttemptAt <= now, earliest first then FIFO), next_due_at, has_waiting / has_active,
-- held_groups, withdraw, unplaced, in_flight, retry_finished: equality on the first two, then the range.
CREATE INDEX calls_batch_status_due ON calls (batch_id, status, next_attempt_at, id);
-- pages without a status filter, recount, delete_calls.
CREATE INDEX calls_batch_id ON calls (batch_id, id);
-- the reaper: in-flight calls whose lease ran out, earliest first.
CREATE INDEX calls_lease ON calls (lease_until) WHERE status IN ('dialing', 'ringing', 'in_progress');
-- contact chaining: the calls of one group.
CREATE INDEX calls_group ON calls (batch_id, group_key) WHERE group_key IS NOT NULL;

CREATE TABLE tallies (
    batch_id BLOB NOT NULL, status TEXT NOT NULL, outcome TEXT NOT NULL,  -- '' for no outcome
    calls INTEGER NOT NULL, dialled INTEGER NOT NULL, attempts INTEGER NOT NULL,
    PRIMARY KEY (batch_id, status, outcome)
) WITHOUT ROWID;
CREATE TRIGGER calls_tally_insert AFTER INSERT ON calls BEGIN {TALLY_ADD.format(row="NEW")} END;
CREATE TRIGGER calls_tally_delete AFTER DELETE ON calls BEGIN {TALLY_REMOVE.format(row="OLD")} END;
CREATE TRIGGER calls_tally_update AFTER UPDATE OF status, outcome, attempts ON calls
    WHEN OLD.status IS NOT NEW.status OR OLD.outcome IS NOT NEW.outcome OR OLD.attempts IS NOT NEW.attempts
    BEGIN {TALLY_REMOVE.format(row="OLD")} {TALLY_ADD.format(row="NEW")} END;

CREATE TABLE batches (
    id BLOB NOT NULL PRIMARY KEY,
    workspace_id BLOB NOT NULL,
    agent_id BLOB,
    status TEXT NOT NULL,
    scheduled_at INTEGER,
    public_id TEXT UNIQUE,             -- a face's own id for the batch (by_public_id)
    doc BLOB NOT NULL
);
CREATE INDEX batches_workspace ON batches (workspace_id, id);  -- list, newest first from a cursor
CREATE INDEX batches_status ON batches (status, id);            -- runnable, scheduled_due

CREATE TABLE workspaces (id BLOB NOT NULL PRIMARY KEY, created_at INTEGER, doc BLOB NOT NULL);
CREATE TABLE api_keys (id BLOB NOT NULL PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, doc BLOB NOT NULL);
CREATE TABLE agents (id BLOB NOT NULL PRIMARY KEY, workspace_id BLOB NOT NULL, created_at INTEGER,
                     doc BLOB NOT NULL);
CREATE INDEX agents_workspace ON agents (workspace_id, created_at);
-- who owns a calling number (insert_agent's clash check, agent_owning).
CREATE TABLE agent_numbers (number TEXT NOT NULL PRIMARY KEY, agent_id BLOB NOT NULL);
CREATE INDEX agent_numbers_agent ON agent_numbers (agent_id);

CREATE TABLE idempotency (id TEXT NOT NULL PRIMARY KEY, state TEXT, expires_at INTEGER, doc BLOB NOT NULL);
CREATE INDEX idempotency_expiry ON idempotency (expires_at);

CREATE TABLE intakes (id TEXT NOT NULL PRIMARY KEY, state TEXT NOT NULL, lease_until INTEGER,
                      expires_at INTEGER, doc BLOB NOT NULL);
CREATE INDEX intakes_pending ON intakes (state);  -- unfinished, oldest first (an index ends with the rowid)
CREATE INDEX intakes_expiry ON intakes (state, expires_at);

CREATE TABLE ledger (id TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL, doc BLOB NOT NULL);
"""

# Version 2: batches get an `updated_at` column (filled from each document) and its index, for the
# counter reconciliation's "batches changed lately" (BatchRepo.updated_since); and the file keeps the
# history of its migrations (which version, when), the steps before this one recorded without a time.
def v2(conn: sqlite3.Connection) -> None:
    from dialer.store.sqlite.documents import decode, ms

    conn.execute("ALTER TABLE batches ADD COLUMN updated_at INTEGER")
    conn.executemany("UPDATE batches SET updated_at = ? WHERE id = ?",
                     [(ms(decode(blob).get("updatedAt")), batch_id)
                      for batch_id, blob in conn.execute("SELECT id, doc FROM batches").fetchall()])
    conn.execute("CREATE INDEX batches_updated ON batches (updated_at, id)")  # updated_since
    conn.execute("CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, applied_at TEXT)")
    conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (1, NULL)")


# Version 3: partner webhooks. The outbox is written by triggers, inside the transaction of the change
# itself (invariant 7): a call's status change partners subscribe to (ringing, answered, final, a retry
# policy's requeue: attempts kept, unlike an unplaced hand-back), a batch's status change, an intake done.
# Each row keeps the document as it was right after the change. Event ids start with the time (hex
# seconds) so messages, named after their event, list in order. Endpoints and messages: documents with
# the columns their queries use.
NEW_EVENT_ID = "printf('%08x', CAST(strftime('%s', 'now') AS INTEGER)) || lower(hex(randomblob(8)))"
V3 = f"""
CREATE TABLE outbox (id TEXT NOT NULL PRIMARY KEY, kind TEXT NOT NULL, before TEXT, after TEXT,
                     doc BLOB NOT NULL);
CREATE TRIGGER calls_outbox AFTER UPDATE OF status ON calls
    WHEN OLD.status IS NOT NEW.status AND (NEW.status IN ('ringing', 'in_progress', 'completed', 'busy',
        'no_answer', 'failed', 'cancelled', 'skipped') OR (NEW.status = 'queued'
        AND OLD.status IN ('dialing', 'ringing', 'in_progress') AND NEW.attempts = OLD.attempts))
    BEGIN INSERT INTO outbox (id, kind, before, after, doc)
          VALUES ({NEW_EVENT_ID}, 'call', OLD.status, NEW.status, NEW.doc); END;
CREATE TRIGGER batches_outbox AFTER UPDATE OF status ON batches WHEN OLD.status IS NOT NEW.status
    BEGIN INSERT INTO outbox (id, kind, before, after, doc)
          VALUES ({NEW_EVENT_ID}, 'batch', OLD.status, NEW.status, NEW.doc); END;
CREATE TRIGGER intakes_outbox AFTER UPDATE OF state ON intakes WHEN NEW.state = 'done' AND OLD.state IS NOT 'done'
    BEGIN INSERT INTO outbox (id, kind, before, after, doc)
          VALUES ({NEW_EVENT_ID}, 'intake', OLD.state, NEW.state, NEW.doc); END;

CREATE TABLE webhook_endpoints (id BLOB NOT NULL PRIMARY KEY, workspace_id BLOB NOT NULL, doc BLOB NOT NULL);
CREATE INDEX webhook_endpoints_workspace ON webhook_endpoints (workspace_id, id);
CREATE TABLE webhook_messages (
    id TEXT NOT NULL PRIMARY KEY, workspace_id BLOB NOT NULL, endpoint_id BLOB NOT NULL, type TEXT NOT NULL,
    status TEXT NOT NULL, next_attempt_at INTEGER, acquired_until INTEGER, created_at INTEGER, doc BLOB NOT NULL
);
-- the senders: due pending messages of an endpoint, oldest first; due_endpoints; oldest_pending.
CREATE INDEX webhook_messages_due ON webhook_messages (status, endpoint_id, next_attempt_at);
-- the log: a workspace's messages, newest first (by endpoint when asked).
CREATE INDEX webhook_messages_workspace ON webhook_messages (workspace_id, id);
CREATE INDEX webhook_messages_endpoint ON webhook_messages (endpoint_id, id);
"""


# Version 4: each workspace's do-not-call list (dialer/store/sqlite/dnc.py). Plain columns, no document: a
# list of millions imports at hundreds of thousands of rows a second, and a lookup is a primary-key probe.
V4 = """
CREATE TABLE dnc (
    workspace_id BLOB NOT NULL, number TEXT NOT NULL, listed_at INTEGER NOT NULL, source TEXT NOT NULL,
    reason TEXT, call_id BLOB,
    PRIMARY KEY (workspace_id, number)  -- lookups (listed, get), pages by number, a prefix search
) WITHOUT ROWID;
"""


# Version 5: attempts per number for the frequency caps (caps.py): one row per attempt, found by
# (workspace, number, stamp); released by (call, token).
V5 = """
CREATE TABLE cap_attempts (workspace_id BLOB NOT NULL, number TEXT NOT NULL, at INTEGER NOT NULL,
                           call_id BLOB NOT NULL, token TEXT NOT NULL);
CREATE INDEX cap_attempts_number ON cap_attempts (workspace_id, number, at);
CREATE INDEX cap_attempts_call ON cap_attempts (call_id);
CREATE INDEX cap_attempts_at ON cap_attempts (at);  -- the reaper's purge
"""


# Version 6: batches get an `enqueued_at` column (BatchRepo.note_enqueued) and its index: a dispatcher re-reads
# the batches changed or given calls since its last look (BatchRepo.changed_since), not every running batch.
# Rows of older files keep it empty: a dispatcher starts with a full read, and looks only forward from there.
V6 = """
ALTER TABLE batches ADD COLUMN enqueued_at INTEGER;
CREATE INDEX batches_enqueued ON batches (enqueued_at);  -- changed_since
"""


# Version 7: the calls are the record of the slots they hold (dialer/store/sqlite/ledger.py): a partial index
# counts the calls in flight per batch without touching the rest, and the ledger keeps only reservations not
# seen claimed. An older file's slot entries become such reservations (each is dropped at the next look once
# its call shows its claim), so nothing reserved before the upgrade is forgotten.
def v7(conn: sqlite3.Connection) -> None:
    from bson import ObjectId

    from dialer.store.sqlite.documents import decode, encode

    conn.execute("CREATE INDEX calls_flying ON calls (batch_id, status) WHERE status IN ('dialing', 'ringing', 'in_progress')")
    for ledger_id, blob in conn.execute("SELECT id, doc FROM ledger").fetchall():
        doc = decode(blob)
        pending = [{"callId": e["callId"], "batchId": ObjectId(batch), "token": e.get("token"), "at": e["at"]}
                   for batch, entries in (doc.get("slots") or {}).items() for e in entries]
        conn.execute("UPDATE ledger SET doc = ? WHERE id = ?",
                     (encode({"pending": pending, "nextDialAt": doc.get("nextDialAt")}), ledger_id))


# Version 8: one call in flight per callee of a workspace, across its batches (invariant 3): a call in flight
# carries its callee's line key (dialer/ports/calls.py line_key), which a claim looks up in its transaction.
def v8(conn: sqlite3.Connection) -> None:
    from dialer.store.sqlite.call_rows import line_of
    from dialer.store.sqlite.documents import decode

    conn.execute("ALTER TABLE calls ADD COLUMN line_key TEXT")
    conn.execute("CREATE INDEX calls_line ON calls (line_key) WHERE line_key IS NOT NULL")
    flying = conn.execute("SELECT id, doc FROM calls INDEXED BY calls_flying "
                          "WHERE status IN ('dialing', 'ringing', 'in_progress')").fetchall()
    conn.executemany("UPDATE calls SET line_key = ? WHERE id = ?", [(line_of(decode(doc)), i) for i, doc in flying])


# Version 9: the reaper asks which provider call ids some call already holds (CallRepo.held_provider_ids) before
# it gives a call found at the provider by number to a call left without one: a partial index on the column
# (filled since version 1), which only calls that reached the provider are in.
V9 = """
CREATE INDEX calls_provider_call ON calls (provider_call_id) WHERE provider_call_id IS NOT NULL;
"""


# Version 10: partner webhook messages in a final state (delivered, failed) are kept for a retention, then purged
# by the reaper by the injected clock (WebhookRepo.purge_messages): a `settled_at` column (when the message became
# final: its last attempt's time), filled for the final messages an older file holds (their last attempt, or their
# creation when they have none), and a partial index on it that only final messages are in.
def v10(conn: sqlite3.Connection) -> None:
    from dialer.store.sqlite.documents import decode, encode, ms

    conn.execute("ALTER TABLE webhook_messages ADD COLUMN settled_at INTEGER")
    last = 0
    while True:  # by rowid, a chunk at a time: a large log is never held in memory whole
        rows = conn.execute("SELECT rowid, doc FROM webhook_messages WHERE rowid > ? AND status IN ('delivered', "
                            "'failed') ORDER BY rowid LIMIT 10000", (last,)).fetchall()
        if not rows:
            break
        for rowid, blob in rows:
            doc = decode(blob)
            times = [a["at"] for a in doc.get("attempts") or () if a.get("at") is not None]
            doc["settledAt"] = max(times) if times else doc.get("createdAt")
            conn.execute("UPDATE webhook_messages SET settled_at = ?, doc = ? WHERE rowid = ?",
                         (ms(doc["settledAt"]), encode(doc), rowid))
        last = rows[-1][0]
    conn.execute("CREATE INDEX webhook_messages_settled ON webhook_messages (settled_at) "
                 "WHERE status IN ('delivered', 'failed')")  # purge_messages


# Version 11: idempotency records no longer hold their Idempotency-Key nor a readable answer (a retried key
# creation's answer is the key itself; a webhook endpoint's, its signing secret): each is named by the key's
# SHA-256 and its answer sealed under a key derived from the Idempotency-Key (dialer/core/sealed_answers.py).
# An older file's records are converted (the key is in their id), a chunk at a time into a fresh table; the old
# rows are deleted with secure_delete on, so their plain text is overwritten, not left in free pages. A record
# that cannot be converted (a finished one without a readable answer) is dropped: a retry with its key runs anew.
def v11(conn: sqlite3.Connection) -> None:
    from dialer.core.sealed_answers import from_legacy
    from dialer.store.sqlite.documents import decode, encode, ms

    secure_delete = conn.execute("PRAGMA secure_delete").fetchone()[0]
    conn.execute("PRAGMA secure_delete = ON")
    try:
        conn.execute("DROP INDEX idempotency_expiry")
        conn.execute("ALTER TABLE idempotency RENAME TO idempotency_v10")
        conn.execute("CREATE TABLE idempotency (id TEXT NOT NULL PRIMARY KEY, state TEXT, expires_at INTEGER, "
                     "doc BLOB NOT NULL)")
        conn.execute("CREATE INDEX idempotency_expiry ON idempotency (expires_at)")
        last = 0
        while True:  # by rowid, a chunk at a time: answers can be large (a big addCallsToBatch's callIds)
            rows = conn.execute("SELECT rowid, doc FROM idempotency_v10 WHERE rowid > ? ORDER BY rowid LIMIT 1000",
                                (last,)).fetchall()
            if not rows:
                break
            for _, blob in rows:
                doc = from_legacy(decode(blob))
                if doc is not None:
                    conn.execute("INSERT OR REPLACE INTO idempotency (id, state, expires_at, doc) VALUES (?, ?, ?, ?)",
                                 (doc["_id"], doc.get("state"), ms(doc.get("expiresAt")), encode(doc)))
            last = rows[-1][0]
        conn.execute("DROP TABLE idempotency_v10")
    finally:
        conn.execute(f"PRAGMA secure_delete = {int(secure_delete)}")


# MIGRATIONS[n - 1] brings a file from version n - 1 to version n: a script, or a function of the connection.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [V1, v2, V3, V4, V5, V6, v7, v8, V9, v10, v11]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: str, target: int = SCHEMA_VERSION) -> int:
    """Bring the file to `target` (the latest by default); the version it had. Refuses foreign and newer
    files. The header is read under the write lock, before each step: several processes starting on one
    file (a new one, or an old one) see each other's steps, never half of one."""
    first = None
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            application_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            first = version if first is None else first
            if application_id != APPLICATION_ID and (application_id != 0 or tables):
                raise StoreOpenFailed(f"{path} is an SQLite database of another application (application_id "
                                      f"{application_id}, {tables} tables): point DIALER_DATA_DIR elsewhere")
            if version > SCHEMA_VERSION:
                raise StoreOpenFailed(f"{path} was written by a newer dialer (schema version {version}; this one "
                                      f"knows up to {SCHEMA_VERSION}): run that version, or restore a backup taken "
                                      "before the upgrade")
            if version >= target:
                conn.execute("COMMIT")
                return first
            step = MIGRATIONS[version]
            if callable(step):
                step(conn)
            else:
                for statement in _statements(step):
                    conn.execute(statement)
            if version + 1 >= 2:
                conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                             (version + 1, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")))
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("database schema migrated", extra={"path": path, "fromVersion": version, "toVersion": version + 1})


def _statements(script: str) -> list[str]:
    """The script's statements, one by one (executescript would commit the transaction they belong in)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out
