"""SlotLedger: the calls in flight per batch (the calls hold their own slots), plus one shared document of
reservations not seen claimed yet, written by compare-and-set on its version; releases by token.

Every writer reads first (that is how it learns the version; the read creates the document)."""

from __future__ import annotations

import pytest
from bson import ObjectId

from dialer.core.statuses import CallStatus
from dialer.ports import Claim, Finish, LedgerWrite
from tests.contract.conftest import T0, at, batch_doc, claim, enqueue, planned

A, B, C = "+14155550001", "+14155550002", "+14155550003"


def reservation(call: ObjectId, batch: ObjectId, token: str = "t1", when=T0) -> dict:
    return {"callId": call, "batchId": batch, "token": token, "at": when}


def bare(entries: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "holder"} for e in entries]


async def test_starts_empty(repos):
    state = await repos.ledger.read()
    assert (state.version, state.pending, state.flying, state.next_dial_at) == (0, [], {}, None)
    assert (await repos.ledger.read()).version == 0  # reading writes nothing


async def test_write_is_a_compare_and_set_on_the_version(repos):
    entries = [reservation(ObjectId(), ObjectId())]
    assert (await repos.ledger.read()).version == 0
    assert await repos.ledger.write(0, entries, at(1))
    state = await repos.ledger.read()
    assert (state.version, bare(state.pending), state.next_dial_at) == (1, entries, at(1))
    assert not await repos.ledger.write(0, [], None)  # stale
    assert bare((await repos.ledger.read()).pending) == entries
    assert await repos.ledger.write(1, [], None)
    assert (await repos.ledger.read()).version == 2


async def test_a_claim_lands_its_reservation_or_nothing(repos, batch):
    """CallRepo.claim with the ledger's compare-and-set: a stale version writes nothing at all (no claim, no
    deferral, no placed record); the current one lands the reservation and the claim together."""
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await repos.ledger.read()
    claims = [Claim(a, "t1", "d", at(1), at(121))]
    stale = LedgerWrite(5, [reservation(a, batch["_id"])], at(2))
    result = await repos.calls.claim(claims, [(b, at(600))], [], at(1), [batch["_id"]], reservation=stale)
    assert not result.reserved and result.won == set() and result.running == {}
    assert (await repos.calls.get(a))["status"] == "queued" and (await repos.calls.get(b))["nextAttemptAt"] == T0
    assert (await repos.ledger.read()).version == 0
    current = LedgerWrite(0, [reservation(a, batch["_id"])], at(2))
    result = await repos.calls.claim(claims, [(b, at(600))], [], at(1), [batch["_id"]], reservation=current)
    assert result.reserved and result.won == {a} and set(result.running) == {batch["_id"]}
    assert (await repos.calls.get(b))["nextAttemptAt"] == at(600)
    state = await repos.ledger.read()
    assert (state.version, state.next_dial_at, state.flying[batch["_id"]]) == (1, at(2), 1)
    assert [e["holder"] for e in state.pending] == [("dialing", "t1")]  # seen claimed: its call holds the slot


async def test_read_hands_out_copies(repos):
    call, batch = ObjectId(), ObjectId()
    entries = [reservation(call, batch)]
    await repos.ledger.read()
    assert await repos.ledger.write(0, entries, None)
    entries.append(reservation(ObjectId(), batch))  # the caller's lists are not kept
    state = await repos.ledger.read()
    state.pending.append(reservation(ObjectId(), batch, "x"))
    state.pending[0]["token"] = "changed"
    with pytest.raises(TypeError):  # the counts are read-only
        state.flying[batch] = 9  # type: ignore[index]
    again = await repos.ledger.read()
    assert bare(again.pending) == [reservation(call, batch)] and again.flying == {}


async def test_release_removes_this_tokens_reservations_of_these_calls(repos):
    batch, other_batch = ObjectId(), ObjectId()
    c1, c2, c3 = ObjectId(), ObjectId(), ObjectId()
    mine = [reservation(c1, batch), reservation(c2, batch)]
    theirs = [reservation(c1, batch, "t2")]
    elsewhere = [reservation(c3, other_batch)]
    await repos.ledger.read()
    assert await repos.ledger.write(0, mine + theirs + elsewhere, at(5))
    await repos.ledger.release([c1], "t1")
    state = await repos.ledger.read()
    assert state.version == 2
    assert bare(state.pending) == [mine[1], theirs[0], elsewhere[0]]
    assert state.next_dial_at == at(5)
    await repos.ledger.release([c1], "t1")  # idempotent
    state = await repos.ledger.read()
    assert bare(state.pending) == [mine[1], theirs[0], elsewhere[0]] and state.version == 3


