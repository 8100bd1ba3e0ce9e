"""WebhookRepo and the outbox, on every backend: each change partners subscribe to records exactly one
event in the same write (and the changes they do not subscribe to none), the relay writes one message per
event and endpoint however often it is repeated, and messages are leased, attempted, listed and requeued."""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

from dialer.core.machine import CANCEL, START, STOP
from dialer.ports import Finish, OutboxEvent
from tests.contract.conftest import T0, at, batch_doc, claim, enqueue, planned

A, B = "+14155550001", "+14155550002"


def entry(event: str, seconds: float = 0) -> dict:
    return {"at": at(seconds), "event": event}


async def drain(repos) -> list[OutboxEvent]:
    events = await repos.webhooks.outbox(100)
    await repos.webhooks.relay(events, [])
    return events


async def test_call_changes_record_one_event_each_and_claims_none(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a)
    await claim(repos, b)
    assert await repos.calls.requeue_unplaced(b, "tok-1", at(5), entry("not_running", 1))  # no event
    assert await repos.calls.progress(a, "tok-1", "CA1", "ringing", at(60), entry("ringing", 2), None, at(2))
    assert await repos.calls.progress(a, "tok-1", "CA1", "in_progress", at(60), entry("answered", 3), None, at(3))
    assert await repos.calls.withdraw(batch["_id"], at(4), entry("batch_cancelled", 4), 10) == 1
    done = await repos.calls.finish(a, "tok-1", "CA1", Finish("completed", "machine", entry("completed", 9), duration=7), at(9))
    assert done[0] == "final"
    events = await drain(repos)
    assert [(e.kind, e.type) for e in events] == [
        ("call", "call.ringing"), ("call", "call.answered"), ("call", "call.cancelled"), ("call", "call.machine")]
    assert events[3].doc["_id"] == a and events[3].doc["duration"] == 7 and events[3].at == at(9)
    assert events[2].doc["_id"] == b and events[2].doc["workspaceId"] == batch["workspaceId"]
    assert "outbox" not in await repos.calls.get(a)
    assert await repos.webhooks.outbox(100) == []  # relayed: gone


