"""BatchRepo.updated_since: the batches changed at or after a time, whatever their status (the counter
reconciliation's batches that stopped running lately)."""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

from dialer.core.machine import COMPLETE, STOP
from tests.contract.conftest import at, batch_doc


async def test_updated_since_follows_every_change_of_a_batch(repos):
    old, stopped, renamed = (batch_doc() for _ in range(3))
    for doc in (old, stopped, renamed):
        await repos.batches.insert(doc)  # updatedAt T0
    assert await repos.batches.move(stopped["_id"], STOP, at(60))
    assert await repos.batches.update(renamed["_id"], ["running"], {"name": "renamed"}, at(120))
    assert [b["_id"] for b in await repos.batches.updated_since(at(0))] == [old["_id"], stopped["_id"], renamed["_id"]]
    assert [b["_id"] for b in await repos.batches.updated_since(at(60))] == [stopped["_id"], renamed["_id"]]
    [found] = await repos.batches.updated_since(at(61))
    assert found["_id"] == renamed["_id"] and found["name"] == "renamed" and found["updatedAt"] == at(120)
    assert await repos.batches.note_enqueued(old["_id"], at(300)) == "running"  # not a change of the batch's own
    assert await repos.batches.note_enqueued(ObjectId(), at(300)) is None  # no such batch
    assert not await repos.batches.move(stopped["_id"], COMPLETE, at(400))  # not running: nothing changes
    assert await repos.batches.updated_since(at(121)) == []
    assert await repos.batches.delete(renamed["_id"])
    assert [b["_id"] for b in await repos.batches.updated_since(at(60))] == [stopped["_id"]]


async def test_changed_since_adds_the_batches_given_calls(repos):
    """BatchRepo.changed_since: updated_since plus the batches whose queue was joined (note_enqueued): what a
    dispatcher re-reads between its full reads of the running batches."""
    quiet, fed, stopped = (batch_doc() for _ in range(3))
    for doc in (quiet, fed, stopped):
        await repos.batches.insert(doc)  # updatedAt T0
    assert [b["_id"] for b in await repos.batches.changed_since(at(0))] == [quiet["_id"], fed["_id"], stopped["_id"]]
    assert await repos.batches.changed_since(at(1)) == []
    await repos.batches.note_enqueued(fed["_id"], at(30))
    assert await repos.batches.move(stopped["_id"], STOP, at(60))
    assert [b["_id"] for b in await repos.batches.changed_since(at(30))] == [fed["_id"], stopped["_id"]]
    [found] = await repos.batches.changed_since(at(31))  # stamps only: the dispatcher reads documents it lacks
    assert found == {"_id": stopped["_id"], "status": "paused", "updatedAt": at(60), "enqueuedAt": None,
                     "scheduledAt": None}
    assert await repos.batches.update(fed["_id"], ["running"], {"name": "renamed"}, at(90))
    [found] = await repos.batches.changed_since(at(61))
    assert found == {"_id": fed["_id"], "status": "running", "updatedAt": at(90), "enqueuedAt": at(30),
                     "scheduledAt": None}  # a later save keeps the stamp
    later = batch_doc(status="pending", scheduled_at=at(3600))  # a scheduled start is told with the stamps
    await repos.batches.insert(later)
    assert {b["_id"]: b["scheduledAt"] for b in await repos.batches.changed_since(at(0))}[later["_id"]] == at(3600)
    await repos.batches.note_enqueued(fed["_id"], at(200))
    assert [b["_id"] for b in await repos.batches.changed_since(at(150))] == [fed["_id"]]


async def test_runnable_stamps_tell_which_copies_changed(repos):
    """BatchRepo.runnable_stamps: every runnable batch's (updatedAt, enqueuedAt), without its document: a
    dispatcher's minute look at thousands of running batches reads again only those whose stamps moved."""
    fed, renamed, later = batch_doc(), batch_doc(), batch_doc(scheduled_at=at(3600))
    paused = batch_doc(status="paused")
    for doc in (fed, renamed, later, paused):
        await repos.batches.insert(doc)  # updatedAt T0
    assert await repos.batches.runnable_stamps(at(0)) == {fed["_id"]: (at(0), None), renamed["_id"]: (at(0), None)}
    await repos.batches.note_enqueued(fed["_id"], at(30))
    assert await repos.batches.update(renamed["_id"], ["running"], {"name": "renamed"}, at(90))
    assert await repos.batches.runnable_stamps(at(3600)) == {
        fed["_id"]: (at(0), at(30)), renamed["_id"]: (at(90), None), later["_id"]: (at(0), None)}
    assert await repos.batches.move(renamed["_id"], STOP, at(120))
    assert set(await repos.batches.runnable_stamps(at(3600))) == {fed["_id"], later["_id"]}
    # Among some batches only: the look just before placing (a stopped one is not there, an unknown id neither).
    assert await repos.batches.runnable_stamps(at(0), [fed["_id"], renamed["_id"], later["_id"], paused["_id"],
                                                       ObjectId()]) == {fed["_id"]: (at(0), at(30))}
    assert await repos.batches.runnable_stamps(at(0), []) == {}


async def test_times_read_as_stamps_equal_those_written_to_the_millisecond_in_any_century(repos):
    """The stamps a dispatcher compares with its copies (changed_since, runnable_stamps) come back equal to the
    documents' times: before 1970, after 2106 (past the SQLite store's fast conversion) and in between."""
    times = [dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc),
             dt.datetime(2026, 3, 8, 7, 0, 0, 1000, tzinfo=dt.timezone.utc),
             dt.datetime(2106, 2, 7, 6, 28, 15, 999000, tzinfo=dt.timezone.utc),
             dt.datetime(2106, 2, 7, 6, 28, 16, 1000, tzinfo=dt.timezone.utc),
             dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc)]
    docs = [batch_doc() for _ in times]
    for doc, when in zip(docs, times):
        await repos.batches.insert(doc)
        assert await repos.batches.note_enqueued(doc["_id"], when) == doc["status"]
    read = {b["_id"]: b["enqueuedAt"] for b in await repos.batches.changed_since(times[0])}
    assert [read[d["_id"]] for d in docs] == times
    stamps = await repos.batches.runnable_stamps(at(0), [d["_id"] for d in docs])
    assert [stamps[d["_id"]][1] for d in docs] == times
