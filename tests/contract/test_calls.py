"""CallRepo: enqueue rules, the dispatcher's reads and claims, event writes, the reaper's reads."""

from __future__ import annotations

import asyncio

import pytest

from bson import ObjectId

from dialer.ports import BUSY_WAIT, Claim, Finish, PlacedRecord, Tally, active_key, line_key

from tests.contract.conftest import T0, at, batch_doc, claim, enqueue, planned

A, B, C, D, E = "+14155550001", "+14155550002", "+14155550003", "+14155550004", "+14155550005"


def entry(event: str, seconds: float = 0, **extra) -> dict:
    return {"at": at(seconds), "event": event, **extra}


def final(outcome: str = "completed", status: str | None = None, **kw) -> Finish:
    return Finish(final=status or outcome, outcome=outcome, entry=entry(outcome, 30), **kw)


# ---- enqueue ---------------------------------------------------------------------------------------

async def test_enqueue_inserts_new_queued_calls(repos, batch):
    result = await repos.calls.enqueue(batch, [planned(A, at(60), raw="(415) 555-0001", variables={"name": "Ann"}),
                                               planned(B, at(90), zones=("America/Chicago",), zone_source="record")],
                                       at(5))
    assert (result.inserted, result.updated, result.in_flight, result.error) == (2, 0, [], None)
    assert len(result.call_ids) == 2 and len(set(result.call_ids)) == 2
    doc = await repos.calls.get(ObjectId(result.call_ids[0]))
    assert doc["batchId"] == batch["_id"] and doc["workspaceId"] == batch["workspaceId"]
    assert (doc["phoneNumber"], doc["extension"], doc["input"]) == (A, None, {"phoneNumber": "(415) 555-0001"})
    assert doc["variables"] == {"name": "Ann"}
    assert (doc["timezones"], doc["zoneSource"]) == (["America/New_York"], "number")
    assert (doc["status"], doc["attempts"], doc["history"]) == ("queued", 0, [])
    assert doc["activeKey"] == active_key(batch["_id"], A, None)
    assert doc["nextAttemptAt"] == at(60)
    assert doc["createdAt"] == doc["updatedAt"] == at(5)
    second = await repos.calls.get(ObjectId(result.call_ids[1]))
    assert (second["phoneNumber"], second["timezones"], second["zoneSource"]) == (B, ["America/Chicago"], "record")


async def test_enqueue_updates_a_waiting_call_in_place(repos, batch):
    [first] = await enqueue(repos, batch, planned(A, at(3600), variables={"a": 1, "b": 2}))
    result = await repos.calls.enqueue(
        batch, [planned(A, at(60), raw="4155550001", variables={"c": 3}, zones=("America/Denver",),
                        zone_source="record")], at(10))
    assert (result.inserted, result.updated, result.call_ids) == (0, 1, [str(first)])
    doc = await repos.calls.get(first)
    assert doc["variables"] == {"c": 3}  # replaced, not merged
    assert doc["input"]["phoneNumber"] == "4155550001"
    assert (doc["timezones"], doc["zoneSource"]) == (["America/Denver"], "record")
    assert doc["nextAttemptAt"] == at(3600)  # never moved earlier
    assert doc["updatedAt"] == at(10) and doc["createdAt"] == T0
    await enqueue(repos, batch, planned(A, at(7200)))
    assert (await repos.calls.get(first))["nextAttemptAt"] == at(7200)  # later is taken
    assert [d["_id"] for d in await repos.calls.page(batch["_id"], None, None, 10)] == [first]


async def test_call_ids_follow_the_chunk_order(repos, batch):
    [b_id] = await enqueue(repos, batch, planned(B))
    result = await repos.calls.enqueue(batch, [planned(A), planned(B), planned(C)], T0)
    assert (result.inserted, result.updated) == (2, 1)
    assert result.call_ids[1] == str(b_id)
    phones = [(await repos.calls.get(ObjectId(i)))["phoneNumber"] for i in result.call_ids]
    assert phones == [A, B, C]


async def test_a_call_in_flight_is_reported_and_untouched(repos, batch):
    [call_id] = await enqueue(repos, batch, planned(A, variables={"v": "old"}))
    assert await claim(repos, call_id)
    before = await repos.calls.get(call_id)
    result = await repos.calls.enqueue(batch, [planned(A, at(999), variables={"v": "new"}), planned(B)], at(1))
    assert result.in_flight == [{"phoneNumber": A, "callId": str(call_id), "status": "dialing"}]
    assert (result.inserted, result.updated, len(result.call_ids)) == (1, 0, 1)
    assert str(call_id) not in result.call_ids
    assert await repos.calls.get(call_id) == before


