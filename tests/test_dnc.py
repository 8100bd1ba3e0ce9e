"""The do-not-call list through the HTTP API: /api/dnc itself, the check at enqueue on every face
(addCallsToBatch, the CSV upload, enrollment, the ElevenLabs face), the check just before dialling (the
dispatcher on a virtual clock), and the agent's opt-out on the verdict route."""

from __future__ import annotations

import asyncio

from urllib.parse import quote

import pytest
from elevenlabs import AsyncElevenLabs

from tests.conftest import make_api
from tests.dispatch_harness import Harness, after_due_reads, nums
from tests.enrollment_client import contact, enroll
from tests.faults import inject
from tests.test_csv_upload import csv_of, upload

LISTED, OTHER, THIRD = "+12125550001", "+12125550002", "+12125550003"
TODAY = "2026-11-23"  # the tests' clock (tests/conftest.py T0)


async def listed(api, numbers: list, **more) -> dict:
    code, doc = await api.post("/api/dnc", {"numbers": numbers, **more})
    assert code == 200, doc
    return doc["data"]


async def entry(api, number: str) -> tuple[int, dict]:
    return await api.get(f"/api/dnc/{quote(number)}")


async def delete(api, number: str) -> tuple[int, dict]:
    resp = await api.client.delete(f"/api/dnc/{quote(number)}", headers=api.headers())
    return resp.status, await resp.json()


def rule_of(call: dict) -> str | None:
    return next((h["rule"] for h in reversed(call["history"]) if h.get("rule")), None)


# ---- the list ------------------------------------------------------------------------------------

async def test_numbers_are_listed_normalised_and_every_impossible_one_is_named(api):
    data = await listed(api, ["(212) 555-0001", "+1 212 555 0002 ext 9", "12", "", "+12125550001", "nope"],
                        reason="asked by letter", source="manual")
    assert (data["received"], data["added"], data["alreadyListed"], data["repeated"], data["invalid"]) == (6, 2, 0, 1, 3)
    assert data["received"] == data["added"] + data["alreadyListed"] + data["repeated"] + data["invalid"]
    assert [(e["index"], e["phoneNumber"]) for e in data["invalidEntries"]] == [(2, "12"), (3, ""), (5, "nope")]
    assert all(e["reason"] for e in data["invalidEntries"])
    again = await listed(api, [LISTED, THIRD], source="import")
    assert (again["added"], again["alreadyListed"]) == (1, 1)
    code, doc = await entry(api, "212-555-0001")
    assert code == 200
    assert doc["data"] == {"number": LISTED, "source": "manual", "reason": "asked by letter", "callId": None,
                           "listedAt": "2026-11-23T15:00:00Z", "rule": f"dnc: manual {TODAY}"}  # the first listing stands
    assert (await entry(api, OTHER))[1]["data"]["number"] == OTHER  # the line, without its extension


async def test_pages_go_by_number_and_a_prefix_searches(api):
    await listed(api, [f"+1212555{i:04d}" for i in range(5)] + ["+13105550000"])
    code, doc = await api.get("/api/dnc?limit=4")
    assert code == 200 and doc["data"]["count"] == 4 and doc["data"]["total"] == 6
    rest = (await api.get(f"/api/dnc?limit=4&cursor={quote(doc['data']['nextCursor'])}"))[1]["data"]
    assert [e["number"] for e in doc["data"]["entries"] + rest["entries"]] == \
        [f"+1212555{i:04d}" for i in range(5)] + ["+13105550000"]
    assert rest["nextCursor"] is None
    found = (await api.get("/api/dnc?prefix=%2B1310"))[1]["data"]
    assert [e["number"] for e in found["entries"]] == ["+13105550000"]
    # A `+` pasted into the URL unencoded arrives as a space: still the number it names, not a 400.
    assert (await api.get("/api/dnc?prefix=+1310"))[1]["data"]["entries"] == found["entries"]
    code, plain = await api.get(f"/api/dnc?limit=4&cursor={doc['data']['nextCursor']}")
    assert code == 200 and plain["data"]["entries"] == rest["entries"]
    for query in ("limit=0", "limit=x", "prefix=abc", "cursor=garbage", "cursor=12125550000"):
        code, doc = await api.get(f"/api/dnc?{query}")
        assert code == 400 and doc["errorMessage"], query


