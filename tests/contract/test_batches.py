"""BatchRepo: insert and read back, the dispatcher's and the reaper's lists, status moves by compare-and-set."""

from __future__ import annotations

from dialer.core.machine import COMPLETE, REOPEN, START_ON_ENQUEUE, START_SCHEDULED

from tests.contract.conftest import T0, at, batch_doc


async def test_insert_and_get_a_copy(repos):
    doc = batch_doc(status="pending")
    await repos.batches.insert(doc)
    doc["callingNumbers"].append("+19995550000")  # the caller's dict is not kept
    got = await repos.batches.get(doc["_id"])
    assert got["callingNumbers"] == ["+14155550100"] and got["status"] == "pending"
    assert (got["name"], got["concurrencyLimit"], got["createdAt"]) == ("contract batch", 10, T0)
    got["callingNumbers"].append("x")
    got["retry"]["maxAttempts"] = 9
    again = await repos.batches.get(doc["_id"])
    assert again["callingNumbers"] == ["+14155550100"] and again["retry"]["maxAttempts"] == 1
    assert await repos.batches.get(batch_doc()["_id"]) is None


async def test_runnable_is_running_and_started_in_id_order(repos):
    first, second = batch_doc(), batch_doc(scheduled_at=at(-60))
    later = batch_doc(scheduled_at=at(3600))
    pending, paused = batch_doc(status="pending"), batch_doc(status="paused")
    for doc in (later, second, pending, first, paused):
        await repos.batches.insert(doc)
    assert [b["_id"] for b in await repos.batches.runnable(T0)] == [first["_id"], second["_id"]]
    assert [b["_id"] for b in await repos.batches.runnable(at(3600))] == [first["_id"], second["_id"], later["_id"]]


async def test_runnable_among_reads_only_the_batches_asked_for(repos):
    first, second, third = batch_doc(), batch_doc(), batch_doc(scheduled_at=at(3600))
    paused = batch_doc(status="paused")
    for doc in (third, second, paused, first):
        await repos.batches.insert(doc)
    asked = [third["_id"], paused["_id"], second["_id"], batch_doc()["_id"]]  # an unknown id too
    assert [b["_id"] for b in await repos.batches.runnable_among(asked, T0)] == [second["_id"]]
    assert [b["_id"] for b in await repos.batches.runnable_among(asked, at(3600))] == [second["_id"], third["_id"]]
    assert await repos.batches.runnable_among([], T0) == []
    [got] = await repos.batches.runnable_among([first["_id"]], T0)
    got["callingNumbers"].append("x")  # a copy
    assert (await repos.batches.get(first["_id"]))["callingNumbers"] == ["+14155550100"]


async def test_scheduled_due_is_pending_with_a_start_that_has_come(repos):
    due, future = batch_doc(status="pending", scheduled_at=at(-1)), batch_doc(status="pending", scheduled_at=at(60))
    unscheduled, running = batch_doc(status="pending"), batch_doc(status="running", scheduled_at=at(-1))
    for doc in (due, future, unscheduled, running):
        await repos.batches.insert(doc)
    assert [b["_id"] for b in await repos.batches.scheduled_due(T0)] == [due["_id"]]
    assert {b["_id"] for b in await repos.batches.scheduled_due(at(60))} == {due["_id"], future["_id"]}


async def test_move_is_a_compare_and_set_on_the_status(repos):
    doc = batch_doc(status="pending")
    await repos.batches.insert(doc)
    assert not await repos.batches.move(doc["_id"], COMPLETE, at(1))  # not running
    assert (await repos.batches.get(doc["_id"]))["status"] == "pending"
    assert await repos.batches.move(doc["_id"], START_SCHEDULED, at(2), {"startedAt": at(2)})
    got = await repos.batches.get(doc["_id"])
    assert (got["status"], got["startedAt"], got["updatedAt"]) == ("running", at(2), at(2))
    assert not await repos.batches.move(doc["_id"], START_SCHEDULED, at(3))  # a second starter loses
    assert await repos.batches.move(doc["_id"], COMPLETE, at(4), {"completedAt": at(4)})
    assert (await repos.batches.runnable(at(5))) == []
    assert await repos.batches.move(doc["_id"], REOPEN, at(5), unset=("completedAt",))
    got = await repos.batches.get(doc["_id"])
    assert got["status"] == "running" and "completedAt" not in got and got["updatedAt"] == at(5)
    assert [b["_id"] for b in await repos.batches.runnable(at(5))] == [doc["_id"]]
    assert not await repos.batches.move(batch_doc()["_id"], START_ON_ENQUEUE, at(6))  # no such batch


async def test_a_started_batch_leaves_scheduled_due(repos):
    doc = batch_doc(status="pending", scheduled_at=at(-1))
    await repos.batches.insert(doc)
    assert await repos.batches.move(doc["_id"], START_SCHEDULED, T0, {"startedAt": T0})
    assert await repos.batches.scheduled_due(T0) == []
    assert [b["_id"] for b in await repos.batches.runnable(T0)] == [doc["_id"]]


async def test_by_public_id(repos):
    from tests.contract.conftest import batch_doc

    doc = batch_doc(publicId="550e8400-e29b-41d4-a716-446655440000")
    await repos.batches.insert(doc)
    await repos.batches.insert(batch_doc())  # batches without one do not clash
    await repos.batches.insert(batch_doc())
    assert (await repos.batches.by_public_id("550e8400-e29b-41d4-a716-446655440000"))["_id"] == doc["_id"]
    assert await repos.batches.by_public_id("00000000-0000-0000-0000-000000000000") is None
    assert await repos.batches.delete(doc["_id"])
    assert await repos.batches.by_public_id("550e8400-e29b-41d4-a716-446655440000") is None


async def test_move_many_moves_those_in_a_source_status_in_one_write(repos):
    running = [batch_doc() for _ in range(3)]
    paused = batch_doc(status="paused")
    for doc in running + [paused]:
        await repos.batches.insert(doc)
    missing = batch_doc()["_id"]
    ids = [d["_id"] for d in running] + [paused["_id"], missing]
    moved = await repos.batches.move_many(ids, COMPLETE, at(10), {"completedAt": at(10)})
    assert moved == {d["_id"] for d in running}
    for doc in running:
        got = await repos.batches.get(doc["_id"])
        assert (got["status"], got["completedAt"], got["updatedAt"]) == ("completed", at(10), at(10))
    assert (await repos.batches.get(paused["_id"]))["status"] == "paused"
    assert await repos.batches.move_many(ids, COMPLETE, at(11)) == set()  # a second mover loses
    assert await repos.batches.move_many([], COMPLETE, at(12)) == set()
