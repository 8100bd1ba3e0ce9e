"""Steps of the SQLite file's schema added after tests/test_sqlite_store.py's (which holds the first ones): a
file of the version before is upgraded at start-up, and what it held keeps its meaning under the new queries."""

from __future__ import annotations

import datetime as dt
import sqlite3

from bson import ObjectId

from dialer.store.sqlite import open_sqlite
from dialer.store.sqlite.documents import encode
from dialer.store.sqlite.schema import SCHEMA_VERSION, migrate

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
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
        assert [v for v, in conn.execute("SELECT version FROM schema_migrations WHERE version = 9")] == [9]
        plan = " ".join(row[-1] for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT provider_call_id FROM calls WHERE provider_call_id IN ('CA-1', 'CA-2')"))
        assert "calls_provider_call" in plan and "SCAN" not in plan, plan  # the planner picks it unasked
    finally:
        conn.close()