async def test_removing_a_number_and_404s(api):
    await listed(api, [LISTED])
    code, doc = await delete(api, LISTED)
    assert code == 200 and doc["data"] == {"number": LISTED}
    assert (await delete(api, LISTED))[0] == 404
    code, doc = await entry(api, LISTED)
    assert code == 404 and "not on the do-not-call list" in doc["errorMessage"]
    assert (await entry(api, "not a number"))[0] == 400


@pytest.mark.parametrize("body, why", [({}, "numbers"), ({"numbers": []}, "numbers"),
                                       ({"numbers": [LISTED], "source": "Bad Source"}, "source"),
                                       ({"numbers": [LISTED], "extra": 1}, "extra"), ([LISTED], "object"),
                                       ({"numbers": [LISTED, 5]}, "string")])
async def test_bad_requests_are_400_with_a_reason(api, body, why):
    code, doc = await api.post("/api/dnc", body)
    assert code == 400 and why in doc["errorMessage"]


async def test_another_workspaces_list_is_invisible(api, client, app):
    other = await make_api(client, app)
    await listed(api, [LISTED])
    assert (await entry(other, LISTED))[0] == 404
    assert (await delete(other, LISTED))[0] == 404
    assert (await other.get("/api/dnc"))[1]["data"]["total"] == 0
    batch = await other.create_batch()
    code, doc = await other.add_calls(batch, [{"phoneNumber": LISTED}])
    assert code == 200 and doc["data"]["added"] == 1 and doc["data"]["suppressed"] == []


async def test_a_keyed_listing_is_answered_once(api):
    headers = {"Idempotency-Key": "dnc-1"}
    first = await api.post("/api/dnc", {"numbers": [LISTED]}, headers=headers)
    again = await api.post("/api/dnc", {"numbers": [LISTED]}, headers=headers)
    assert first == again and first[1]["data"]["added"] == 1


# ---- at enqueue ----------------------------------------------------------------------------------

async def test_add_calls_leaves_listed_numbers_out_and_says_why(api):
    await listed(api, [LISTED, THIRD], source="manual")
    batch = await api.create_batch()
    records = [{"phoneNumber": "212-555-0001"}, {"phoneNumber": OTHER}, {"phoneNumber": LISTED, "v": 2},
               {"phoneNumber": THIRD}]
    code, doc = await api.add_calls(batch, records)
    assert code == 200 and doc["status"] is True
    d = doc["data"]
    assert d["suppressed"] == [{"index": 2, "phoneNumber": LISTED, "reason": f"dnc: manual {TODAY}"},
                               {"index": 3, "phoneNumber": THIRD, "reason": f"dnc: manual {TODAY}"}]
    assert d["added"] == len(d["callIds"]) == d["inserted"] + d["updated"] == 1
    assert len(records) == d["added"] + len(d["suppressed"]) + d["duplicatesCollapsed"] + len(d["inFlight"])
    assert "2 numbers on the do-not-call list were not enqueued" in doc["message"]
    assert [c["phoneNumber"] for c in await api.all_calls(batch)] == [OTHER]


async def test_a_chunk_whose_look_up_fails_is_not_written_unchecked(api):
    await listed(api, ["+12125551500"])
    batch = await api.create_batch()
    records = [{"phoneNumber": f"+1212555{i:04d}"} for i in range(2500)]
    inject(api.store.dnc, "listed", {2})  # the second chunk's look-up: the database dropped
    code, doc = await api.add_calls(batch, records)
    assert code == 207 and doc["data"]["failedChunks"] == [{"chunkNum": 2, "error": "database error: AutoReconnect"}]
    assert doc["data"]["added"] == 1500 and doc["data"]["suppressed"] == []
    code, doc = await api.add_calls(batch, records[1000:2000])  # sent again: checked this time
    assert code == 200 and doc["data"]["added"] == 999
    assert [s["phoneNumber"] for s in doc["data"]["suppressed"]] == ["+12125551500"]
    assert len(await api.all_calls(batch)) == 2499


