"""SlotLedger: one shared document, written by compare-and-set on its version; releases by token.

Every writer reads first (that is how it learns the version; the read creates the document)."""

from __future__ import annotations

from bson import ObjectId

from tests.contract.conftest import T0, at


async def test_starts_empty(repos):
    state = await repos.ledger.read()
    assert (state.version, state.slots, state.all, state.next_dial_at) == (0, {}, [], None)
    assert (await repos.ledger.read()).version == 0  # reading writes nothing


async def test_write_is_a_compare_and_set_on_the_version(repos):
    batch, call = ObjectId(), ObjectId()
    entries = [{"callId": call, "token": "t1", "at": T0}]
    assert (await repos.ledger.read()).version == 0
    assert await repos.ledger.write(0, {str(batch): entries}, entries, at(1))
    state = await repos.ledger.read()
    assert (state.version, state.slots, state.all, state.next_dial_at) == (1, {str(batch): entries}, entries, at(1))
    assert not await repos.ledger.write(0, {}, [], None)  # stale
    assert (await repos.ledger.read()).all == entries
    assert await repos.ledger.write(1, {}, [], None)
    assert (await repos.ledger.read()).version == 2


async def test_read_hands_out_copies(repos):
    batch, call = ObjectId(), ObjectId()
    entries = [{"callId": call, "token": "t1", "at": T0}]
    await repos.ledger.read()
    assert await repos.ledger.write(0, {str(batch): entries}, entries, None)
    entries.append({"callId": ObjectId(), "token": "t1", "at": T0})  # the caller's lists are not kept
    state = await repos.ledger.read()
    state.all.append({"callId": ObjectId(), "token": "x", "at": T0})
    state.slots[str(batch)][0]["token"] = "changed"
    state.slots["other"] = []
    again = await repos.ledger.read()
    assert again.all == [{"callId": call, "token": "t1", "at": T0}]
    assert again.slots == {str(batch): [{"callId": call, "token": "t1", "at": T0}]}


async def test_release_removes_this_tokens_entries_of_these_calls(repos):
    batch, other_batch = ObjectId(), ObjectId()
    c1, c2, c3 = ObjectId(), ObjectId(), ObjectId()
    mine = [{"callId": c1, "token": "t1", "at": T0}, {"callId": c2, "token": "t1", "at": T0}]
    theirs = [{"callId": c1, "token": "t2", "at": T0}]
    kept_elsewhere = [{"callId": c3, "token": "t1", "at": T0}]
    await repos.ledger.read()
    assert await repos.ledger.write(0, {str(batch): mine + theirs, str(other_batch): kept_elsewhere},
                             mine + theirs + kept_elsewhere, at(5))
    await repos.ledger.release(batch, [c1, c3], "t1")
    state = await repos.ledger.read()
    assert state.version == 2
    assert state.slots[str(batch)] == [mine[1], theirs[0]]
    assert state.slots[str(other_batch)] == kept_elsewhere  # another batch's slots are not touched
    assert state.all == [mine[1], theirs[0]]
    assert state.next_dial_at == at(5)
    await repos.ledger.release(batch, [c1, c3], "t1")  # idempotent
    state = await repos.ledger.read()
    assert state.all == [mine[1], theirs[0]] and state.version == 3
