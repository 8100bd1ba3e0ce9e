"""DncRepo on every backend (each workspace's do-not-call list: first listing stands, lookups batched and
workspace-scoped, pages by number) and the CallRepo methods the list needs: an unplaced claim suppressed
(its attempt not counted) and an opt-out's withdrawal of a number's waiting calls in several batches."""

from __future__ import annotations

from bson import ObjectId

from dialer.ports import PlacedRecord, Tally
from tests.contract.conftest import T0, at, batch_doc, claim, enqueue, planned

A, B, C = "+14155550001", "+14155550002", "+14155550003"


def listing(workspace_id: ObjectId, number: str, source: str = "manual", seconds: float = 0, **more) -> dict:
    return {"workspaceId": workspace_id, "number": number, "source": source, "listedAt": at(seconds), **more}


def entry(seconds: float = 0) -> dict:
    return {"at": at(seconds), "event": "suppressed", "rule": "dnc: manual 2026-11-23"}


async def test_the_first_listing_of_a_number_stands(repos):
    ws = ObjectId()
    call_id = ObjectId()
    assert await repos.dnc.add([listing(ws, A, "opt-out", callId=call_id), listing(ws, B, reason="asked")]) == 2
    assert await repos.dnc.add([listing(ws, A, "import", 60), listing(ws, C)]) == 1
    got = await repos.dnc.get(ws, A)
    assert got == {"workspaceId": ws, "number": A, "source": "opt-out", "listedAt": T0, "callId": call_id}
    assert (await repos.dnc.get(ws, B))["reason"] == "asked"
    assert await repos.dnc.count(ws) == 3
    assert await repos.dnc.add([]) == 0


async def test_lists_are_per_workspace_and_looked_up_in_one_batch(repos):
    mine, theirs = ObjectId(), ObjectId()
    await repos.dnc.add([listing(mine, A), listing(theirs, B)])
    found = await repos.dnc.listed([(mine, A), (mine, B), (theirs, A), (theirs, B), (mine, A)])
    assert set(found) == {(mine, A), (theirs, B)}
    assert found[(mine, A)]["source"] == "manual"
    assert await repos.dnc.get(theirs, A) is None
    assert not await repos.dnc.remove(theirs, A)  # not theirs to remove
    assert await repos.dnc.remove(mine, A)
    assert not await repos.dnc.remove(mine, A)
    assert await repos.dnc.listed([(mine, A)]) == {}
    assert await repos.dnc.listed([]) == {}


async def test_pages_go_by_number_from_a_cursor_and_a_prefix_narrows_them(repos):
    ws = ObjectId()
    numbers = ["+12125550100", "+12125550101", "+13105550100", "+14155550100", "+442079460000"]
    await repos.dnc.add([listing(ws, n) for n in reversed(numbers)])
    await repos.dnc.add([listing(ObjectId(), "+12125550102")])  # another workspace's
    first = await repos.dnc.page(ws, None, None, 2)
    assert [e["number"] for e in first] == numbers[:2]
    rest = await repos.dnc.page(ws, None, first[-1]["number"], 10)
    assert [e["number"] for e in rest] == numbers[2:]
    assert [e["number"] for e in await repos.dnc.page(ws, "+1212", None, 10)] == numbers[:2]
    assert [e["number"] for e in await repos.dnc.page(ws, "+1212", numbers[0], 10)] == numbers[1:2]
    assert await repos.dnc.page(ws, "+19", None, 10) == []