async def test_a_csv_upload_names_the_listed_rows_by_line(api):
    await listed(api, [LISTED])
    batch = await api.create_batch()
    code, doc, _ = await upload(api, batch, csv_of([f"{OTHER},a,1", f"{LISTED},b,2"]))
    assert code == 200, doc
    d = doc["data"]
    assert (d["added"], d["suppressedCount"]) == (1, 1)
    assert d["suppressed"] == [{"line": 3, "phoneNumber": LISTED, "reason": f"dnc: api {TODAY}"}]


async def test_enrollment_rejects_listed_contacts_and_chains_without_them(api):
    await listed(api, [LISTED])
    body = {"contacts": [contact(LISTED, account="A"), contact(OTHER, account="A"), contact(THIRD, account="B")],
            "groupByField": "account"}
    code, answer, _, _ = await enroll(api, body)
    assert code == 202
    assert (answer["total"], answer["accepted"]) == (3, 2)
    assert answer["rejected"] == [{"index": 0, "phoneNumber": LISTED, "error": f"Not scheduled: dnc: api {TODAY}."}]
    calls = await api.all_calls(answer["batchId"])
    assert {c["phoneNumber"]: c["status"] for c in calls} == {OTHER: "queued", THIRD: "queued"}  # A's next is first
    code, answer, _, _ = await enroll(api, {"contacts": [contact(LISTED)]})
    assert code == 400 and answer["rejected"][0]["error"].startswith("Not scheduled: dnc:")


async def test_the_elevenlabs_face_shows_listed_recipients_cancelled_with_the_reason(api, clock, engine_settings):
    await listed(api, [LISTED], source="manual")
    client = AsyncElevenLabs(api_key=api.key, base_url=str(api.client.make_url("")).rstrip("/"))
    batch = await client.conversational_ai.batch_calls.create(
        call_name="Survey", agent_id=str(api.agent["_id"]),
        recipients=[{"id": "r-0", "phone_number": LISTED}, {"id": "r-1", "phone_number": OTHER}])
    got = await client.conversational_ai.batch_calls.get(batch.id)
    status = {r.id: r.status for r in got.recipients}
    assert status == {"r-0": "cancelled", "r-1": "pending"}
    resp = await api.client.get(f"/v1/convai/batch-calling/{batch.id}", headers={"xi-api-key": api.key})
    raw = {r["id"]: r for r in (await resp.json())["recipients"]}
    assert raw["r-0"]["reason"] == f"dnc: manual {TODAY}" and "reason" not in raw["r-1"]
    h = Harness(api, clock, engine_settings)
    await h.run_until(lambda: _done(api, batch.id))
    assert [r.to for r in h.sim.placed] == [OTHER]
    _, doc = await api.get(f"/api/call/batches/{batch.id}")
    assert doc["data"]["counters"]["byOutcome"]["suppressed"] == 1


# ---- just before dialling ------------------------------------------------------------------------