async def test_a_finished_callee_gets_a_new_call(repos, batch):
    [old] = await enqueue(repos, batch, planned(A))
    await claim(repos, old)
    assert await repos.calls.finish(old, "tok-1", None, final(), at(30)) == ("final", batch["_id"], None)
    [new] = await enqueue(repos, batch, planned(A, variables={"again": True}))
    assert new != old
    old_doc, new_doc = await repos.calls.get(old), await repos.calls.get(new)
    assert old_doc["status"] == "completed" and "activeKey" not in old_doc
    assert new_doc["status"] == "queued" and new_doc["variables"] == {"again": True}


async def test_two_extensions_of_one_number_are_two_calls(repos, batch):
    result = await repos.calls.enqueue(batch, [planned(A, extension="12"), planned(A, extension="34"), planned(A)], T0)
    assert result.inserted == 3 and len(set(result.call_ids)) == 3
    docs = [await repos.calls.get(ObjectId(i)) for i in result.call_ids]
    assert [d["extension"] for d in docs] == ["12", "34", None]
    assert len({d["activeKey"] for d in docs}) == 3


async def test_the_same_number_in_two_batches_is_two_calls(repos, batch):
    other = batch_doc()
    [one] = await enqueue(repos, batch, planned(A))
    [two] = await enqueue(repos, other, planned(A))
    assert one != two
    assert [d["_id"] for d in await repos.calls.page(other["_id"], None, None, 10)] == [two]


# ---- copies ------------------------------------------------------------------------------------

async def test_documents_handed_out_or_taken_in_are_copies(repos, batch):
    variables = {"name": "Ann", "tags": ["x"], "nested": {"k": 1}}
    [call_id] = await enqueue(repos, batch, planned(A, variables=variables))
    variables["name"] = "changed"
    variables["tags"].append("y")
    variables["nested"]["k"] = 2
    await claim(repos, call_id)
    await repos.calls.progress(call_id, "tok-1", None, "ringing", at(100), entry("ringing"), None, at(1))
    for doc in [await repos.calls.get(call_id), *(await repos.calls.page(batch["_id"], None, None, 5)),
                *(await repos.calls.expired(at(1000), 5))]:
        doc["variables"]["name"] = "mutated"
        doc["variables"]["tags"].append("z")
        doc["variables"]["nested"]["k"] = 3
        doc["history"].append({"event": "fake"})
        doc["history"][0]["event"] = "fake"
        doc["input"]["phoneNumber"] = "fake"
        doc["timezones"].append("Europe/Paris")
        doc["status"] = "completed"
    doc = await repos.calls.get(call_id)
    assert doc["variables"] == {"name": "Ann", "tags": ["x"], "nested": {"k": 1}}
    assert [h["event"] for h in doc["history"]] == ["ringing"]
    assert doc["input"]["phoneNumber"] == A and doc["timezones"] == ["America/New_York"]
    assert doc["status"] == "ringing"


async def test_a_history_entry_passed_in_is_copied(repos, batch):
    [call_id] = await enqueue(repos, batch, planned(A))
    await claim(repos, call_id)
    given = entry("ringing")
    await repos.calls.progress(call_id, "tok-1", None, "ringing", at(100), given, None, at(1))
    given["event"] = "changed"
    assert (await repos.calls.get(call_id))["history"][-1]["event"] == "ringing"


# ---- the dispatcher's reads ------------------------------------------------------------------------

async def test_due_is_earliest_first_then_first_in(repos, batch):
    ids = await enqueue(repos, batch, planned(A, at(10)), planned(B, at(0)), planned(C, at(5)), planned(D, at(0)),
                        planned(E, at(3600)))
    a, b, c, d, e = ids
    assert [x["_id"] for x in await repos.calls.due(batch["_id"], at(10), 10)] == [b, d, c, a]
    assert [x["_id"] for x in await repos.calls.due(batch["_id"], at(10), 2)] == [b, d]
    assert [x["_id"] for x in await repos.calls.due(batch["_id"], at(4), 10)] == [b, d]
    assert await repos.calls.due(batch["_id"], at(-1), 10) == []
    assert await repos.calls.due(batch_doc()["_id"], at(10), 10) == []
    due = (await repos.calls.due(batch["_id"], at(10), 1))[0]
    assert (due["phoneNumber"], due["nextAttemptAt"]) == (B, at(0))


async def test_due_returns_only_queued_calls(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a)
    assert [x["_id"] for x in await repos.calls.due(batch["_id"], at(1), 10)] == [b]


