"""addCallsToBatch through the HTTP API: the seed's contract and our precisions of it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from dialer.api.appkeys import IDEMPOTENCY, INGESTION
from tests import states
from tests.faults import inject

SEED_RECORDS = [
    {"phoneNumber": "12125551001", "name": "Sarah Johnson", "account_id": "ACC-1001",
     "custom_field_1": "value1", "priority": "high"},
    {"phoneNumber": "13105552002", "name": "Michael Chen", "account_id": "ACC-1002", "category": "support"},
]


def numbers(n: int, area: str = "212") -> list[str]:
    return [f"+1{area}555{i:04d}" for i in range(n)]


async def test_seed_example_is_accepted_and_stored(api):
    batch = await api.create_batch()
    code, doc = await api.add_calls(batch, SEED_RECORDS)
    assert code == 200
    assert doc["status"] is True and doc["code"] == 200 and doc["errorMessage"] == ""
    assert doc["message"] == "Calls enqueued successfully"
    assert doc["data"]["added"] == 2 and len(doc["data"]["callIds"]) == 2
    calls = await api.all_calls(batch)
    by_number = {c["phoneNumber"]: c for c in calls}
    assert set(by_number) == {"+12125551001", "+13105552002"}
    sarah = by_number["+12125551001"]
    assert sarah["variables"] == {k: v for k, v in SEED_RECORDS[0].items() if k != "phoneNumber"}
    assert sarah["input"] == {"phoneNumber": "12125551001"}
    assert sarah["status"] == "queued" and sarah["callId"] in doc["data"]["callIds"]
    assert by_number["+13105552002"]["timezones"] == ["America/Los_Angeles"]
    code, doc = await api.get(f"/api/call/batches/{batch}")
    assert doc["data"]["status"] == "running"
    assert doc["data"]["counters"]["scheduled"] == 2


async def test_bearer_key_works_like_x_api_key(api):
    batch = await api.create_batch()
    resp = await api.client.post("/api/call/addCallsToBatch", json={"batchId": batch, "call_data": SEED_RECORDS},
                                 headers={"Authorization": f"Bearer {api.key}"})
    assert resp.status == 200


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "dk_nope"}, {"Authorization": "Bearer dk_nope"},
                                     {"Authorization": "Basic abc"}])
async def test_missing_or_invalid_key_is_403(api, headers):
    batch = await api.create_batch()
    resp = await api.client.post("/api/call/addCallsToBatch", json={"batchId": batch, "call_data": SEED_RECORDS},
                                 headers=headers)
    doc = await resp.json()
    assert resp.status == 403 and doc["code"] == 403 and doc["status"] is False
    assert await api.all_calls(batch) == []


async def test_other_workspace_batch_is_403_and_unknown_batch_404(api, client, app):
    from tests.conftest import make_api

    other = await make_api(client, app)
    batch = await api.create_batch()
    code, doc = await other.add_calls(batch, SEED_RECORDS)
    assert code == 403 and "does not own" in doc["errorMessage"]
    code, _ = await other.get(f"/api/call/batches/{batch}")
    assert code == 403
    for unknown in ["64e5f12345abcdef98765432", "not-an-id"]:
        code, doc = await api.add_calls(unknown, SEED_RECORDS)
        assert code == 404 and doc["errorMessage"] == "batch not found"
    assert await api.all_calls(batch) == []


async def test_batch_whose_agent_is_gone_is_404(api):
    batch = await api.create_batch()
    assert await api.store.tenancy.delete_agent(api.agent["_id"])
    code, doc = await api.add_calls(batch, SEED_RECORDS)
    assert code == 404 and "no agent" in doc["errorMessage"]


@pytest.mark.parametrize("body, reason", [
    ({"call_data": SEED_RECORDS}, "batchId is required"),
    ({"batchId": 5, "call_data": SEED_RECORDS}, "batchId must be a string"),
    ({"batchId": "B"}, "call_data is required"),
    ({"batchId": "B", "call_data": []}, "call_data is empty"),
    ({"batchId": "B", "call_data": {"phoneNumber": "12125551001"}}, "call_data must be an array"),
    ([1, 2], "body must be a JSON object"),
])
async def test_request_shape_errors_are_400(api, body, reason):
    batch = await api.create_batch()
    if isinstance(body, dict) and body.get("batchId") == "B":
        body["batchId"] = batch
    code, doc = await api.post("/api/call/addCallsToBatch", body)
    assert code == 400 and doc["code"] == 400 and doc["status"] is False
    assert reason in doc["errorMessage"]


async def test_bad_records_are_named_and_nothing_is_written(client, app):
    from tests.conftest import make_api

    api = await make_api(client, app, {"name": "a", "requiredVariables": ["account_id"],
                                       "callingNumbers": ["+14155550100"], "timezones": []})
    batch = await api.create_batch(callingWindow={"start": "09:00", "end": "17:00"})
    records = [
        {"phoneNumber": "12125551001", "account_id": "A1"},  # fine
        "not an object",
        {"account_id": "A2"},
        {"phoneNumber": "12", "account_id": "A3"},
        {"phoneNumber": "12125551004"},
        {"phoneNumber": "12125551005", "account_id": "A5", "timezone": "Mars/Olympus"},
        {"phoneNumber": 12125551006, "account_id": "A6"},
        {"phoneNumber": "12125551007", "account_id": ""},
        {"phoneNumber": "+18005550199", "account_id": "A8"},  # toll-free: every NANP zone, no default
    ]
    code, doc = await api.add_calls(batch, records)
    assert code == 400
    errors = {e["index"]: e for e in doc["data"]["errors"]}
    assert set(errors) == {1, 2, 3, 4, 5, 6, 7, 8}
    assert doc["data"]["invalidRecords"] == 8
    assert "object" in errors[1]["reason"]
    assert "phoneNumber is required" in errors[2]["reason"]
    assert "impossible" in errors[3]["reason"] and errors[3]["phoneNumber"] == "12"
    assert "account_id" in errors[4]["reason"] and errors[7]["reason"] == errors[4]["reason"]
    assert "Mars/Olympus" in errors[5]["reason"]
    assert "string" in errors[6]["reason"]
    assert "never overlap" in errors[8]["reason"]
    assert await api.all_calls(batch) == []
    _, doc = await api.get(f"/api/call/batches/{batch}")
    assert doc["data"]["status"] == "pending"


async def test_error_list_is_capped_with_a_count(api):
    batch = await api.create_batch()
    code, doc = await api.add_calls(batch, [{"phoneNumber": "x"}] * 500)
    assert code == 400
    assert doc["data"]["invalidRecords"] == 500
    assert len(doc["data"]["errors"]) == 50 and doc["data"]["errorsTruncated"] is True


async def test_malformed_json_is_400_in_the_envelope(api):
    batch = await api.create_batch()
    code, doc = await api.post("/api/call/addCallsToBatch", raw=b'{"batchId": "' + batch.encode() + b'", "call_data": [')
    assert code == 400 and doc["code"] == 400 and "malformed JSON" in doc["errorMessage"]


async def test_unknown_route_and_wrong_method_use_the_envelope(api):
    code, doc = await api.get("/api/call/nope")
    assert code == 404 and doc["code"] == 404 and doc["status"] is False
    code, doc = await api.get("/api/call/addCallsToBatch")
    assert code == 405 and doc["code"] == 405


async def test_formats_of_one_number_collapse_into_one_call(api):
    batch = await api.create_batch()
    records = [{"phoneNumber": "+1 (555) 123-4567", "v": 1}, {"phoneNumber": "15551234567", "v": 2},
               {"phoneNumber": "+15551234567", "v": 3}]
    code, doc = await api.add_calls(batch, records)
    assert code == 200 and doc["data"]["added"] == 1 and doc["data"]["duplicatesCollapsed"] == 2
    [call] = await api.all_calls(batch)
    assert call["phoneNumber"] == "+15551234567"
    assert call["variables"] == {"v": 3}  # the last record wins, as for a stored pending call
    # +1 555 is possible but not valid: its zone comes from the agent's default.
    assert call["timezones"] == ["America/New_York"] and call["zoneSource"] == "agent"


async def test_resend_updates_pending_calls_and_replaces_variables(api):
    batch = await api.create_batch()
    _, first = await api.add_calls(batch, [{"phoneNumber": "12125551001", "a": 1, "b": 2}])
    code, second = await api.add_calls(batch, [{"phoneNumber": "+1 212 555 1001", "a": 9}])
    assert code == 200
    assert second["data"]["callIds"] == first["data"]["callIds"]
    assert second["data"]["updated"] == 1 and second["data"]["inserted"] == 0
    [call] = await api.all_calls(batch)
    assert call["variables"] == {"a": 9}


async def test_completed_number_gets_a_new_call_and_keeps_history(api, clock):
    batch = await api.create_batch()
    _, first = await api.add_calls(batch, [{"phoneNumber": "12125551001"}])
    old_id = first["data"]["callIds"][0]
    await states.complete(api.store, old_id, clock.now())
    code, second = await api.add_calls(batch, [{"phoneNumber": "12125551001"}])
    assert code == 200 and second["data"]["inserted"] == 1
    assert second["data"]["callIds"][0] != old_id
    calls = await api.all_calls(batch)
    assert sorted(c["status"] for c in calls) == ["completed", "queued"]


async def test_number_in_flight_is_reported_not_doubled(api, clock):
    batch = await api.create_batch()
    _, first = await api.add_calls(batch, [{"phoneNumber": "12125551001"}, {"phoneNumber": "12125551002"}])
    busy_id = first["data"]["callIds"][0]
    await states.ring(api.store, busy_id, clock.now())
    code, doc = await api.add_calls(batch, [{"phoneNumber": "12125551001", "x": 1}, {"phoneNumber": "12125551002", "x": 2}])
    assert code == 200
    assert doc["data"]["added"] == 1 and len(doc["data"]["callIds"]) == 1
    assert doc["data"]["inFlight"] == [{"phoneNumber": "+12125551001", "callId": busy_id, "status": "ringing"}]
    assert "already in a call" in doc["message"]
    calls = await api.all_calls(batch)
    assert len(calls) == 2
    ringing = next(c for c in calls if c["callId"] == busy_id)
    assert ringing["variables"] == {}  # untouched while in flight


async def test_2500_records_in_three_chunks(api):
    batch = await api.create_batch()
    nums = numbers(2500)
    code, doc = await api.add_calls(batch, [{"phoneNumber": n, "i": i} for i, n in enumerate(nums)])
    assert code == 200 and doc["data"]["added"] == 2500 and len(set(doc["data"]["callIds"])) == 2500
    calls = await api.all_calls(batch)
    assert sorted(c["phoneNumber"] for c in calls) == sorted(nums)


async def test_failed_chunk_gives_207_and_exact_counts_then_resend_completes(api):
    batch = await api.create_batch()
    nums = numbers(2500)
    records = [{"phoneNumber": n} for n in nums]
    inject(api.store.calls, "enqueue", {2})  # the second chunk's write fails
    code, doc = await api.add_calls(batch, records)
    assert code == 207 and doc["status"] is False and doc["code"] == 207
    assert doc["errorMessage"] == "Partial content, check failedChunks for details"
    assert doc["data"]["failedChunks"] == [{"chunkNum": 2, "error": "database error: AutoReconnect"}]
    assert "10.0.0.7" not in str(doc)  # no internals
    assert doc["data"]["added"] == 1500 == len(doc["data"]["callIds"])
    stored = await api.all_calls(batch)
    assert {c["callId"] for c in stored} == set(doc["data"]["callIds"])
    # Resend the failed chunk's records (1,001-2,000): the batch is complete, with no duplicates.
    code, doc = await api.add_calls(batch, records[1000:2000])
    assert code == 200 and doc["data"]["inserted"] == 1000
    stored = await api.all_calls(batch)
    assert sorted(c["phoneNumber"] for c in stored) == sorted(nums)


async def test_every_chunk_failing_is_503_and_nothing_claimed(api):
    batch = await api.create_batch()
    inject(api.store.calls, "enqueue", {1, 2})
    code, doc = await api.add_calls(batch, [{"phoneNumber": n} for n in numbers(1500)])
    assert code == 503 and doc["data"]["added"] == 0 and doc["data"]["callIds"] == []
    assert [c["chunkNum"] for c in doc["data"]["failedChunks"]] == [1, 2]
    _, doc = await api.get(f"/api/call/batches/{batch}")
    assert doc["data"]["status"] == "pending"


async def test_read_failure_fails_only_its_chunk(api):
    batch = await api.create_batch()
    inject(api.store.calls, "enqueue", {1})  # its read, say: the chunk is not written at all
    code, doc = await api.add_calls(batch, [{"phoneNumber": n} for n in numbers(1500)])
    assert code == 207 and doc["data"]["added"] == 500
    assert [c["chunkNum"] for c in doc["data"]["failedChunks"]] == [1]


async def test_time_zone_precedence(client, app):
    from tests.conftest import make_api

    api = await make_api(client, app, {"name": "a", "callingNumbers": ["+14155550101"], "timezones": ["Europe/Paris"]})
    no_default = await api.create_batch()
    with_default = await api.create_batch(timezone="America/Chicago")
    records = [
        {"phoneNumber": "12125551001", "timezone": "Asia/Tokyo"},  # the record's own zone wins
        {"phoneNumber": "12125551002"},  # New York, from the number
        {"phoneNumber": "18005551003"},  # toll-free: several zones -> batch, else agent default
    ]
    for batch, fallback, source in [(with_default, "America/Chicago", "batch"), (no_default, "Europe/Paris", "agent")]:
        code, _ = await api.add_calls(batch, records)
        assert code == 200
        zones = {c["phoneNumber"]: (c["timezones"], c["zoneSource"]) for c in await api.all_calls(batch)}
        assert zones["+12125551001"] == (["Asia/Tokyo"], "record")
        assert zones["+12125551002"] == (["America/New_York"], "number")
        assert zones["+18005551003"] == ([fallback], source)


async def test_multi_zone_number_without_default_keeps_every_candidate_when_they_overlap(client, app):
    from tests.conftest import make_api

    api = await make_api(client, app, {"name": "a", "callingNumbers": ["+14155550102"], "timezones": []})
    batch = await api.create_batch()  # 08:00-21:00 overlaps across every NANP zone (about 22:00-00:30 UTC)
    code, doc = await api.add_calls(batch, [{"phoneNumber": "+18005550199"}])
    assert code == 200, doc
    [call] = await api.all_calls(batch)
    assert call["zoneSource"] == "multi" and len(call["timezones"]) > 30
    assert {"Pacific/Guam", "America/St_Johns", "America/New_York"} <= set(call["timezones"])
    # 15:00 UTC now: the earliest instant all of them are in 08:00-21:00 is 08:00 in Guam (22:00 UTC).
    assert call["nextAttemptAt"] == "2026-11-23T22:00:00Z"


async def test_next_attempt_waits_for_the_callee_window(api, clock):
    clock.set(dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc))  # 07:00 New York, 04:00 LA
    batch = await api.create_batch()
    await api.add_calls(batch, [{"phoneNumber": "12125551001"}, {"phoneNumber": "13105552002"}])
    at = {c["phoneNumber"]: c["nextAttemptAt"] for c in await api.all_calls(batch)}
    assert at == {"+12125551001": "2026-11-23T13:00:00Z", "+13105552002": "2026-11-23T16:00:00Z"}


async def test_paused_and_scheduled_batches_do_not_start_and_a_cancelled_one_takes_no_calls(api, clock):
    future = await api.create_batch(scheduledAt="2026-12-01T09:00:00Z")
    paused = await api.create_batch()
    cancelled = await api.create_batch()
    await states.pause(api.store, paused, clock.now())
    await states.cancel(api.store, cancelled, clock.now())
    for batch, expected in [(future, "pending"), (paused, "paused")]:
        code, doc = await api.add_calls(batch, SEED_RECORDS)
        assert code == 200 and doc["data"]["batchStatus"] == expected
        _, doc = await api.get(f"/api/call/batches/{batch}")
        assert doc["data"]["status"] == expected and doc["data"]["counters"]["waiting"] == 2
    # A scheduled batch's calls wait for the scheduled start, in the callee's window.
    calls = await api.all_calls(future)
    assert {c["nextAttemptAt"] for c in calls} == {"2026-12-01T13:00:00Z", "2026-12-01T16:00:00Z"}
    # Cancelled is final: its calls would wait for ever (the million-call simulation found 4,486 so).
    code, doc = await api.add_calls(cancelled, SEED_RECORDS)
    assert code == 409 and "the batch is cancelled" in doc["errorMessage"] and doc["data"]["status"] == "cancelled"
    _, doc = await api.get(f"/api/call/batches/{cancelled}")
    assert doc["data"]["counters"]["waiting"] == 0 and doc["data"]["counters"]["scheduled"] == 0


async def test_calls_written_while_a_cancel_lands_are_withdrawn(api, clock):
    """The batch was running when the request read it, and cancelled by the time its calls were written: they
    end cancelled at once (the answer says so), not waiting in a batch that never runs again."""
    batch = await api.create_batch()
    enqueue = api.store.calls.enqueue

    async def cancelled_meanwhile(*args, **kwargs):
        result = await enqueue(*args, **kwargs)
        await states.cancel(api.store, batch, clock.now())
        return result

    api.store.calls.enqueue = cancelled_meanwhile
    code, doc = await api.add_calls(batch, SEED_RECORDS)
    assert code == 200 and doc["data"]["batchStatus"] == "cancelled" and doc["data"]["added"] == 2
    assert {c["status"] for c in await api.all_calls(batch)} == {"cancelled"}


async def test_idempotency_key_replays_the_first_response(api):
    batch = await api.create_batch()
    headers = api.headers(**{"Idempotency-Key": "import-42"})
    body = {"batchId": batch, "call_data": SEED_RECORDS}
    first = await api.client.post("/api/call/addCallsToBatch", json=body, headers=headers)
    # The same request again, serialised another way (key order, spacing): the first answer, byte for byte.
    reordered = json.dumps({"call_data": SEED_RECORDS, "batchId": batch}, indent=2).encode()
    again = await api.client.post("/api/call/addCallsToBatch", data=reordered, headers=headers)
    assert first.status == again.status == 200 and await again.read() == await first.read()
    assert again.headers["Idempotent-Replay"] == "true" and "Idempotent-Replay" not in first.headers
    assert len(await api.all_calls(batch)) == 2  # the retry wrote nothing
    code, doc = await api.add_calls(batch, [{"phoneNumber": "12125559999"}], headers={"Idempotency-Key": "import-42"})
    assert code == 422 and "another body" in doc["errorMessage"]  # not the first answer: that was another request
    assert len(await api.all_calls(batch)) == 2
    code, doc = await api.add_calls(batch, [{"phoneNumber": "12125559999"}], headers={"Idempotency-Key": "other"})
    assert code == 200 and doc["data"]["inserted"] == 1


async def test_idempotency_key_replays_a_400_too_and_is_length_checked(api):
    batch = await api.create_batch()
    code, first = await api.add_calls(batch, [{"phoneNumber": "x"}], headers={"Idempotency-Key": "k1"})
    assert code == 400
    code, again = await api.add_calls(batch, [{"phoneNumber": "x"}], headers={"Idempotency-Key": "k1"})
    assert code == 400 and again == first
    code, doc = await api.add_calls(batch, SEED_RECORDS, headers={"Idempotency-Key": "k1"})
    assert code == 422 and await api.all_calls(batch) == []
    code, doc = await api.add_calls(batch, SEED_RECORDS, headers={"Idempotency-Key": "k" * 256})
    assert code == 400 and "255" in doc["errorMessage"]


async def test_concurrent_requests_with_one_key_never_both_write(api):
    batch = await api.create_batch()
    headers = {"Idempotency-Key": "same"}
    records = [{"phoneNumber": n} for n in numbers(1200, area="305")]
    results = await asyncio.gather(*[api.add_calls(batch, records, headers=headers) for _ in range(4)])
    wrote = [doc for code, doc in results if code == 200]
    assert all(code in (200, 409) for code, _ in results)
    assert len({str(doc["data"]["callIds"]) for doc in wrote}) == 1  # every 200 is the same answer
    assert len(await api.all_calls(batch)) == 1200


async def test_health_answers_while_100k_records_are_ingested(api):
    batch = await api.create_batch()
    records = [{"phoneNumber": f"+1{area}{i:07d}", "name": "Zoë Ñandú", "n": i}
               for area in ("212", "305") for i in range(2_000_000, 2_050_000)]
    post = asyncio.ensure_future(api.add_calls(batch, records))
    health_answers = 0
    while not post.done():
        resp = await api.client.get("/health")
        assert resp.status == 200
        health_answers += 1
        await asyncio.sleep(0.05)
    code, doc = await post
    assert code == 200 and doc["data"]["added"] == 100_000
    assert health_answers >= 3


async def test_oversized_body_is_413_in_the_envelope(aiohttp_client, settings, clock):
    from dialer.composition import build_app
    from tests.conftest import make_api

    app = build_app(settings.replace(max_body_bytes=10_000), clock)
    client = await aiohttp_client(app)
    api = await make_api(client, app)
    batch = await api.create_batch()
    code, doc = await api.add_calls(batch, [{"phoneNumber": n, "pad": "x" * 50} for n in numbers(300)])
    assert code == 413 and doc["code"] == 413 and "10000 bytes" in doc["errorMessage"]


async def test_unexpected_error_is_500_with_request_id_and_no_internals(api, monkeypatch):
    batch = await api.create_batch()

    async def explode(*args, **kwargs):
        raise RuntimeError("secret internals: mongodb://user:pw@host")

    monkeypatch.setattr(api.app[INGESTION], "add_calls", explode)
    code, doc = await api.add_calls(batch, SEED_RECORDS)
    assert code == 500 and doc["status"] is False
    assert doc["data"]["requestId"] and "secret" not in str(doc)


async def test_calls_listing_paginates_and_filters(api):
    batch = await api.create_batch()
    await api.add_calls(batch, [{"phoneNumber": n} for n in numbers(25)])
    code, doc = await api.get(f"/api/call/batches/{batch}/calls?limit=10")
    assert code == 200 and doc["data"]["count"] == 10 and doc["data"]["nextCursor"]
    assert len(await api.all_calls(batch)) == 25
    assert len(await api.all_calls(batch, status="queued")) == 25
    assert await api.all_calls(batch, status="completed") == []
    for bad in ["?status=bogus", "?limit=0", "?limit=x", "?cursor=zz"]:
        code, doc = await api.get(f"/api/call/batches/{batch}/calls{bad}")
        assert code == 400, bad


async def test_unicode_variables_round_trip(api):
    batch = await api.create_batch()
    record = {"phoneNumber": "12125551001", "name": "Zoë 李 🙂", "nested": {"a": [1, "ü"]}}
    await api.add_calls(batch, [record])
    [call] = await api.all_calls(batch)
    assert call["variables"] == {"name": "Zoë 李 🙂", "nested": {"a": [1, "ü"]}}


async def test_variable_names_that_mongodb_cannot_store_are_rejected(api):
    batch = await api.create_batch()
    code, doc = await api.add_calls(batch, [{"phoneNumber": "12125551001", "$where": 1}, {"phoneNumber": "12125551002", "a.b": 1}])
    assert code == 400 and doc["data"]["invalidRecords"] == 2



DEEP: list = [1]
for _ in range(40):
    DEEP = [DEEP]


@pytest.mark.parametrize("variables, reason", [
    ({"meta": {"a\u0000b": 1}}, "NUL"),
    ({"meta": {"$x": 1}}, "may not start with '$'"),
    ({"meta": [{"a.b": 1}]}, "contain '.'"),
    ({"big": 18446744073709551615}, "64 bits"),
    ({"deep": DEEP}, "nested"),
])
async def test_values_mongodb_cannot_store_are_400_not_500(api, variables, reason):
    batch = await api.create_batch()
    code, doc = await api.add_calls(batch, [{"phoneNumber": "12125551001", **variables}])
    assert code == 400 and reason in doc["data"]["errors"][0]["reason"]
    assert await api.all_calls(batch) == []


@pytest.mark.parametrize("years", [-2, 0, 3])
async def test_idempotency_expiry_follows_the_injected_clock(api, clock, years):
    # Whatever the machine's date: the clock years behind it, on it, or years ahead.
    clock.set(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365 * years))
    batch = await api.create_batch()
    key = {"Idempotency-Key": "nightly-import"}
    code, first = await api.add_calls(batch, SEED_RECORDS, headers=key)
    assert code == 200
    clock.advance(23 * 3600)  # within the 24 h: the first answer, nothing written
    code, again = await api.add_calls(batch, SEED_RECORDS, headers=key)
    assert code == 200 and again == first and len(await api.all_calls(batch)) == 2
    clock.advance(2 * 3600)  # 25 h after: the key has expired by our clock, free for any request
    code, later = await api.add_calls(batch, [{"phoneNumber": "12125559999"}], headers=key)
    assert code == 200 and later["data"]["inserted"] == 1
    assert await api.app[IDEMPOTENCY].purge() == 0  # the key's record is the new one's
    clock.advance(25 * 3600)
    assert await api.app[IDEMPOTENCY].purge() == 1
