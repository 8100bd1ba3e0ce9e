"""Steps of the SQLite file's schema added after tests/test_sqlite_store.py's (which holds the first ones): a
file of the version before is upgraded at start-up, and what it held keeps its meaning under the new queries."""

from __future__ import annotations

import datetime as dt
import sqlite3

from bson import ObjectId

from dialer.store.sqlite import open_sqlite
from dialer.store.sqlite.documents import encode
from dialer.store.sqlite.schema import migrate
from dialer.store.sqlite.webhooks import PURGE_SELECT

AT = dt.datetime(2026, 12, 6, 1, 0, tzinfo=dt.timezone.utc)


async def test_provider_ids_of_calls_in_a_file_of_schema_8_are_found_by_their_index_after_the_upgrade(tmp_path):
    """Schema 9 indexes the provider call id (partial: only calls that reached the provider), which the reaper
    asks about before it adopts a call found at the provider by number (CallRepo.held_provider_ids)."""
    path = str(tmp_path / "dialer.db")
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path, target=8)
    batch = ObjectId()
    for status, sid in (("completed", "CA-final"), ("ringing", "CA-flying"), ("queued", None)):
        call = ObjectId()
        doc = {"_id": call, "batchId": batch, "status": status, "attempts": 1, "updatedAt": AT,
               **({"providerCallId": sid} if sid else {})}
        conn.execute("INSERT INTO calls (id, batch_id, status, attempts, provider_call_id, doc) VALUES (?, ?, ?, ?, ?, ?)",
                     (call.binary, batch.binary, status, 1, sid, encode(doc)))
    conn.close()
    repos = await open_sqlite(path)
    try:
        assert await repos.calls.held_provider_ids(["CA-final", "CA-flying", "CA-other"]) == {"CA-final", "CA-flying"}
    finally:
        await repos.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 9
        assert [v for v, in conn.execute("SELECT version FROM schema_migrations WHERE version = 9")] == [9]
        plan = " ".join(row[-1] for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT provider_call_id FROM calls WHERE provider_call_id IN ('CA-1', 'CA-2')"))
        assert "calls_provider_call" in plan and "SCAN" not in plan, plan  # the planner picks it unasked
    finally:
        conn.close()


async def test_final_webhook_messages_of_a_file_of_schema_9_are_purged_by_their_last_attempt_after_the_upgrade(tmp_path):
    """Schema 10 keeps when a webhook message became final (settled_at) for the retention purge
    (WebhookRepo.purge_messages), under a partial index of final messages: the upgrade fills it for the final
    messages a file holds (their last attempt; their creation when they have none), never for pending ones."""
    path = str(tmp_path / "dialer.db")
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path, target=9)
    ws, endpoint = ObjectId(), ObjectId()
    day = dt.timedelta(days=1)
    rows = {  # event: (status, createdAt, attempt times)
        "old-delivered": ("delivered", AT, [AT]),
        "old-failed-no-attempt": ("failed", AT, []),
        "failed-lately": ("failed", AT, [AT, AT + 20 * day]),  # created long ago, last tried lately: kept
        "old-pending": ("pending", AT, [AT]),
        "new-delivered": ("delivered", AT + 20 * day, [AT + 20 * day]),
    }
    for event, (status, created, times) in rows.items():
        doc = {"_id": f"msg_{event}_{endpoint}", "workspaceId": ws, "endpointId": endpoint, "eventId": event,
               "type": "webhook.test", "body": "{}", "status": status, "step": len(times), "nextAttemptAt": None,
               "createdAt": created, "attempts": [{"at": t, "httpStatus": 200} for t in times]}
        conn.execute("INSERT INTO webhook_messages (id, workspace_id, endpoint_id, type, status, next_attempt_at, "
                     "acquired_until, created_at, doc) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?)",
                     (doc["_id"], ws.binary, endpoint.binary, doc["type"], status, int(created.timestamp() * 1000),
                      encode(doc)))
    conn.close()
    repos = await open_sqlite(path)
    try:
        settled = await repos.webhooks.get_message(f"msg_failed-lately_{endpoint}")
        assert settled["settledAt"] == AT + 20 * day
        assert "settledAt" not in await repos.webhooks.get_message(f"msg_old-pending_{endpoint}")
        assert await repos.webhooks.purge_messages(AT + 10 * day, 100) == 2
        left = await repos.webhooks.list_messages(ws, None, None, None, None, 100)
        assert sorted(m["eventId"] for m in left) == ["failed-lately", "new-delivered", "old-pending"]
    finally:
        await repos.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 10
        assert [v for v, in conn.execute("SELECT version FROM schema_migrations WHERE version = 10")] == [10]
        plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {PURGE_SELECT}", (5, 10)))
        # The index reads only final messages settled before the time, oldest first: no scan, no sort.
        assert "webhook_messages_settled" in plan and "SCAN" not in plan and "TEMP" not in plan, plan
    finally:
        conn.close()