async def test_next_due_at(repos, batch):
    assert await repos.calls.next_due_at(batch["_id"]) is None
    a, b, _ = await enqueue(repos, batch, planned(A, at(50)), planned(B, at(20)), planned(C, at(90)))
    assert await repos.calls.next_due_at(batch["_id"]) == at(20)
    await claim(repos, b, now=at(20))
    assert await repos.calls.next_due_at(batch["_id"]) == at(50)
    await claim(repos, a, now=at(50))
    assert await repos.calls.next_due_at(batch["_id"]) == at(90)


async def test_due_many_reads_several_batches_at_once(repos, batch):
    other = batch_doc()
    await repos.batches.insert(other)
    a, b, c = await enqueue(repos, batch, planned(A, at(0)), planned(B, at(5)), planned(C, at(90)))
    [d] = await enqueue(repos, other, planned(D, at(0)))
    empty = batch_doc()["_id"]
    got = await repos.calls.due_many({batch["_id"]: 1, other["_id"]: 5, empty: 3}, at(10))
    assert [x["_id"] for x in got[batch["_id"]][0]] == [a] and got[batch["_id"]][1] is None  # as many as asked
    assert [x["_id"] for x in got[other["_id"]][0]] == [d] and got[other["_id"]][1] is None  # fewer: none later
    assert got[empty] == ([], None)
    got = await repos.calls.due_many({batch["_id"]: 5}, at(10))
    assert [x["_id"] for x in got[batch["_id"]][0]] == [a, b] and got[batch["_id"]][1] == at(90)
    await claim(repos, a)
    got = await repos.calls.due_many({batch["_id"]: 5, other["_id"]: 0}, at(1))
    assert got == {batch["_id"]: ([], at(5))}  # a batch asked for nothing is not read


async def test_has_active_and_has_waiting(repos, batch):
    assert not await repos.calls.has_active(batch["_id"]) and not await repos.calls.has_waiting(batch["_id"])
    [call_id] = await enqueue(repos, batch, planned(A))
    assert await repos.calls.has_active(batch["_id"]) and await repos.calls.has_waiting(batch["_id"])
    await claim(repos, call_id)
    assert await repos.calls.has_active(batch["_id"]) and not await repos.calls.has_waiting(batch["_id"])
    await repos.calls.finish(call_id, "tok-1", None, final(), at(30))
    assert not await repos.calls.has_active(batch["_id"]) and not await repos.calls.has_waiting(batch["_id"])


async def test_active_among(repos, batch):
    other, idle = batch_doc(), batch_doc()
    for doc in (other, idle):
        await repos.batches.insert(doc)
    [waiting] = await enqueue(repos, batch, planned(A))
    [flying] = await enqueue(repos, other, planned(B))
    [ended] = await enqueue(repos, idle, planned(C))
    await claim(repos, flying)
    await claim(repos, ended)
    await repos.calls.finish(ended, "tok-1", None, final(), at(30))
    ids = [batch["_id"], other["_id"], idle["_id"], batch_doc()["_id"]]
    assert await repos.calls.active_among(ids) == {batch["_id"], other["_id"]}
    assert await repos.calls.active_among([]) == set()


async def test_page_in_enqueue_order_with_status_filter_and_cursor(repos, batch):
    ids = await enqueue(repos, batch, *(planned(p) for p in (A, B, C, D, E)))
    a, b, c, d, e = ids
    await claim(repos, b)
    await claim(repos, d, token="tok-2")

    async def page(statuses, after, limit):
        return [x["_id"] for x in await repos.calls.page(batch["_id"], statuses, after, limit)]

    assert await page(None, None, 10) == ids
    assert await page(None, None, 2) == [a, b]
    assert await page(None, b, 2) == [c, d]
    assert await page(None, e, 2) == []
    assert await page(["queued"], None, 10) == [a, c, e]
    assert await page(["queued"], a, 1) == [c]
    assert await page(["dialing", "queued"], b, 10) == [c, d, e]
    assert await page(["completed"], None, 10) == []
    assert await page(None, None, 10) == ids  # claims do not change the order


async def test_holders(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a, token="tok-9")
    missing = ObjectId()
    assert await repos.calls.holders([a, b, missing]) == {a: ("dialing", "tok-9"), b: ("queued", None)}