async def test_a_retry_policy_requeue_is_an_event(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    result = await repos.calls.finish(a, "tok-1", None, Finish("busy", "busy", entry("busy", 5), retry_at=at(60),
                                                               max_attempts=3), at(5))
    assert result[0] == "retry"
    assert [e.type for e in await drain(repos)] == ["call.retry_scheduled"]


async def test_batch_moves_and_a_finished_intake_record_events(repos):
    doc = batch_doc(status="pending")
    await repos.batches.insert(doc)
    assert await repos.batches.move(doc["_id"], START, at(1))
    assert await repos.batches.move(doc["_id"], STOP, at(2))
    assert not await repos.batches.move(doc["_id"], STOP, at(3))  # nothing moved: no event
    assert await repos.batches.move(doc["_id"], CANCEL, at(4))
    await repos.intakes.insert({"_id": "ws:id:1", "workspaceId": doc["workspaceId"], "publicId": "p-1",
                                "batch": doc, "calls": b"", "answer": {"batchId": "p-1", "total": 1, "accepted": 1,
                                                                      "rejected": []},
                                "state": "pending", "createdAt": T0, "expiresAt": at(3600)})
    await repos.intakes.finish("ws:id:1", at(5))
    events = await drain(repos)
    assert sorted((e.type, e.at) for e in events) == [
        ("batch.cancelled", at(4)), ("batch.paused", at(2)), ("batch.started", at(1)), ("enrollment.accepted", at(5))]
    accepted = next(e for e in events if e.kind == "intake")
    assert accepted.doc["answer"]["batchId"] == "p-1"


def message(workspace: ObjectId, endpoint: ObjectId, event: str, *, type_: str = "call.ringing",
            created: float = 0) -> dict:
    return {"_id": f"msg_{event}_{endpoint}", "workspaceId": workspace, "endpointId": endpoint, "eventId": event,
            "type": type_, "body": "{}", "status": "pending", "step": 0, "nextAttemptAt": at(created),
            "createdAt": at(created), "attempts": []}


async def test_relay_writes_each_message_once(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    await repos.calls.progress(a, "tok-1", None, "ringing", at(60), entry("ringing"), None, at(1))
    [event] = await repos.webhooks.outbox(10)
    endpoint = ObjectId()
    msg = message(batch["workspaceId"], endpoint, event.id)
    await repos.webhooks.relay([], [msg])  # a relay that died before dropping the event...
    await repos.webhooks.relay([event], [{**msg, "type": "changed"}])  # ... and its second run
    [stored] = await repos.webhooks.list_messages(batch["workspaceId"], None, None, None, None, 10)
    assert stored["type"] == "call.ringing" and await repos.webhooks.outbox(10) == []


async def test_endpoints_crud_and_failure_streak(repos):
    ws = ObjectId()
    ids = [ObjectId(), ObjectId()]
    for i in ids:
        await repos.webhooks.insert_endpoint({"_id": i, "workspaceId": ws, "url": f"https://e/{i}", "events": [],
                                              "secret": "whsec_x", "disabled": False, "createdAt": T0})
    assert [e["_id"] for e in await repos.webhooks.list_endpoints(ws)] == ids
    assert await repos.webhooks.list_endpoints(ObjectId()) == []
    changed = await repos.webhooks.update_endpoint(ids[0], {"url": "https://f/", "previousUntil": at(9)}, ("secret",))
    assert changed["url"] == "https://f/" and "secret" not in changed and changed["previousUntil"] == at(9)
    assert await repos.webhooks.update_endpoint(ObjectId(), {"url": "x"}) is None
    assert (await repos.webhooks.note_result(ids[0], False, at(10)))["failingSince"] == at(10)
    assert (await repos.webhooks.note_result(ids[0], False, at(20)))["failingSince"] == at(10)  # the streak's start
    assert "failingSince" not in await repos.webhooks.note_result(ids[0], True, at(30))
    await repos.webhooks.relay([], [message(ws, ids[1], "e1")])
    assert await repos.webhooks.delete_endpoint(ids[1])
    assert not await repos.webhooks.delete_endpoint(ids[1])
    assert await repos.webhooks.get_endpoint(ids[1]) is None
    assert await repos.webhooks.get_message(f"msg_e1_{ids[1]}") is None  # its messages went with it


async def test_lease_attempt_requeue_recover_and_the_log(repos):
    ws, e1, e2 = ObjectId(), ObjectId(), ObjectId()
    await repos.webhooks.relay([], [message(ws, e1, "a1"), message(ws, e1, "a2", created=1),
                                    message(ws, e2, "b1", type_="batch.started", created=100)])
    assert await repos.webhooks.oldest_pending() == at(0)
    assert sorted(await repos.webhooks.due_endpoints(at(10), 10)) == [e1]  # b1 is not due yet
    [first] = await repos.webhooks.lease(e1, at(10), "s1", at(40), 1)
    assert first["_id"] == f"msg_a1_{e1}" and first["acquiredBy"] == "s1"
    [second] = await repos.webhooks.lease(e1, at(10), "s2", at(40), 5)  # a1 is leased: only a2
    assert second["_id"] == f"msg_a2_{e1}"
    assert await repos.webhooks.due_endpoints(at(10), 10) == []
    assert [m["_id"] for m in await repos.webhooks.lease(e1, at(41), "s3", at(70), 5)] == [first["_id"], second["_id"]]
    assert not await repos.webhooks.record_attempt(first["_id"], "s1", {"at": at(11)}, "delivered", 1, None)  # lost it
    attempt = {"at": at(42), "httpStatus": 500, "ms": 12, "response": "no"}
    assert await repos.webhooks.record_attempt(first["_id"], "s3", attempt, "failed", 8, None)
    assert await repos.webhooks.record_attempt(second["_id"], "s3", {"at": at(43), "httpStatus": 200}, "delivered", 1, None)
    got = await repos.webhooks.get_message(first["_id"])
    assert got["status"] == "failed" and got["attempts"] == [attempt] and "acquiredBy" not in got
    log = await repos.webhooks.list_messages(ws, None, None, None, None, 10)
    assert [m["eventId"] for m in log] == ["b1", "a2", "a1"]  # newest first
    assert [m["eventId"] for m in await repos.webhooks.list_messages(ws, None, None, None, log[0]["_id"], 1)] == ["a2"]
    assert [m["eventId"] for m in await repos.webhooks.list_messages(ws, e1, "failed", None, None, 10)] == ["a1"]
    assert [m["eventId"] for m in await repos.webhooks.list_messages(ws, None, None, "batch.started", None, 10)] == ["b1"]
    assert await repos.webhooks.list_messages(ObjectId(), None, None, None, None, 10) == []
    assert await repos.webhooks.recover(e1, at(1), at(50), 7) == 0  # a1 was created before `since`
    assert await repos.webhooks.recover(e1, at(0), at(50), 7) == 1
    again = await repos.webhooks.get_message(first["_id"])
    assert again["status"] == "pending" and again["step"] == 7 and again["nextAttemptAt"] == at(50)
    assert (await repos.webhooks.requeue(second["_id"], at(60), 7))["status"] == "pending"
    assert await repos.webhooks.requeue("msg_unknown", at(60), 7) is None
    assert await repos.webhooks.oldest_pending() == at(0)


async def _settle(repos, msg: dict, status: str, when: float) -> None:
    """Relay the message and record one attempt at `when` that leaves it `status`."""
    await repos.webhooks.relay([], [msg])
    [leased] = await repos.webhooks.lease(msg["endpointId"], at(when), "s", at(when + 30), 1)
    assert leased["_id"] == msg["_id"]
    due = None if status != "pending" else at(when + 300)
    assert await repos.webhooks.record_attempt(msg["_id"], "s", {"at": at(when), "httpStatus": 500}, status, 1, due)


async def test_purge_deletes_old_final_messages_only_and_at_most_the_limit(repos):
    """The retention: delivered and failed messages settled before the cutoff go, oldest first, at most `limit`
    a call; those settled since, and pending ones however old, stay. Settled is the last change, not creation:
    a message created long ago but sent again lately stays."""
    ws, e = ObjectId(), ObjectId()  # (an endpoint per pending message: a lease takes only the one asked for)
    day = 86_400
    for n, (status, when) in enumerate([("delivered", 1 * day), ("failed", 2 * day), ("delivered", 3 * day),
                                        ("delivered", 40 * day), ("failed", 41 * day)]):
        await _settle(repos, message(ws, e, f"f{n}"), status, when)
    await repos.webhooks.relay([], [message(ws, ObjectId(), "p0")])  # pending, never attempted, created at 0
    await _settle(repos, message(ws, ObjectId(), "p1", created=1), "pending", 2 * day)  # attempted long ago
    late = message(ws, e, "late")  # created at 0, failed, then sent again by hand and delivered on day 39
    await _settle(repos, late, "failed", 1)
    assert (await repos.webhooks.get_message(late["_id"]))["settledAt"] == at(1)  # its final attempt's time
    again = await repos.webhooks.requeue(late["_id"], at(39 * day), 1)
    assert again["status"] == "pending" and "settledAt" not in again  # pending: not settled
    [leased] = await repos.webhooks.lease(e, at(39 * day), "s", at(39 * day + 30), 10)
    assert leased["_id"] == late["_id"]
    assert await repos.webhooks.record_attempt(late["_id"], "s", {"at": at(39 * day)}, "delivered", 2, None)
    assert (await repos.webhooks.get_message(late["_id"]))["settledAt"] == at(39 * day)

    cutoff = at(10 * day)
    assert await repos.webhooks.purge_messages(cutoff, 2) == 2  # the limit holds
    left = {m["eventId"] for m in await repos.webhooks.list_messages(ws, None, None, None, None, 100)}
    assert left == {"f2", "f3", "f4", "p0", "p1", "late"}  # the two oldest went first
    assert await repos.webhooks.purge_messages(cutoff, 100) == 1
    assert await repos.webhooks.purge_messages(cutoff, 100) == 0
    left = {m["eventId"] for m in await repos.webhooks.list_messages(ws, None, None, None, None, 100)}
    assert left == {"f3", "f4", "p0", "p1", "late"}
    assert await repos.webhooks.purge_messages(at(100 * 365 * day), 100) == 3  # years on: every final one
    left = await repos.webhooks.list_messages(ws, None, None, None, None, 100)
    assert sorted(m["eventId"] for m in left) == ["p0", "p1"] and {m["status"] for m in left} == {"pending"}
    assert await repos.webhooks.oldest_pending() == at(0)
