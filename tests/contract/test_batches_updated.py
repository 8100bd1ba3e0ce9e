"""BatchRepo.updated_since: the batches changed at or after a time, whatever their status (the counter
reconciliation's batches that stopped running lately)."""

from __future__ import annotations

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
    await repos.batches.note_enqueued(old["_id"], at(300))  # not a change of the batch's own
    assert not await repos.batches.move(stopped["_id"], COMPLETE, at(400))  # not running: nothing changes
    assert await repos.batches.updated_since(at(121)) == []
    assert await repos.batches.delete(renamed["_id"])
    assert [b["_id"] for b in await repos.batches.updated_since(at(60))] == [stopped["_id"]]