async def test_a_number_listed_after_it_was_enqueued_is_never_dialled(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(concurrencyLimit=2)
    await api.add_calls(batch, nums(6))
    await listed(api, ["+12125550004"], source="manual")
    await h.run_until(lambda: _done(api, batch))
    assert sorted(r.to for r in h.sim.placed) == [f"+1212555{i:04d}" for i in (0, 1, 2, 3, 5)]
    [stopped] = await api.all_calls(batch, "skipped")
    assert (stopped["phoneNumber"], stopped["outcome"], stopped["attempts"]) == ("+12125550004", "suppressed", 0)
    assert stopped["history"][-1]["event"] == "suppressed" and rule_of(stopped) == f"dnc: manual {TODAY}"
    counters = (await api.get(f"/api/call/batches/{batch}"))[1]["data"]["counters"]
    assert counters["byOutcome"]["suppressed"] == 1 and counters["finished"] == 6 and counters["dispatched"] == 5


async def test_a_listing_between_the_dispatchers_look_and_its_claim_stops_the_call(api, clock, engine_settings):
    """The dispatcher read the due calls (the number among them), then the listing was written, then the claim:
    the claim's write reads the lists after it, so the call ends suppressed, never placed."""
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(concurrencyLimit=1)
    await api.add_calls(batch, nums(2))
    answers = []

    async def listing_lands_after_the_look(found):
        if not answers and "+12125550000" in [c["phoneNumber"] for due, _ in found.values() for c in due]:
            answers.append(await listed(api, ["+12125550000"]))  # answered at once: no claim of it yet

    after_due_reads(h.engines[0].dispatcher.calls, listing_lands_after_the_look)
    await h.run_until(lambda: _done(api, batch))
    assert answers[0]["added"] == 1
    assert [r.to for r in h.sim.placed] == ["+12125550001"]  # its slot was freed for the next call
    [stopped] = await api.all_calls(batch, "skipped")
    assert stopped["outcome"] == "suppressed" and rule_of(stopped) == f"dnc: api {TODAY}"


async def test_a_listing_written_after_the_claims_look_is_answered_only_once_that_call_is_placed(
        api, clock, engine_settings):
    """The claim's write read the list (nothing listed) and the placer is about to ask the provider when the
    listing is written: that call is placed, so the listing must not be answered before it is (invariant 6: no
    call placed once a listing was acknowledged). The listing answers once no claim of its numbers is left
    unplaced."""
    h = Harness(api, clock, engine_settings)
    batch = await api.create_batch(concurrencyLimit=1)
    await api.add_calls(batch, nums(1))
    calls = h.engines[0].dispatcher.calls
    claim, place, order, answers = calls.claim, h.sim.place_call, [], []

    async def listing_lands_after_the_claim(*args, **kwargs):
        result = await claim(*args, **kwargs)
        if not answers and result.won:
            answers.append(asyncio.create_task(listed(api, ["+12125550000"])))
            answers[0].add_done_callback(lambda _: order.append("answered"))
            while (await entry(api, "+12125550000"))[0] != 200:
                await asyncio.sleep(0)
            for _ in range(20):
                await asyncio.sleep(0)
        return result

    async def placing(request):
        order.append("placed")
        return await place(request)

    calls.claim, h.sim.place_call = listing_lands_after_the_claim, placing
    await h.run_until(lambda: _done(api, batch))
    await answers[0]
    assert order == ["placed", "answered"]


# ---- opt-outs ------------------------------------------------------------------------------------

async def test_an_opt_out_lists_the_number_and_withdraws_its_waiting_calls(api, client, app, clock, engine_settings):
    h = Harness(api, clock, engine_settings, mean_duration=500)
    first = await api.create_batch(concurrencyLimit=1)
    later = await api.create_batch(concurrencyLimit=1, scheduledAt="2026-12-01T15:00:00Z")
    await api.add_calls(first, [{"phoneNumber": LISTED}, {"phoneNumber": OTHER}])
    await api.add_calls(later, [{"phoneNumber": LISTED}, {"phoneNumber": "212 555 0001 ext 7"}])
    stranger = await make_api(client, app)
    theirs = await stranger.create_batch(scheduledAt="2026-12-01T15:00:00Z")
    await stranger.add_calls(theirs, [{"phoneNumber": LISTED}])
    [talking] = await talking_in(h, api, first)
    assert talking["phoneNumber"] == LISTED
    code, doc = await api.post(f"/api/call/calls/{talking['callId']}/verdict", {"optOut": True})
    assert code == 200 and doc["data"]["verdict"]["optOut"] is True and "successful" not in doc["data"]["verdict"]
    code, got = await entry(api, LISTED)
    assert got["data"]["source"] == "opt-out" and got["data"]["callId"] == talking["callId"]
    withdrawn = await api.all_calls(later)
    assert {(c["status"], c["outcome"], rule_of(c)) for c in withdrawn} == {("skipped", "suppressed",
                                                                              f"dnc: opt-out {TODAY}")}
    assert [c["status"] for c in await stranger.all_calls(theirs)] == ["queued"]  # another workspace's
    assert (await api.post(f"/api/call/calls/{talking['callId']}/verdict", {}))[0] == 400
    waiting = (await api.all_calls(first, "queued"))[0]
    code, doc = await api.post(f"/api/call/calls/{waiting['callId']}/verdict", {"optOut": True})
    assert code == 409 and (await entry(api, OTHER))[0] == 404  # not placed: nobody opted out


async def test_an_opt_out_skips_the_numbers_turns_in_a_chain(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"answered": 1.0}, mean_duration=500)
    code, answer, _, _ = await enroll(api, {"contacts": [contact(LISTED), contact(LISTED), contact(OTHER)],
                                            "allowDuplicates": True})
    batch = answer["batchId"]
    [talking] = await talking_in(h, api, batch)
    code, _ = await api.post(f"/api/call/calls/{talking['callId']}/verdict", {"optOut": True, "successful": False,
                                                                             "reason": "asked to stop"})
    assert code == 200
    _, got = await entry(api, LISTED)  # the verdict's reason is the listing's (not dropped)
    assert (got["data"]["source"], got["data"]["reason"]) == ("opt-out", "asked to stop")
    await h.run_until(lambda: _done(api, batch))
    calls = await api.all_calls(batch)
    turn = next(c for c in calls if c["phoneNumber"] == LISTED and c["callId"] != talking["callId"])
    assert (turn["status"], turn["outcome"]) == ("skipped", "suppressed")
    assert sorted(r.to for r in h.sim.placed) == sorted([LISTED, OTHER])  # the listed number once, before it asked


