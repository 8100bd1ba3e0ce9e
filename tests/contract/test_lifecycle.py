"""CallRepo and BatchRepo for operators: claims not yet placed, withdrawing, retrying, deleting,
listing a workspace's batches, and counters of many batches at once."""

from __future__ import annotations

from bson import ObjectId

from dialer.ports import Finish, PlacedRecord, Tally
from tests.contract.conftest import T0, at, batch_doc, claim, enqueue, planned

A, B, C, D = "+14155550001", "+14155550002", "+14155550003", "+14155550004"


def entry(event: str, seconds: float = 0) -> dict:
    return {"at": at(seconds), "event": event}


async def test_unplaced_counts_claims_until_placed_uncertain_or_handed_back(repos, batch):
    a, b, c, d = await enqueue(repos, batch, planned(A), planned(B), planned(C), planned(D))
    for call_id in (a, b, c):
        await claim(repos, call_id)
    assert await repos.calls.unplaced(batch["_id"]) == 3
    assert await repos.calls.unplaced_numbers([batch["_id"]]) == {A, B, C}
    assert await repos.calls.unplaced_numbers([ObjectId()]) == set() == await repos.calls.unplaced_numbers([])
    await repos.calls.record_placed([PlacedRecord(a, "tok-1", "CA1", at(3), at(120))])
    assert await repos.calls.mark_uncertain(b, "tok-1", at(30), entry("provider_error", 2))
    assert await repos.calls.unplaced(batch["_id"]) == 1
    assert await repos.calls.unplaced_numbers([ObjectId(), batch["_id"]]) == {C}
    assert await repos.calls.requeue_unplaced(c, "tok-1", at(60), entry("batch_not_running", 2))
    assert await repos.calls.unplaced(batch["_id"]) == 0
    assert (await repos.calls.get(c))["attempts"] == 0  # nothing reached the callee


async def test_withdraw_cancels_waiting_calls_only_and_frees_their_callees(repos, batch):
    a, b, c = await enqueue(repos, batch, planned(A), planned(B), planned(C))
    await claim(repos, a)
    assert await repos.calls.withdraw(batch["_id"], at(5), entry("batch_cancelled", 5), 1) == 1
    assert await repos.calls.withdraw(batch["_id"], at(5), entry("batch_cancelled", 5), 10) == 1
    assert await repos.calls.withdraw(batch["_id"], at(5), entry("batch_cancelled", 5), 10) == 0
    calls = {d["_id"]: d for d in await repos.calls.page(batch["_id"], None, None, 10)}
    assert calls[a]["status"] == "dialing"
    assert {calls[b]["status"], calls[c]["status"]} == {"cancelled"} and calls[b]["outcome"] == "cancelled"
    assert not await repos.calls.has_waiting(batch["_id"])
    [again] = await enqueue(repos, batch, planned(B))  # the callee may be called in a new call
    assert again != b
    assert set(await repos.calls.tallies(batch["_id"])) == {
        Tally("dialing", None, 1, 1, 1), Tally("cancelled", "cancelled", 2, 0, 0), Tally("queued", None, 1, 0, 0)}


async def test_in_flight_lists_the_calls_in_flight(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a)
    assert [d["_id"] for d in await repos.calls.in_flight(batch["_id"])] == [a]


async def test_retry_finished_requeues_the_named_outcomes_once(repos, batch):
    ids = await enqueue(repos, batch, planned(A), planned(B), planned(C), planned(D))
    a, b, c, d = ids
    outcomes = {a: ("busy", "busy"), b: ("completed", "completed"), c: ("no_answer", "no_answer"), d: ("busy", "busy")}
    for call_id, (status, outcome) in outcomes.items():
        await claim(repos, call_id)
        assert await repos.calls.finish(call_id, "tok-1", None, Finish(status, outcome, entry(outcome, 30)), at(30))
    [newer] = await enqueue(repos, batch, planned(D), now=at(40))  # D's callee has a new call waiting
    now = at(60)
    assert await repos.calls.retry_finished(batch["_id"], ["busy", "no_answer"], now, entry("retry", 60), 2) in (
        (2, 0), (1, 1))
    while await repos.calls.retry_finished(batch["_id"], ["busy", "no_answer"], now, entry("retry", 60), 2) != (0, 0):
        pass
    calls = {x["_id"]: x for x in await repos.calls.page(batch["_id"], None, None, 10)}
    assert calls[a]["status"] == calls[c]["status"] == "queued" and calls[a]["outcome"] == "busy"
    assert calls[a]["nextAttemptAt"] == now and calls[a]["attempts"] == 1
    assert calls[b]["status"] == "completed"  # a success is never dialled again
    assert calls[d]["status"] == "busy" and calls[newer]["status"] == "queued"
    assert [x["_id"] for x in await repos.calls.due(batch["_id"], at(61), 10)] == [newer, a, c]
    await enqueue(repos, batch, planned(A))  # the retried call is the callee's active call again
    assert (await repos.calls.get(a))["status"] == "queued"
    assert len(await repos.calls.page(batch["_id"], None, None, 10)) == 5


async def test_delete_calls_in_steps(repos, batch):
    await enqueue(repos, batch, *(planned(f"+1415555{i:04d}") for i in range(5)))
    assert await repos.calls.delete_calls(batch["_id"], 3) == 3
    assert await repos.calls.delete_calls(batch["_id"], 3) == 2
    assert await repos.calls.delete_calls(batch["_id"], 3) == 0
    assert await repos.calls.page(batch["_id"], None, None, 10) == []
    assert not await repos.calls.has_active(batch["_id"])


