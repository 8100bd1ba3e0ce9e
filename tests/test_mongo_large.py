"""The MongoDB repositories on large collections, under a server's rules (tests/mongo_rules.py): every
operation's time grows with what it examines and is bounded by the timeout in force, as on a real
server with the client's timeoutMS (30 s here, a quarter of the default lease).

Sizes are scaled down: a document examined costs 10 ms, so an operation under the client's timeout
may examine 3,000; the repositories' own chunks are 1,000.
"""

from __future__ import annotations

import datetime as dt
import logging

from bson import ObjectId

from dialer.store.mongo import mongo_repositories
from dialer.store.mongo.testing import mongomock_client
from tests.mongo_rules import RulesDb

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
PER_DOC = 0.01  # seconds per document examined: 3,000 within the client's 30 s


def call_doc(batch_id: ObjectId, i: int, **fields) -> dict:
    return {"_id": ObjectId(), "batchId": batch_id, "workspaceId": batch_id, "phoneNumber": f"+1212555{i:04d}",
            "extension": None, "status": "queued", "attempts": 0, "nextAttemptAt": T0, "createdAt": T0,
            "updatedAt": T0, "history": [], **fields}


async def test_indexes_are_built_under_their_own_timeout_on_a_populated_collection(caplog):
    client = mongomock_client()
    await client["dialer"]["calls"].insert_many([call_doc(ObjectId(), i) for i in range(5000)])  # a 50 s build
    rules = RulesDb(client["dialer"], per_doc=PER_DOC)
    with caplog.at_level(logging.INFO, logger="dialer.store.indexes"):
        repos = await mongo_repositories(client, rules)
    assert "batch_status_due_id" in await client["dialer"]["calls"].index_information()
    [calls] = [r for r in caplog.records if getattr(r, "collection", None) == "calls"]
    assert calls.documents == 5000 and "batch_status_due_id" in calls.indexes
    assert caplog.records[-1].getMessage() == "indexes ready"
    await repos.close()