async def talking_in(h: Harness, api, batch_id: str) -> list[dict]:
    for _ in range(30):
        if talking := await api.all_calls(batch_id, "in_progress"):
            return talking
        await h.step()
    raise AssertionError("no call was answered")


async def _done(api, batch_id: str) -> bool:
    _, doc = await api.get(f"/api/call/batches/{batch_id}")
    return doc["data"]["status"] == "completed"


async def test_a_listing_written_between_the_rounds_of_one_claim_is_answered_after_the_call_or_stops_it(
        api, clock, engine_settings):
    """A claim of five calls placed over five rounds (2 calls/s) reads the lists once, after it was written: a
    number listed after that read is either not dialled, or dialled before the listing answers (invariant 6)."""
    h = Harness(api, clock, engine_settings.replace(calls_per_second=2.0), mean_duration=600)
    batch = await api.create_batch(concurrencyLimit=5)
    await api.add_calls(batch, nums(5))
    last = "+12125550004"
    order: list[str] = []
    place = h.sim.place_call

    async def placing(request):
        order.append(f"placed {request.to}")
        return await place(request)

    h.sim.place_call = placing
    await h.step(0.5)  # claimed, the lists read, the first call placed
    assert len(h.sim.placed) == 1
    answer = asyncio.create_task(listed(api, [last]))
    answer.add_done_callback(lambda _: order.append("answered"))
    while (await entry(api, last))[0] != 200:  # written; its answer waits for the claim of that number
        await asyncio.sleep(0)
    for _ in range(8):
        await h.step(0.5)
        for _ in range(20):
            await asyncio.sleep(0)
    await answer
    if f"placed {last}" in order:  # read clean with its claim: placed, and the listing answered after it
        assert order.index("answered") > order.index(f"placed {last}")
    assert len(h.sim.placed) >= 4