async def test_tallies_of_many_batches(repos, batch):
    other = batch_doc()
    await repos.batches.insert(other)
    await enqueue(repos, batch, planned(A), planned(B))
    await enqueue(repos, other, planned(A))
    missing = ObjectId()
    assert await repos.calls.tallies_many([batch["_id"], other["_id"], missing]) == {
        batch["_id"]: [Tally("queued", None, 2, 0, 0)], other["_id"]: [Tally("queued", None, 1, 0, 0)], missing: []}


async def test_list_a_workspaces_batches_newest_first(repos):
    workspace, agent = ObjectId(), ObjectId()
    docs = [batch_doc(workspaceId=workspace, agentId=agent if i % 2 else ObjectId(),
                      status="running" if i < 3 else "paused") for i in range(5)]
    for doc in docs:
        await repos.batches.insert(doc)
    await repos.batches.insert(batch_doc())  # another workspace's
    ids = [d["_id"] for d in docs]

    async def listed(**kw):
        args = {"statuses": None, "agent_id": None, "before": None, "limit": 10, **kw}
        return [d["_id"] for d in await repos.batches.list(workspace, **args)]

    assert await listed() == ids[::-1]
    assert await listed(limit=2) == [ids[4], ids[3]]
    assert await listed(before=ids[3], limit=2) == [ids[2], ids[1]]
    assert await listed(statuses=["paused"]) == [ids[4], ids[3]]
    assert await listed(agent_id=agent) == [ids[3], ids[1]]
    assert await listed(before=ids[0]) == []


async def test_update_and_delete_a_batch(repos, batch):
    updated = await repos.batches.update(batch["_id"], ["running", "paused"], {"concurrencyLimit": 25}, at(9))
    assert updated["concurrencyLimit"] == 25 and updated["updatedAt"] == at(9)
    assert (await repos.batches.get(batch["_id"]))["concurrencyLimit"] == 25
    assert await repos.batches.update(batch["_id"], ["cancelled"], {"concurrencyLimit": 1}, at(9)) is None
    assert await repos.batches.delete(batch["_id"])
    assert await repos.batches.get(batch["_id"]) is None and not await repos.batches.delete(batch["_id"])
    assert T0 < at(9)


async def test_bring_forward_makes_later_calls_due_now(repos, batch):
    a, b = await enqueue(repos, batch, planned(A, earliest=at(3600)), planned(B, earliest=at(0)))
    assert await repos.calls.bring_forward(batch["_id"], at(10)) == 1
    assert [d["_id"] for d in await repos.calls.due(batch["_id"], at(10), 10)] == [b, a]
    assert (await repos.calls.get(a))["nextAttemptAt"] == at(10)


async def test_an_operator_retry_forgets_the_last_attempts_provider_call(repos, batch):
    """Found in review: the retried call kept the last attempt's providerCallId, so its next claim looked
    placed already (a stop did not wait for it, a refused create could not hand it back, and the reaper
    asked the provider about the old call)."""
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    await repos.calls.record_placed([PlacedRecord(a, "tok-1", "CA-old", at(3), at(120))])
    done = Finish("busy", "busy", entry("busy", 30), provider_call_id="CA-old", duration=0)
    assert await repos.calls.finish(a, "tok-1", None, done, at(30))
    assert await repos.calls.retry_finished(batch["_id"], ["busy"], at(60), entry("retry", 60), 10) == (1, 0)
    call = await repos.calls.get(a)
    assert call["status"] == "queued" and call["outcome"] == "busy"
    assert not {"providerCallId", "answeredBy", "duration", "finishedAt", "uncertain"} & set(call)
    await claim(repos, a, "tok-2", now=at(61))
    assert await repos.calls.unplaced(batch["_id"]) == 1  # a stop waits for it to be placed or handed back
    assert await repos.calls.requeue_unplaced(a, "tok-2", at(70), entry("provider_error", 62), provider_error=True)


async def test_audit_many_sees_each_batch_s_recount_and_any_drift_of_its_kept_tallies(repos, batch):
    a, _ = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a)
    other = batch_doc()
    await repos.batches.insert(other)
    await enqueue(repos, other, planned(C))
    unknown = ObjectId()
    audits = await repos.calls.audit_many([batch["_id"], other["_id"], unknown])
    assert set(audits) == {batch["_id"], other["_id"], unknown}
    actual, drift = audits[batch["_id"]]
    assert set(actual) == {Tally("dialing", None, 1, 1, 1), Tally("queued", None, 1, 0, 0)} and drift == []
    assert audits[other["_id"]] == ([Tally("queued", None, 1, 0, 0)], []) and audits[unknown] == ([], [])
    await repos.calls.correct(batch["_id"], [Tally("queued", None, 2, 0, 0)])  # the kept tallies drift
    audits = await repos.calls.audit_many([other["_id"], batch["_id"]])
    assert audits[batch["_id"]][1] == [Tally("queued", None, -2, 0, 0)]
    assert audits[other["_id"]][1] == []  # the other batch's are right
    assert await repos.calls.audit_many([]) == {}


async def test_two_records_of_one_callee_in_a_chunk_make_one_call(repos, batch):
    result = await repos.calls.enqueue(batch, [planned(A, variables={"n": 1}), planned(A, variables={"n": 2})], T0)
    assert (result.error, result.inserted, result.updated) == (None, 1, 1)
    assert result.call_ids[0] == result.call_ids[1]
    [call] = await repos.calls.page(batch["_id"], None, None, 10)
    assert call["variables"] == {"n": 2}