async def test_a_claim_whose_number_was_listed_ends_suppressed_without_counting_an_attempt(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    assert await claim(repos, a, token="tok-a")
    assert await claim(repos, b, token="tok-b")
    assert await repos.calls.suppress_claimed(a, "tok-other", entry(1), at(1)) is None  # another attempt's
    after = await repos.calls.suppress_claimed(a, "tok-a", entry(1), at(1))
    assert (after["status"], after["outcome"], after["attempts"]) == ("skipped", "suppressed", 0)
    assert after["history"][-1]["rule"] == "dnc: manual 2026-11-23"
    assert "activeKey" not in after and "leaseUntil" not in after
    assert await repos.calls.suppress_claimed(a, "tok-a", entry(2), at(2)) is None  # once
    assert [(e.type, e.doc["_id"]) for e in await repos.webhooks.outbox(100)] == [("call.suppressed", a)]
    await repos.calls.record_placed([PlacedRecord(b, "tok-b", "CA-b", at(1), at(200))])
    assert await repos.calls.suppress_claimed(b, "tok-b", entry(2), at(2)) is None  # placed: too late
    assert set(await repos.calls.tallies(batch["_id"])) == {Tally("skipped", "suppressed", 1, 0, 0),
                                                            Tally("dialing", None, 1, 1, 1)}
    [again] = await enqueue(repos, batch, planned(A), now=at(3))  # the callee may be enqueued anew
    assert again != a


async def test_an_opt_out_withdraws_the_numbers_waiting_calls_in_every_batch(repos, batch):
    other = batch_doc(workspaceId=batch["workspaceId"])
    await repos.batches.insert(other)
    near = "+1415555000"  # a prefix of A's digits: another number
    a1, a_ext, b1, n1 = await enqueue(repos, batch, planned(A), planned(A, extension="22"), planned(B), planned(near))
    a2, a3 = await enqueue(repos, other, planned(A), planned(C))
    held = planned(A)
    held.call_id, held.held, held.key_suffix = ObjectId(), True, "#1"
    held.group = {"key": "callee", "seq": 1, "policy": "each"}
    await repos.calls.insert_new(other, [held], T0)
    assert await claim(repos, a2, token="tok")  # in flight: left alone (the placer's check is its own)
    done = await repos.calls.suppress_waiting([batch["_id"], other["_id"]], A, at(5), entry(5))
    assert {d["_id"] for d in done} == {a1, a_ext, held.call_id}
    for call_id in (a1, a_ext, held.call_id):
        got = await repos.calls.get(call_id)
        assert (got["status"], got["outcome"], got["history"][-1]["event"]) == ("skipped", "suppressed", "suppressed")
    for call_id, status in ((b1, "queued"), (n1, "queued"), (a2, "dialing"), (a3, "queued")):
        assert (await repos.calls.get(call_id))["status"] == status
    assert sorted(e.type for e in await repos.webhooks.outbox(100)) == ["call.suppressed"] * 3
    assert await repos.calls.suppress_waiting([batch["_id"], other["_id"]], A, at(6), entry(6)) == []
    assert await repos.calls.suppress_waiting([], A, at(6), entry(6)) == []
    assert Tally("skipped", "suppressed", 2, 0, 0) in set(await repos.calls.tallies(batch["_id"]))
    assert Tally("skipped", "suppressed", 1, 0, 0) in set(await repos.calls.tallies(other["_id"]))


async def test_a_call_stopped_before_it_was_queued_is_written_final_once(repos, batch):
    stopped = planned(A)
    stopped.call_id, stopped.suppressed = ObjectId(), entry()
    assert await repos.calls.insert_new(batch, [stopped], T0) == 1
    assert await repos.calls.insert_new(batch, [stopped], at(1)) == 0  # a retried submit writes it once
    got = await repos.calls.get(stopped.call_id)
    assert (got["status"], got["outcome"], got["attempts"], "activeKey" in got) == ("skipped", "suppressed", 0, False)
    assert got["history"] == [{**entry(), "result": "suppressed"}]
    assert await repos.calls.due(batch["_id"], at(10), 10) == []
    assert await repos.calls.tallies(batch["_id"]) == [Tally("skipped", "suppressed", 1, 0, 0)]
    assert len(await enqueue(repos, batch, planned(A))) == 1  # holds no key: the callee may still be enqueued