async def test_tallies_follow_a_life_cycle(repos, batch):
    assert await repos.calls.tallies(batch["_id"]) == []
    a, b, c, d = await enqueue(repos, batch, planned(A), planned(B), planned(C), planned(D))
    for call_id in (a, b, c):
        await claim(repos, call_id)
    await repos.calls.finish(a, "tok-1", None, final("completed"), at(30))
    await repos.calls.finish(b, "tok-1", None, final("busy", retry_at=at(300), max_attempts=3), at(30))
    assert set(await repos.calls.tallies(batch["_id"])) == {
        Tally("completed", "completed", 1, 1, 1), Tally("queued", "busy", 1, 1, 1),
        Tally("dialing", None, 1, 1, 1), Tally("queued", None, 1, 0, 0)}
    await claim(repos, b, token="tok-2", now=at(300))
    await repos.calls.finish(b, "tok-2", None, final("no_answer"), at(330))
    await claim(repos, d, token="tok-3")
    await repos.calls.requeue_unplaced(d, "tok-3", at(60), entry("window_closed"))
    assert set(await repos.calls.tallies(batch["_id"])) == {
        Tally("completed", "completed", 1, 1, 1), Tally("no_answer", "no_answer", 1, 1, 2),
        Tally("dialing", None, 1, 1, 1), Tally("queued", None, 1, 0, 0)}


# ---- claims ----------------------------------------------------------------------------------------