async def test_each_reservation_is_read_with_its_calls_status_and_claim(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    gone = ObjectId()
    await repos.ledger.read()
    assert await repos.ledger.write(0, [reservation(a, batch["_id"], "tok-9"), reservation(b, batch["_id"]),
                                        reservation(gone, batch["_id"])], None)
    await claim(repos, a, token="tok-9")
    holders = {e["callId"]: e["holder"] for e in (await repos.ledger.read()).pending}
    assert holders == {a: ("dialing", "tok-9"), b: ("queued", None), gone: None}


async def test_the_calls_in_flight_are_counted_per_batch_and_free_their_slots_themselves(repos, batch):
    other = batch_doc()
    await repos.batches.insert(other)
    a, b, c = await enqueue(repos, batch, planned(A), planned(B), planned(C))
    (d,) = await enqueue(repos, other, planned(A))
    for call_id in (a, b, d):
        await claim(repos, call_id)
    assert (await repos.ledger.read()).flying == {batch["_id"]: 2, other["_id"]: 1}  # c is queued: no slot
    assert await repos.calls.progress(a, "tok-1", None, CallStatus.IN_PROGRESS.value, at(600), {"at": at(5), "event": "answered"},
                                      None, at(5))
    await repos.calls.finish(b, "tok-1", None, Finish("completed", "completed", {"at": at(30), "event": "done"}), at(30))
    await repos.calls.requeue_unplaced(d, "tok-1", at(31), {"at": at(31), "event": "window_closed"})
    assert (await repos.ledger.read()).flying == {batch["_id"]: 1}


async def test_a_read_for_some_batches_counts_theirs_and_the_account_total(repos, batch):
    """SlotLedger.read(batch_ids): a claim that looks at a few batches does not count the calls in flight of
    thousands; the account's total still counts every batch's."""
    other, idle = batch_doc(), batch_doc()
    for doc in (other, idle):
        await repos.batches.insert(doc)
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    (c,) = await enqueue(repos, other, planned(C))
    for call_id in (a, b, c):
        await claim(repos, call_id)
    state = await repos.ledger.read([batch["_id"], idle["_id"]])
    assert state.flying == {batch["_id"]: 2} and state.flying.total == 3
    assert state.flying.scope == {batch["_id"].binary, idle["_id"].binary}
    everything = await repos.ledger.read()
    assert everything.flying == {batch["_id"]: 2, other["_id"]: 1} and everything.flying.scope is None
    assert (await repos.ledger.read([])).flying.total == 3


async def test_a_look_reads_the_ledger_and_the_due_calls_as_the_two_reads_do(repos, batch):
    """CallRepo.look: the dispatcher's read before a claim, the slot ledger (scoped as SlotLedger.read) and the due
    calls of the batches asked (as CallRepo.due_many), in one store operation."""
    other = batch_doc()
    await repos.batches.insert(other)
    a, b, c = await enqueue(repos, batch, planned(A), planned(B), planned(C, at(90)))
    [d] = await enqueue(repos, other, planned("+14155550004"))
    await claim(repos, a)
    await repos.ledger.read()
    assert await repos.ledger.write(0, [reservation(ObjectId(), other["_id"])], at(3))
    state, due = await repos.calls.look([batch["_id"]], {batch["_id"]: 5, other["_id"]: 0}, at(10))
    alone = await repos.ledger.read([batch["_id"]])
    assert (state.version, bare(state.pending), state.next_dial_at) == (alone.version, bare(alone.pending), at(3))
    assert dict(state.flying) == {batch["_id"]: 1} and state.flying.total == 1 and state.flying.scope == alone.flying.scope
    assert due == await repos.calls.due_many({batch["_id"]: 5}, at(10))
    assert [x["_id"] for x in due[batch["_id"]][0]] == [b] and due[batch["_id"]][1] == at(90) and set(due) == {batch["_id"]}
    state, due = await repos.calls.look(None, {}, at(10))  # every batch's slots, no due calls asked
    assert dict(state.flying) == {batch["_id"]: 1} and state.flying.scope is None and due == {}


async def test_a_read_leaves_out_the_holders_of_the_settled_claims_only(repos, batch):
    """A dispatcher whose claim's write came back knows its reservations are no longer on their way: asked with
    their tokens (`settled`), the read does not look at their calls; the others' are read as ever."""
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a, token="mine")
    await claim(repos, b, token="theirs")
    await repos.ledger.read()
    assert await repos.ledger.write(0, [reservation(a, batch["_id"], "mine"), reservation(b, batch["_id"], "theirs")], None)
    for state in (await repos.ledger.read(None, frozenset({"mine"})),
                  (await repos.calls.look(None, {}, at(1), frozenset({"mine"})))[0]):
        assert [("holder" in e, e.get("holder")) for e in state.pending] == [(False, None), (True, ("dialing", "theirs"))]
        assert dict(state.flying) == {batch["_id"]: 2}
