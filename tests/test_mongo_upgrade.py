"""A MongoDB deployment written by an older dialer, read by this one: documents in their old shapes keep
their meaning (there is no migration step on MongoDB: the repositories read both shapes)."""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

from dialer.store.mongo import mongo_repositories
from dialer.store.mongo.testing import mongomock_client
from workers.slots import Slots

AT = dt.datetime(2026, 12, 6, 1, 0, tzinfo=dt.timezone.utc)


async def test_slot_entries_of_the_old_ledger_stay_reserved_until_their_calls_show_their_claims():
    """Before the calls counted their own slots, the `dispatch` document held an entry per slot in use; an
    entry whose claim had not landed at the upgrade must not be read as a free slot."""
    client = mongomock_client()
    repos = await mongo_repositories(client, client["dialer"], kind="mongomock")
    batch, calls = ObjectId(), [ObjectId(), ObjectId()]
    entries = [{"callId": c, "token": "before", "at": AT} for c in calls]
    await client["dialer"]["dispatch"].insert_one({"_id": "account", "version": 7, "slots": {str(batch): entries},
                                                   "all": entries, "nextDialAt": AT})
    slots = Slots(repos.ledger, grace_seconds=120)
    state = await slots.state(AT + dt.timedelta(seconds=30))
    assert (state.used(batch), state.total, state.version, state.next_dial_at) == (2, 2, 7, AT)
    new = ObjectId()
    _, write = slots.prepare(state, {batch: (3, [new])}, 10, 1.0, AT + dt.timedelta(seconds=30), "now")
    assert await repos.ledger.write(write.version, write.pending, write.next_dial_at)  # replaces the old shape
    state = await slots.state(AT + dt.timedelta(seconds=121))  # the old ones never claimed: freed after the grace
    assert (state.used(batch), state.total) == (1, 1)
    assert "slots" not in await client["dialer"]["dispatch"].find_one({"_id": "account"})


async def test_start_up_drops_the_index_this_version_no_longer_reads():
    """The previous version kept `lineKey` on every call and read it before a claim, under a (lineKey, status)
    index; this one keeps `busyLine` on calls in flight, under a unique index. The old index would only cost
    writes: start-up drops it."""
    client = mongomock_client()
    calls = client["dialer"]["calls"]
    await calls.create_index([("lineKey", 1), ("status", 1)], sparse=True, name="line_key")
    await mongo_repositories(client, client["dialer"], kind="mongomock")
    indexes = await calls.index_information()
    assert "line_key" not in indexes and indexes["busy_line"]["unique"]


async def test_start_up_indexes_the_provider_call_ids_of_calls_written_before():
    """The reaper asks which provider calls some call already holds (CallRepo.held_provider_ids): start-up adds
    the sparse index on providerCallId that answers it, over the calls an older version wrote."""
    client = mongomock_client()
    calls = client["dialer"]["calls"]
    await calls.insert_many([{"_id": ObjectId(), "batchId": ObjectId(), "status": "completed", "providerCallId": "CA-1"},
                             {"_id": ObjectId(), "batchId": ObjectId(), "status": "queued"}])
    repos = await mongo_repositories(client, client["dialer"], kind="mongomock")
    index = (await calls.index_information())["provider_call"]
    assert list(index["key"]) == [("providerCallId", 1)] and index["sparse"]
    assert await repos.calls.held_provider_ids(["CA-1", "CA-2"]) == {"CA-1"}


async def test_final_webhook_messages_written_before_settled_at_are_purged_by_their_last_attempt():
    """Messages an older version wrote carry no settledAt (set now when a message becomes final): the retention
    purge takes such a final message when it was created and last attempted before the cutoff, and start-up adds
    the index that serves both forms of the query."""
    client = mongomock_client()
    messages = client["dialer"]["webhook_messages"]
    endpoint, day = ObjectId(), dt.timedelta(days=1)

    def old(event: str, status: str, created: dt.datetime, times: list[dt.datetime]) -> dict:
        return {"_id": f"msg_{event}_{endpoint}", "workspaceId": ObjectId(), "endpointId": endpoint, "eventId": event,
                "type": "webhook.test", "body": "{}", "status": status, "step": len(times), "nextAttemptAt": None,
                "createdAt": created, "attempts": [{"at": t, "httpStatus": 200} for t in times]}

    await messages.insert_many([old("gone", "delivered", AT, [AT]), old("bare", "failed", AT, []),
                                old("lately", "failed", AT, [AT, AT + 20 * day]), old("waiting", "pending", AT, [AT]),
                                old("new", "delivered", AT + 20 * day, [AT + 20 * day])])
    repos = await mongo_repositories(client, client["dialer"], kind="mongomock")
    index = (await messages.index_information())["status_settled_created"]
    assert list(index["key"]) == [("status", 1), ("settledAt", 1), ("createdAt", 1)]
    assert await repos.webhooks.purge_messages(AT + 10 * day, 1) == 1  # the limit holds over the old shape too
    assert await repos.webhooks.purge_messages(AT + 10 * day, 100) == 1
    assert sorted(d["eventId"] for d in await messages.find({}).to_list(None)) == ["lately", "new", "waiting"]