async def test_claim_takes_queued_calls_only(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    missing = ObjectId()
    claims = [Claim(a, "tok-1", "dispatcher-a", at(2), at(122)), Claim(missing, "tok-1", "dispatcher-a", at(3), at(123))]
    assert (await repos.calls.claim(claims, [], [], at(1))).won == {a}
    doc = await repos.calls.get(a)
    assert (doc["status"], doc["attempts"], doc["claimToken"], doc["claimedBy"]) == ("dialing", 1, "tok-1", "dispatcher-a")
    assert (doc["dialAt"], doc["leaseUntil"], doc["updatedAt"]) == (at(2), at(122), at(1))
    # A second dispatcher loses: the call is no longer queued.
    again = [Claim(a, "tok-2", "dispatcher-b", at(5), at(125)), Claim(b, "tok-2", "dispatcher-b", at(5), at(125))]
    assert (await repos.calls.claim(again, [], [], at(4))).won == {b}
    doc = await repos.calls.get(a)
    assert (doc["claimToken"], doc["claimedBy"], doc["attempts"]) == ("tok-1", "dispatcher-a", 1)


async def test_claim_reads_its_batches_and_the_lists_after_its_write(repos, batch):
    """What the placer places on: of the batches asked, those runnable now (their stamps); of the numbers asked,
    their do-not-call entries; read after the claim's write (stop and listing before it are seen)."""
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    paused = batch_doc(status="paused")
    later = batch_doc(scheduled_at=at(3600))
    for doc in (paused, later):
        await repos.batches.insert(doc)
    ws = batch["workspaceId"]
    await repos.dnc.add([{"workspaceId": ws, "number": B, "source": "manual", "listedAt": T0}])
    result = await repos.calls.claim([Claim(a, "tok-1", "d", at(1), at(121)), Claim(b, "tok-1", "d", at(1), at(121))],
                                     [], [], at(1), [batch["_id"], paused["_id"], later["_id"]],
                                     {(ws, A), (ws, B), (ObjectId(), A)})
    assert result.won == {a, b}
    assert result.running == {batch["_id"]: (batch["updatedAt"], batch.get("enqueuedAt"))}
    assert set(result.listed) == {(ws, B)} and result.listed[(ws, B)]["source"] == "manual"
    nothing = await repos.calls.claim([], [], [], at(2))  # nothing asked, nothing read
    assert (nothing.won, nothing.running, nothing.listed) == (set(), {}, {})


async def test_claim_applies_deferrals_to_queued_calls(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, b)
    assert (await repos.calls.claim([], [(a, at(7200)), (b, at(7200))], [], at(1))).won == set()
    assert (await repos.calls.get(a))["nextAttemptAt"] == at(7200)
    assert (await repos.calls.get(a))["status"] == "queued"
    assert (await repos.calls.get(b))["nextAttemptAt"] == T0  # in flight: not deferred
    assert await repos.calls.due(batch["_id"], at(3600), 10) == []
    assert await repos.calls.next_due_at(batch["_id"]) == at(7200)


async def test_claim_carries_placed_records(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a)
    won = await repos.calls.claim([Claim(b, "tok-2", "d", at(2), at(122))], [],
                                  [PlacedRecord(a, "tok-1", "CA-a", at(1), at(200))], at(1))
    assert won.won == {b}
    doc = await repos.calls.get(a)
    assert doc["providerCallId"] == "CA-a" and doc["leaseUntil"] == at(200)


async def test_record_placed_only_onto_the_attempt_that_placed_it(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a, lease_until=at(120))
    await claim(repos, b, token="tok-b", lease_until=at(120))
    await repos.calls.record_placed([PlacedRecord(a, "tok-1", "CA-a", at(1), at(300)),
                                     PlacedRecord(b, "tok-other", "CA-b", at(1), at(300))])
    doc = await repos.calls.get(a)
    assert doc["providerCallId"] == "CA-a" and doc["leaseUntil"] == at(300)
    assert doc["history"][-1] == {"at": at(1), "event": "placed", "providerCallId": "CA-a"}
    other = await repos.calls.get(b)
    assert "providerCallId" not in other and other["leaseUntil"] == at(120) and other["history"] == []
    # The lease is only ever raised.
    await repos.calls.record_placed([PlacedRecord(a, "tok-1", "CA-a", at(2), at(50))])
    assert (await repos.calls.get(a))["leaseUntil"] == at(300)


async def test_record_placed_skips_a_call_put_back_in_the_queue(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    assert await repos.calls.requeue_unplaced(a, "tok-1", at(60), entry("dispatcher_stopped"))
    await repos.calls.record_placed([PlacedRecord(a, "tok-1", "CA-a", at(1), at(300))])
    doc = await repos.calls.get(a)
    assert "providerCallId" not in doc and doc["status"] == "queued"


# ---- requeue, uncertain ------------------------------------------------------------------------------

async def test_requeue_unplaced_does_not_count_the_attempt(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    await repos.calls.mark_uncertain(a, "tok-1", at(30), entry("provider_error"))
    assert not await repos.calls.requeue_unplaced(a, "tok-other", at(60), entry("x"))
    assert not await repos.calls.requeue_unplaced(a, None, at(60), entry("x"))
    e = entry("provider_error", 1, kind="rate_limited")
    assert await repos.calls.requeue_unplaced(a, "tok-1", at(60), e, provider_error=True)
    doc = await repos.calls.get(a)
    assert (doc["status"], doc["attempts"], doc["nextAttemptAt"], doc["providerErrors"]) == ("queued", 0, at(60), 1)
    assert not {"leaseUntil", "claimedBy", "dialAt", "uncertain"} & set(doc)
    assert doc["history"][-1] == e
    assert not await repos.calls.requeue_unplaced(a, "tok-1", at(60), entry("x"))  # no longer dialing
    assert [x["_id"] for x in await repos.calls.due(batch["_id"], at(60), 10)] == [a]
    await claim(repos, a, token="tok-2", now=at(60))
    assert await repos.calls.requeue_unplaced(a, "tok-2", at(90), entry("x"), provider_error=True)
    assert (await repos.calls.get(a))["providerErrors"] == 2


async def test_requeue_unplaced_never_after_the_call_was_placed(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    await repos.calls.record_placed([PlacedRecord(a, "tok-1", "CA-a", at(1), at(200))])
    assert not await repos.calls.requeue_unplaced(a, "tok-1", at(60), entry("x"))
    doc = await repos.calls.get(a)
    assert (doc["status"], doc["attempts"]) == ("dialing", 1)


async def test_mark_uncertain(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a, lease_until=at(120))
    assert not await repos.calls.mark_uncertain(a, "tok-other", at(30), entry("provider_error"))
    assert await repos.calls.mark_uncertain(a, "tok-1", at(30), entry("provider_error", kind="unknown"))
    doc = await repos.calls.get(a)
    assert (doc["status"], doc["uncertain"], doc["leaseUntil"]) == ("dialing", True, at(30))
    assert doc["history"][-1]["kind"] == "unknown"
    assert [x["_id"] for x in await repos.calls.expired(at(31), 10)] == [a]


# ---- events ------------------------------------------------------------------------------------------

async def test_progress_moves_forward_only_and_pins_the_attempt(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    assert not await repos.calls.progress(a, "tok-old", None, "ringing", at(100), entry("ringing"), None, at(1))
    assert await repos.calls.progress(a, "tok-1", None, "ringing", at(100), entry("ringing"), None, at(1))
    doc = await repos.calls.get(a)
    assert (doc["status"], doc["leaseUntil"], doc["updatedAt"]) == ("ringing", at(100), at(1))
    assert not await repos.calls.progress(a, "tok-1", None, "ringing", at(150), entry("ringing"), None, at(2))
    assert await repos.calls.progress(a, None, None, "in_progress", at(900), entry("in-progress"), "human", at(3))
    doc = await repos.calls.get(a)
    assert (doc["status"], doc["answeredBy"], doc["leaseUntil"]) == ("in_progress", "human", at(900))
    assert not await repos.calls.progress(a, "tok-1", None, "ringing", at(100), entry("ringing"), None, at(4))
    doc = await repos.calls.get(a)
    assert doc["status"] == "in_progress" and [h["event"] for h in doc["history"]] == ["ringing", "in-progress"]


async def test_progress_on_a_queued_call_changes_nothing(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    assert not await repos.calls.progress(a, None, None, "in_progress", at(100), entry("answered"), None, at(1))
    assert (await repos.calls.get(a))["status"] == "queued"


async def test_progress_records_the_provider_id_or_must_match_it(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    assert await repos.calls.progress(a, "tok-1", "CA-1", "ringing", at(100), entry("ringing"), None, at(1))
    assert (await repos.calls.get(a))["providerCallId"] == "CA-1"
    assert not await repos.calls.progress(a, "tok-1", "CA-2", "in_progress", at(100), entry("x"), None, at(2))
    assert await repos.calls.progress(a, "tok-1", "CA-1", "in_progress", at(100), entry("x"), None, at(2))


async def test_record_provider_id(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a)
    assert not await repos.calls.record_provider_id(b, None, "CA-b", None)  # queued: not in flight
    assert not await repos.calls.record_provider_id(a, "tok-other", "CA-a", None)
    assert await repos.calls.record_provider_id(a, "tok-1", "CA-a", None)
    doc = await repos.calls.get(a)
    assert doc["providerCallId"] == "CA-a" and doc["history"] == []
    assert not await repos.calls.record_provider_id(a, None, "CA-z", entry("queued"))
    assert (await repos.calls.get(a))["providerCallId"] == "CA-a"
    [c] = await enqueue(repos, batch, planned(C))
    await claim(repos, c)
    assert await repos.calls.record_provider_id(c, None, "CA-c", entry("initiated"))
    assert [h["event"] for h in (await repos.calls.get(c))["history"]] == ["initiated"]


async def test_finish_retries_while_attempts_remain_then_final(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    await repos.calls.record_placed([PlacedRecord(a, "tok-1", "CA-1", at(1), at(200))])
    busy = final("busy", retry_at=at(300), max_attempts=2)
    assert await repos.calls.finish(a, "tok-1", "CA-1", busy, at(30)) == ("retry", batch["_id"], None)
    doc = await repos.calls.get(a)
    assert (doc["status"], doc["outcome"], doc["nextAttemptAt"], doc["updatedAt"]) == ("queued", "busy", at(300), at(30))
    assert not {"providerCallId", "leaseUntil", "claimedBy", "dialAt", "finishedAt"} & set(doc)
    assert doc["history"][-1] == {**busy.entry, "result": "retry"}
    assert doc["activeKey"] == active_key(batch["_id"], A, None)
    # Still the callee's active call: enqueueing the number again updates it.
    assert (await repos.calls.enqueue(batch, [planned(A)], at(40))).call_ids == [str(a)]
    assert await repos.calls.due(batch["_id"], at(299), 10) == []
    assert await claim(repos, a, token="tok-2", now=at(300))
    assert (await repos.calls.get(a))["attempts"] == 2
    assert await repos.calls.finish(a, "tok-2", None, busy, at(330)) == ("final", batch["_id"], None)
    doc = await repos.calls.get(a)
    assert (doc["status"], doc["outcome"], doc["finishedAt"], doc["attempts"]) == ("busy", "busy", at(330), 2)
    assert not {"activeKey", "leaseUntil", "claimedBy", "dialAt"} & set(doc)
    assert doc["history"][-1] == {**busy.entry, "result": "busy"}
    assert not await repos.calls.has_active(batch["_id"])
    result = await repos.calls.enqueue(batch, [planned(A)], at(400))
    assert result.inserted == 1 and result.call_ids != [str(a)]


async def test_finish_without_retry_at_is_final(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    done = final("completed", duration=42, provider_call_id="CA-9", max_attempts=5)
    assert await repos.calls.finish(a, None, "CA-9", done, at(60)) == ("final", batch["_id"], None)
    doc = await repos.calls.get(a)
    assert (doc["status"], doc["duration"], doc["providerCallId"], doc["finishedAt"]) == ("completed", 42, "CA-9", at(60))
    assert await repos.calls.finish(a, None, None, done, at(61)) is None  # no longer in flight


async def test_finish_matches_the_attempt_and_provider_call(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    assert await repos.calls.finish(a, None, None, final(), at(1)) is None  # queued: not in flight
    await claim(repos, a)
    await repos.calls.record_provider_id(a, "tok-1", "CA-1", None)
    assert await repos.calls.finish(a, "tok-old", None, final(), at(2)) is None
    assert await repos.calls.finish(a, "tok-1", "CA-other", final(), at(2)) is None
    assert (await repos.calls.get(a))["status"] == "dialing"
    assert await repos.calls.finish(ObjectId(), None, None, final(), at(2)) is None
    assert await repos.calls.finish(a, "tok-1", "CA-1", final("failed"), at(3)) == ("final", batch["_id"], None)
    assert (await repos.calls.get(a))["status"] == "failed"


# ---- the reaper ------------------------------------------------------------------------------------

async def test_expired_leases_earliest_first(repos, batch):
    a, b, c, d = await enqueue(repos, batch, planned(A), planned(B), planned(C), planned(D))
    await claim(repos, a, lease_until=at(30))
    await claim(repos, b, lease_until=at(10))
    await claim(repos, c, lease_until=at(20))
    assert [x["_id"] for x in await repos.calls.expired(at(25), 10)] == [b, c]
    assert [x["_id"] for x in await repos.calls.expired(at(25), 1)] == [b]
    assert [x["_id"] for x in await repos.calls.expired(at(20), 10)] == [b]  # a lease ending now has not passed
    await repos.calls.finish(b, None, None, final(), at(25))
    assert [x["_id"] for x in await repos.calls.expired(at(1000), 10)] == [c, a]  # d is queued: no lease


async def test_take_for_reconciliation_is_a_compare_and_set(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a, lease_until=at(10))
    await claim(repos, b, lease_until=at(10))
    seen_a, seen_b = await repos.calls.expired(at(11), 10)
    taken = await repos.calls.take_for_reconciliation(seen_a, at(131), "reaper-1")
    assert taken["_id"] == a and (taken["leaseUntil"], taken["claimedBy"], taken["status"]) == (at(131), "reaper-1", "dialing")
    assert await repos.calls.take_for_reconciliation(seen_a, at(132), "reaper-2") is None  # lease changed
    assert (await repos.calls.get(a))["claimedBy"] == "reaper-1"
    assert [x["_id"] for x in await repos.calls.expired(at(100), 10)] == [b]  # a's new lease runs to 131
    await repos.calls.progress(b, None, None, "ringing", at(10), entry("ringing"), None, at(11))  # same lease
    assert await repos.calls.take_for_reconciliation(seen_b, at(131), "reaper-2") is None  # status changed
    assert (await repos.calls.get(b))["status"] == "ringing"


async def test_recount_agrees_with_the_kept_tallies_and_correct_adds_a_delta(repos, batch):
    a, b = await enqueue(repos, batch, planned(A), planned(B))
    await claim(repos, a)
    await repos.calls.finish(a, "tok-1", None, final("completed"), at(30))
    kept = set(await repos.calls.tallies(batch["_id"]))
    assert set(await repos.calls.recount(batch["_id"])) == kept == {
        Tally("completed", "completed", 1, 1, 1), Tally("queued", None, 1, 0, 0)}
    await repos.calls.correct(batch["_id"], [Tally("queued", None, 2, 0, 0), Tally("busy", "busy", 1, 1, 2)])
    assert set(await repos.calls.tallies(batch["_id"])) == {
        Tally("completed", "completed", 1, 1, 1), Tally("queued", None, 3, 0, 0), Tally("busy", "busy", 1, 1, 2)}
    await repos.calls.correct(batch["_id"], [Tally("queued", None, -2, 0, 0), Tally("busy", "busy", -1, -1, -2)])
    assert set(await repos.calls.tallies(batch["_id"])) == kept


async def test_a_final_call_keeps_no_claim_fields(repos, batch):
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    assert await repos.calls.mark_uncertain(a, "tok-1", at(40), {"at": at(2), "event": "provider_error"})
    assert await repos.calls.finish(a, "tok-1", None, final("failed"), at(60)) is not None
    call = await repos.calls.get(a)
    assert call["status"] == "failed" and not {"leaseUntil", "claimedBy", "dialAt", "uncertain", "activeKey"} & set(call)


@pytest.mark.parametrize("retried", [True, False])
async def test_a_call_ending_before_its_placement_is_recorded_keeps_the_placement_in_its_history(repos, batch, retried):
    """A busy line answers in seconds, before the dispatcher's record of the placement (it waits for its claim's
    other calls): the end wrote its outcome and, when the call went back to the queue for a retry, the record
    found it queued and wrote nothing, so the attempt's placement and provider id were lost from the history."""
    [a] = await enqueue(repos, batch, planned(A))
    await claim(repos, a)
    def busy(sid: str) -> Finish:
        return Finish(final="busy", outcome="busy", entry={"at": at(5), "event": "busy"}, provider_call_id=sid,
                      retry_at=at(65) if retried else None, max_attempts=3 if retried else 1)

    kind, _, _ = await repos.calls.finish(a, "tok-1", "CA-a", busy("CA-a"), at(5))
    assert kind == ("retry" if retried else "final")
    await repos.calls.record_placed([PlacedRecord(a, "tok-1", "CA-a", at(1), at(300))])  # the record, late
    history = (await repos.calls.get(a))["history"]
    assert [(h["event"], h.get("providerCallId")) for h in history] == [("placed", "CA-a"), ("busy", None)]
    assert history[0]["at"] == at(5)  # written by the end, at its time
    # A record in time is the placement; the end adds its outcome only.
    [b] = await enqueue(repos, batch, planned(B))
    await claim(repos, b, token="tok-b")
    await repos.calls.record_placed([PlacedRecord(b, "tok-b", "CA-b", at(1), at(300))])
    await repos.calls.finish(b, "tok-b", "CA-b", busy("CA-b"), at(5))
    history = (await repos.calls.get(b))["history"]
    assert [(h["event"], h["at"]) for h in history] == [("placed", at(1)), ("busy", at(5))]


async def test_two_dispatchers_claiming_one_callee_for_two_batches_at_once_place_one_call(repos, batch):
    """Invariant 3 across batches, raced: MongoDB read the callees in flight just before its write, so two claims
    of one person for two batches at the same instant both passed (found by reading the code; this test
    interleaves them: both reads, then both writes). One call is placed; the other waits as a busy line does."""
    other = batch_doc(workspaceId=batch["workspaceId"])
    await repos.batches.insert(other)
    [a] = await enqueue(repos, batch, planned(A))
    [b] = await enqueue(repos, other, planned(A))
    line, lease = line_key(batch["workspaceId"], A, None), at(120)
    first, second = await asyncio.gather(
        repos.calls.claim([Claim(a, "tok-a", "dispatcher-a", at(1), lease, line)], [], [], at(1)),
        repos.calls.claim([Claim(b, "tok-b", "dispatcher-b", at(1), lease, line)], [], [], at(1)))
    assert len(first.won) + len(second.won) == 1
    loser = b if first.won else a
    waiting = await repos.calls.get(loser)
    assert waiting["status"] == "queued" and waiting["attempts"] == 0
    assert waiting["nextAttemptAt"] == at(1) + BUSY_WAIT and [h["event"] for h in waiting["history"]] == ["callee_busy"]


async def test_a_callee_in_a_call_of_another_batch_of_the_workspace_is_not_claimed(repos, batch):
    """Invariant 3 across batches: one person in two batches of a workspace was dialled by both at once (found by
    an exploratory run: 295 of 300 numbers shared by three batches were in two or three calls at once)."""
    other = batch_doc(workspaceId=batch["workspaceId"])
    stranger = batch_doc()  # another workspace: its own callees
    for doc in (other, stranger):
        await repos.batches.insert(doc)
    [a] = await enqueue(repos, batch, planned(A))
    [b, b_ext] = await enqueue(repos, other, planned(A), planned(A, extension="21", index=1))
    [c] = await enqueue(repos, stranger, planned(A))
    assert await claim(repos, a)
    lease = at(120)
    result = await repos.calls.claim([Claim(b, "tok-b", "d", at(1), lease, line_key(other["workspaceId"], A, None)),
                                      Claim(b_ext, "tok-b", "d", at(1), lease, line_key(other["workspaceId"], A, "21")),
                                      Claim(c, "tok-b", "d", at(1), lease, line_key(stranger["workspaceId"], A, None))],
                                     [], [], at(1))
    assert result.won == {b_ext, c}  # another person behind the line, and another workspace's callee
    busy = await repos.calls.get(b)
    assert busy["status"] == "queued" and busy["attempts"] == 0 and busy["nextAttemptAt"] == at(1) + BUSY_WAIT
    assert [h["event"] for h in busy["history"]] == ["callee_busy"]
    # Two claims of one callee in one write: the first only.
    d = (await enqueue(repos, other, planned(B)))[0]
    e = (await enqueue(repos, batch, planned(B)))[0]
    line = line_key(batch["workspaceId"], B, None)
    result = await repos.calls.claim([Claim(d, "tok-c", "d", at(2), lease, line),
                                      Claim(e, "tok-c", "d", at(2), lease, line)], [], [], at(2))
    assert result.won == {d}
    # Once the first call has ended, the callee can be called again.
    await repos.calls.finish(a, "tok-1", None, final(), at(3))
    result = await repos.calls.claim([Claim(b, "tok-d", "d", at(40), lease, line_key(other["workspaceId"], A, None))],
                                     [], [], at(40))
    assert result.won == {b}
