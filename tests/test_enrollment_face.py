"""The contact-enrollment face (seeds 000/001) over HTTP: per-contact validation, duplicates, the 202's
numbers, normalizeFields, Idempotency-Key replays byte for byte, credits, and the batch read back by
its UUID through the native API."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid

import orjson
import pytest

from dialer.api.appkeys import ENROLLMENT
from tests.conftest import make_api
from tests.enrollment_client import batch_of, contact, enroll
from tests.dispatch_harness import Harness
from tests.killed import died, died_silently

ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
async def api(client, app):
    """A workspace whose agent needs account_id, as the seed's error message supposes."""
    return await make_api(client, app, {"name": "sdr", "requiredVariables": ["account_id"],
                                        "callingNumbers": ["+14155550142"], "timezones": ["America/Chicago"]})


async def admin_patch(api, body) -> tuple[int, dict]:
    resp = await api.client.patch(f"/api/admin/workspaces/{api.workspace_id}", json=body, headers=ADMIN)
    return resp.status, await resp.json()


async def test_the_seeds_example_request(api):
    body = {"contacts": [{"name": "John Doe", "phoneNumber": "+15551234567", "phoneNumberExt": "123",
                          "timezone": "America/New_York", "scheduledAt": "2023-11-07T05:31:56Z",
                          "toEmailAddress": "john.doe@example.com", "account_id": "ACC-1"}]}
    code, answer, _, _ = await enroll(api, body)
    assert code == 202, answer
    assert set(answer) == {"batchId", "total", "accepted", "rejected"}
    assert uuid.UUID(answer["batchId"]).version == 4
    assert (answer["total"], answer["accepted"], answer["rejected"]) == (1, 1, [])
    batch = await batch_of(api, answer["batchId"])
    assert batch["batchId"] == answer["batchId"] and batch["status"] == "running"
    assert batch["concurrencyLimit"] == 10 and batch["counters"]["scheduled"] == 1
    [call] = await api.all_calls(answer["batchId"])
    assert (call["phoneNumber"], call["extension"], call["timezones"]) == ("+15551234567", "123", ["America/New_York"])
    assert call["contact"] == {"index": 0, "name": "John Doe", "toEmailAddress": "john.doe@example.com",
                               "scheduledAt": "2023-11-07T05:31:56Z"}
    assert call["variables"] == {"account_id": "ACC-1", "name": "John Doe"}


async def test_thirteen_contacts_three_groups_two_duplicates_one_missing_variable(api):
    contacts = [contact(f"+1212555{i:04d}", name=f"Contact {i}", account_id=f"ACC-{i % 3}") for i in range(10)]
    contacts.insert(4, contact("+1 (212) 555-0001", account_id="ACC-9"))  # the number of contact 1
    contacts.insert(8, contact("212.555.0002", account_id="ACC-1"))  # of contact 2, national format
    contacts.append(contact("+12125559999", name="No account"))
    code, answer, _, _ = await enroll(api, {"contacts": contacts, "groupByField": "account_id",
                                            "timezone": "America/New_York"})
    assert code == 202, answer
    assert (answer["total"], answer["accepted"], len(answer["rejected"])) == (13, 10, 3)
    assert answer["accepted"] + len(answer["rejected"]) == answer["total"]
    assert answer["rejected"] == [
        {"index": 4, "phoneNumber": "+1 (212) 555-0001", "error": "Duplicate phone number: the same number as contact 1."},
        {"index": 8, "phoneNumber": "212.555.0002", "error": "Duplicate phone number: the same number as contact 2."},
        {"index": 12, "phoneNumber": "+12125559999", "error": "Missing custom input variables: account_id."},
    ]
    calls = await api.all_calls(answer["batchId"])
    by_status = {s: sorted(c["variables"]["account_id"] for c in calls if c["status"] == s) for s in ("queued", "held")}
    assert by_status["queued"] == ["ACC-0", "ACC-1", "ACC-2"]  # the first of each group
    assert len(by_status["held"]) == 7
    assert all(c["timezones"] == ["America/New_York"] for c in calls)  # the request's zone


@pytest.mark.parametrize("bad, error", [
    ({"timezone": "Mars/Olympus"}, "Invalid timezone: 'Mars/Olympus' is not an IANA time zone."),
    ({"toEmailAddress": "not-an-address"}, "Invalid toEmailAddress"),
    ({"phoneNumberExt": "12a"}, "Invalid phoneNumberExt: only digits, * and # (at most 20)."),
    ({"scheduledAt": "next tuesday"}, "Invalid scheduledAt: must be an ISO 8601 date-time"),
    ({"scheduledAt": "2026-12-08T10:00:00"}, "Invalid scheduledAt: must include a UTC offset or Z."),
    ({"phoneNumber": "555-0100"}, "Impossible phone number (wrong length for its country)."),
    ({"phoneNumber": None}, "Missing phoneNumber."),
    ({"account_id": ""}, "Missing custom input variables: account_id."),
])
async def test_each_bad_contact_is_rejected_with_its_reason_and_the_rest_scheduled(api, bad, error):
    good = contact("+12125550100", account_id="A", name="Zoë Ünal 東京")
    code, answer, _, _ = await enroll(api, {"contacts": [good, {**contact("+12125550101", account_id="B"), **bad}]})
    assert code == 202, answer
    assert answer["accepted"] == 1 and len(answer["rejected"]) == 1
    assert answer["rejected"][0]["index"] == 1
    assert answer["rejected"][0]["error"].startswith(error), answer["rejected"][0]["error"]
    [call] = await api.all_calls(answer["batchId"])
    assert call["variables"]["name"] == "Zoë Ünal 東京"


@pytest.mark.parametrize("body, status, message", [
    ({"contacts": []}, 400, "contacts must hold 1 to 1000 contacts; it holds 0."),
    ({"contacts": [contact(f"+1212555{i:04d}", account_id="A") for i in range(1001)]}, 400,
     "contacts must hold 1 to 1000 contacts; it holds 1001."),
    ({"contacts": "x"}, 400, "contacts is required: an array of 1 to 1000 contacts."),
    ({"contacts": [contact("+12125550100", account_id="A")], "groupByField": "account_id", "allowDuplicates": True},
     400, "groupByField cannot be combined with allowDuplicates."),
    ({"contacts": [contact("+12125550100", account_id="A")], "timezone": "Nowhere/Land"}, 400,
     "Invalid timezone: 'Nowhere/Land' is not an IANA time zone (e.g. America/New_York)."),
    ({"contacts": [contact("+12125550100", account_id="A")], "priority": 1}, 400, "Unknown fields: priority."),
    ({"contacts": [contact("+12125550100")]}, 400, "No contact passed validation."),
    ([1, 2], 400, "Body must be a JSON object with contacts."),
])
async def test_whole_request_refusals(api, body, status, message):
    code, answer, _, _ = await enroll(api, body)
    assert code == status
    assert answer["statusCode"] == status and answer["message"] == message
    assert answer["error"] == "Bad Request"
    _, listed = await api.get("/api/call/batches")
    assert listed["data"]["batches"] == []  # nothing scheduled


async def test_no_contact_passing_lists_the_reasons(api):
    code, answer, _, _ = await enroll(api, {"contacts": [contact("+12125550100"), contact("12")]})
    assert code == 400
    assert [r["index"] for r in answer["rejected"]] == [0, 1]


async def test_agent_key_and_body_refusals(api, client, app):
    ok = {"contacts": [contact("+12125550100", account_id="A")]}
    assert (await enroll(api, ok, agent_id="agent.abc123"))[0] == 404
    other = await make_api(client, app)
    code, answer, _, _ = await enroll(api, ok, agent_id=other.agent["_id"])  # another workspace's agent
    assert (code, answer["message"]) == (404, f"Agent {other.agent['_id']} not found.")
    silent = await api.tenancy.create_agent(api.workspace_id, {"name": "mute", "callingNumbers": []})
    code, answer, _, _ = await enroll(api, ok, agent_id=silent["_id"])
    assert code == 422 and "no phone number" in answer["message"]
    assert (await enroll(api, ok, key="wrong"))[:2] == (401, {"statusCode": 401, "error": "Unauthorized",
                                                               "message": "Missing or invalid x-api-key."})
    code, answer, _, _ = await enroll(api, None, raw=b'{"contacts": [')
    assert code == 400 and answer["message"].startswith("malformed JSON")
    code, answer, _, _ = await enroll(api, None, raw=b"x" * (8 * 1024 * 1024 + 1))
    assert code == 413 and answer["statusCode"] == 413
    code, answer, _, _ = await enroll(api, ok, idem="k" * 256)
    assert code == 400 and "longer than 255" in answer["message"]


async def test_duplicates_allowed_wait_their_turn(api):
    contacts = [contact("+12125550100", account_id="A", name="Ann"), contact("(212) 555-0100", account_id="B", name="Bo"),
                contact("+12125550111", account_id="C")]
    code, answer, _, _ = await enroll(api, {"contacts": contacts, "allowDuplicates": True})
    assert code == 202 and answer["accepted"] == 3
    calls = {c["variables"]["account_id"]: c for c in await api.all_calls(answer["batchId"])}
    assert (calls["A"]["status"], calls["B"]["status"], calls["C"]["status"]) == ("queued", "held", "queued")


async def test_normalize_fields_only_for_allowed_workspaces(api):
    body = {"contacts": [contact("+12125550100", account_id="a", first_name="JOHN", last_name="o'BRIEN-SMITH",
                                 name="mary ann")],
            "normalizeFields": ["first_name", "last_name", "name"]}
    code, answer, _, _ = await enroll(api, body)
    assert code == 202 and "normalizeFields was ignored" in answer["message"]
    [call] = await api.all_calls(answer["batchId"])
    assert call["variables"]["first_name"] == "JOHN"
    assert (await admin_patch(api, {"normalizationAllowed": True}))[0] == 200
    code, answer, _, _ = await enroll(api, body)
    assert code == 202 and "message" not in answer
    [call] = await api.all_calls(answer["batchId"])
    assert (call["variables"]["first_name"], call["variables"]["last_name"], call["variables"]["name"]) == \
        ("John", "O'Brien-Smith", "Mary Ann")
    assert call["variables"]["account_id"] == "a"  # not named: untouched


async def test_idempotency_key_replays_the_first_answer_byte_for_byte(api, clock):
    body = {"contacts": [contact("+12125550100", account_id="A"), contact("bad", account_id="B")]}
    code, first, raw, headers = await enroll(api, body, idem="order-42")
    assert code == 202 and "Idempotent-Replay" not in headers
    fixed = {"contacts": [contact("+12125550199", account_id="Z")]}
    code, again, raw_again, headers = await enroll(api, fixed, idem="order-42")  # the key alone dedupes
    assert (code, raw_again, headers.get("Idempotent-Replay")) == (202, raw, "true")
    _, listed = await api.get("/api/call/batches")
    assert len(listed["data"]["batches"]) == 1
    code, other, _, _ = await enroll(api, fixed, idem="order-43")  # a new key resubmits fixed rows
    assert code == 202 and other["batchId"] != first["batchId"] and other["accepted"] == 1
    clock.advance(3 * 365 * 86400)  # years ahead: the key has expired by the injected clock
    code, later, _, headers = await enroll(api, fixed, idem="order-42")
    assert code == 202 and later["batchId"] != first["batchId"] and "Idempotent-Replay" not in headers


async def test_concurrent_requests_with_one_key_schedule_once(api):
    body = {"contacts": [contact(f"+1212555{i:04d}", account_id=str(i)) for i in range(200)]}
    answers = await asyncio.gather(*(enroll(api, body, idem="same") for _ in range(5)))
    assert {a[0] for a in answers} == {202}
    assert len({a[2] for a in answers}) == 1  # the same bytes for all
    _, listed = await api.get("/api/call/batches")
    assert len(listed["data"]["batches"]) == 1
    assert (await batch_of(api, answers[0][1]["batchId"]))["counters"]["scheduled"] == 200


async def test_credits_are_reserved_exactly(api):
    assert (await admin_patch(api, {"credits": 5}))[1]["data"]["credits"] == 5
    body = {"contacts": [contact(f"+1212555{i:04d}", account_id=str(i)) for i in range(6)] + [contact("x")]}
    code, answer, _, _ = await enroll(api, body)
    assert code == 402
    assert (answer["required"], answer["available"]) == (6, 5)
    assert answer["message"] == "Not enough credits: 6 contacts accepted, 5 credits available. Nothing was scheduled."
    _, listed = await api.get("/api/call/batches")
    assert listed["data"]["batches"] == []
    assert (await admin_patch(api, {"addCredits": 5}))[1]["data"]["credits"] == 10
    three = {"contacts": [contact(f"+1313555{i:04d}", account_id=str(i)) for i in range(3)]}
    answers = await asyncio.gather(*(enroll(api, three) for _ in range(5)))
    assert sorted(a[0] for a in answers) == [202, 202, 202, 402, 402]
    status, doc = await admin_patch(api, {"normalizationAllowed": False})
    assert doc["data"]["credits"] == 1
    # Unlimited again: nothing is counted.
    await admin_patch(api, {"credits": None})
    assert (await enroll(api, body))[0] == 202


async def test_admin_settings_refusals(api):
    for body, message in [({"credits": -1}, "credits must be null"), ({"credits": True}, "credits must be null"),
                          ({"addCredits": 3}, "unlimited credits"), ({"colour": 1}, "unknown fields"),
                          ({"defaultConcurrencyLimit": 0}, "defaultConcurrencyLimit")]:
        code, doc = await admin_patch(api, body)
        assert code == 400 and message in doc["errorMessage"], (body, doc)
    resp = await api.client.patch(f"/api/admin/workspaces/{api.workspace_id}", json={"credits": 1})
    assert resp.status == 403


async def test_workspace_concurrency_and_scheduled_at(api, clock):
    await admin_patch(api, {"defaultConcurrencyLimit": 3})
    later = clock.now() + dt.timedelta(days=2)
    body = {"contacts": [contact("+12125550100", account_id="A", scheduledAt=later.isoformat())]}
    code, answer, _, _ = await enroll(api, body)
    assert code == 202
    batch = await batch_of(api, answer["batchId"])
    assert batch["concurrencyLimit"] == 3
    [call] = await api.all_calls(answer["batchId"])
    assert call["nextAttemptAt"] >= later.isoformat().replace("+00:00", "Z")  # not called before it


async def test_the_uuid_batch_is_the_workspaces_own(api, client, app):
    code, answer, _, _ = await enroll(api, {"contacts": [contact("+12125550100", account_id="A")]})
    other = await make_api(client, app)
    code, doc = await other.get(f"/api/call/batches/{answer['batchId']}")
    assert code == 403
    code, doc = await api.get(f"/api/call/batches/{uuid.uuid4()}")
    assert code == 404
    code, doc = await api.post(f"/api/call/batches/{answer['batchId']}/stop")
    assert code == 200 and doc["data"]["status"] == "paused"


async def test_cli_workspace_set_over_http(api):
    import argparse
    import io

    from rich.console import Console

    from dialer import remote
    from dialer.cli import main as cli_main

    out = io.StringIO()
    console = Console(file=out, width=200)
    url = str(api.client.make_url("")).rstrip("/")
    ns = argparse.Namespace(command="workspace-set", url=url, key="admin-secret", workspace_id=str(api.workspace_id),
                            body={"credits": 7, "normalizationAllowed": True})
    assert await remote.run(ns, console) == 0
    assert "7" in out.getvalue() and "normalizationAllowed" in out.getvalue()
    workspace = await api.tenancy.get_workspace(api.workspace_id)
    assert (workspace["credits"], workspace["normalizationAllowed"]) == (7, True)
    ns.key = "wrong"
    assert await remote.run(ns, console) == 1 and "invalid admin token" in out.getvalue()
    assert cli_main(["workspace-set", str(api.workspace_id)]) == 2  # nothing to change
    assert cli_main(["workspace-set", str(api.workspace_id), "--credits", "3", "--unlimited-credits"]) == 2


async def test_contacts_too_large_to_store_together_are_a_413(api):
    # Small integers cost ~6 bytes of BSON per byte of JSON: 1,000 contacts of 6 KB of them exceed a document.
    contacts = [contact(f"+1212555{i:04d}", account_id=str(i), scores=[1] * 3000) for i in range(1000)]
    code, answer, _, _ = await enroll(api, {"contacts": contacts})
    assert code == 413 and "too large to be stored together" in answer["message"]
    _, listed = await api.get("/api/call/batches")
    assert listed["data"]["batches"] == []


async def test_review_findings_on_the_face(api, client, app):
    """Each of these was a bug found in review: a required `name`, long echoed numbers, enrollment batches
    fed through addCallsToBatch, upper-case UUIDs, credits taken below zero, group values of other types."""
    named = await api.tenancy.create_agent(api.workspace_id, {"name": "named", "requiredVariables": ["name"],
                                                              "callingNumbers": ["+14155550143"]})
    code, answer, _, _ = await enroll(api, {"contacts": [contact("+12125550100", name="John")]}, agent_id=named["_id"])
    assert code == 202 and answer["accepted"] == 1
    code, answer, _, _ = await enroll(api, {"contacts": [contact("+12125550100", account_id="A"),
                                                         contact("9" * 100_000, account_id="B")]})
    assert code == 202 and len(answer["rejected"][0]["phoneNumber"]) == 64
    code, doc = await api.add_calls(answer["batchId"], [{"phoneNumber": "+12125550100"}])
    assert code == 409 and "enrollment face" in doc["errorMessage"]
    code, doc = await api.get(f"/api/call/batches/{answer['batchId'].upper()}")
    assert code == 200 and doc["data"]["batchId"] == answer["batchId"]
    code, answer, _, _ = await enroll(api, {"groupByField": "account_id", "contacts": [
        contact("+12125550101", account_id=1), contact("+12125550102", account_id="1"),
        contact("+12125550103", account_id={"a": 1, "b": 2}), contact("+12125550104", account_id={"b": 2, "a": 1})]})
    statuses = sorted(c["status"] for c in await api.all_calls(answer["batchId"]))
    assert statuses == ["held", "queued", "queued", "queued"]  # 1 and "1" apart; the two objects together
    await admin_patch(api, {"credits": 3})
    code, doc = await admin_patch(api, {"addCredits": -4})
    assert code == 400 and "smaller than 4" in doc["errorMessage"]


async def test_a_store_refusing_the_intake_gives_the_credits_back(api):
    from pymongo.errors import DocumentTooLarge

    await admin_patch(api, {"credits": 10})
    intakes = api.store.intakes
    original = intakes.insert

    async def too_large(intake):
        raise DocumentTooLarge("BSON document too large")  # what PyMongo raises past 16 MiB

    intakes.insert = too_large
    code, answer, _, _ = await enroll(api, {"contacts": [contact("+12125550100", account_id="A")]})
    intakes.insert = original
    assert code == 413 and answer["statusCode"] == 413
    assert (await api.tenancy.get_workspace(api.workspace_id))["credits"] == 10


async def test_a_retry_racing_the_first_request_replays_it_instead_of_402(api):
    await admin_patch(api, {"credits": 1})
    body = {"contacts": [contact("+12125550100", account_id="A")]}
    code, first, raw, _ = await enroll(api, body, idem="race")
    assert code == 202
    intakes = api.store.intakes
    original = intakes.get
    looks = []

    async def not_yet(intake_id):  # the retry looked before the first request's intake was written
        looks.append(intake_id)
        return None if len(looks) == 1 else await original(intake_id)

    intakes.get = not_yet
    code, again, raw_again, headers = await enroll(api, body, idem="race")  # no credits left: was a 402
    intakes.get = original
    assert (code, raw_again, headers.get("Idempotent-Replay")) == (202, raw, "true")


async def test_verdicts_only_for_placed_calls(api):
    code, answer, _, _ = await enroll(api, {"contacts": [contact("+12125550100", account_id="A")]})
    [call] = await api.all_calls(answer["batchId"])
    code, doc = await api.post(f"/api/call/calls/{call['callId']}/verdict", {"successful": True})
    assert code == 409 and "not been placed" in doc["errorMessage"]


async def test_framework_refusals_on_the_face_are_in_its_shape(api):
    resp = await api.client.get(f"/api/v1/agents/{api.agent['_id']}/schedule/sequences", headers=api.headers())
    doc = await resp.json()
    assert resp.status == 405 and doc["statusCode"] == 405 and doc["error"] == "Method Not Allowed"
    assert "POST" in resp.headers["Allow"]
    resp = await api.client.post("/api/v1/nowhere", headers=api.headers())
    assert resp.status == 404 and (await resp.json())["statusCode"] == 404


async def test_admin_settings_need_one_change_and_not_both_credit_fields(api):
    code, doc = await admin_patch(api, {})
    assert code == 400 and "body must be an object with credits" in doc["errorMessage"]
    code, doc = await admin_patch(api, {"credits": 5, "addCredits": 1})
    assert code == 400 and doc["errorMessage"] == "give credits or addCredits, not both"


async def test_an_enrollment_killed_between_its_credits_and_its_intake_spends_them_once(api, monkeypatch):
    """Found by tests/test_crash.py: the process died (kill -9) after reserving the credits and before
    writing the intake; the partner's retry with its key reserved them again (spent 2 x accepted)."""
    await admin_patch(api, {"credits": 100})
    body = {"groupByField": "account_id", "contacts": [contact(f"+1212555010{i}", account_id="A") for i in range(3)]}

    monkeypatch.setattr(api.store.intakes, "insert", died)
    monkeypatch.setattr(api.store.tenancy, "settle_credits", died_silently)
    code, _, _, _ = await enroll(api, body, idem="crm-7")
    assert code == 500 and (await api.tenancy.get_workspace(api.workspace_id))["credits"] == 97
    monkeypatch.undo()
    code, answer, _, _ = await enroll(api, body, idem="crm-7")
    assert code == 202 and answer["accepted"] == 3 and len(await api.all_calls(answer["batchId"])) == 3
    workspace = await api.tenancy.get_workspace(api.workspace_id)
    assert workspace["credits"] == 97 and not workspace.get("reservations")  # spent once, nothing noted


async def test_credits_of_an_enrollment_killed_before_its_intake_and_never_retried_come_back(api, clock, monkeypatch,
                                                                                             engine_settings):
    """As above, but the partner never retries: the reservation would hold the credits for ever. The reaper
    gives them back once it has seen the reservation without its intake for ten minutes."""
    await admin_patch(api, {"credits": 100})
    body = {"contacts": [contact(f"+1212555010{i}", account_id=f"A{i}") for i in range(3)]}
    monkeypatch.setattr(api.store.intakes, "insert", died)
    monkeypatch.setattr(api.store.tenancy, "settle_credits", died_silently)
    code, _, _, _ = await enroll(api, body, idem="crm-8")
    assert code == 500
    monkeypatch.undo()
    reaper = Harness(api, clock, engine_settings).engines[0].reaper
    await reaper.run()
    clock.advance(9 * 60)
    await reaper.run()
    assert (await api.tenancy.get_workspace(api.workspace_id))["credits"] == 97  # it may still be retried
    clock.advance(2 * 60)
    await reaper.run()
    workspace = await api.tenancy.get_workspace(api.workspace_id)
    assert workspace["credits"] == 100 and not workspace.get("reservations")
    code, answer, _, _ = await enroll(api, body, idem="crm-8")  # a retry after all: charged once
    assert code == 202 and answer["accepted"] == 3
    await reaper.run()
    clock.advance(60 * 60)
    await reaper.run()
    assert (await api.tenancy.get_workspace(api.workspace_id))["credits"] == 97


async def test_a_retry_with_more_contacts_after_a_death_before_the_intake_is_charged_for_them(api, monkeypatch):
    """The first request (one contact) died after reserving its credit and before writing its intake; the
    partner's retry with the same key carried four contacts (its CRM had more by then). The retry was
    scheduled on the dead request's one credit: the reservation under the key covered any amount."""
    await admin_patch(api, {"credits": 100})
    small = {"contacts": [contact("+12125550100", account_id="A")]}
    monkeypatch.setattr(api.store.intakes, "insert", died)
    monkeypatch.setattr(api.store.tenancy, "settle_credits", died_silently)
    code, _, _, _ = await enroll(api, small, idem="crm-9")
    assert code == 500 and (await api.tenancy.get_workspace(api.workspace_id))["credits"] == 99
    monkeypatch.undo()
    larger = {"contacts": [contact(f"+1212555010{i}", account_id=f"A{i}") for i in range(4)]}
    code, answer, _, _ = await enroll(api, larger, idem="crm-9")
    assert code == 202 and answer["accepted"] == 4 and len(await api.all_calls(answer["batchId"])) == 4
    workspace = await api.tenancy.get_workspace(api.workspace_id)
    assert workspace["credits"] == 96 and not workspace.get("reservations")  # four accepted, four spent


async def test_a_retry_with_fewer_contacts_after_a_death_before_the_intake_spends_only_those(api, monkeypatch):
    await admin_patch(api, {"credits": 100})
    larger = {"contacts": [contact(f"+1212555010{i}", account_id=f"A{i}") for i in range(4)]}
    monkeypatch.setattr(api.store.intakes, "insert", died)
    monkeypatch.setattr(api.store.tenancy, "settle_credits", died_silently)
    code, _, _, _ = await enroll(api, larger, idem="crm-10")
    assert code == 500 and (await api.tenancy.get_workspace(api.workspace_id))["credits"] == 96
    monkeypatch.undo()
    code, answer, _, _ = await enroll(api, {"contacts": [contact("+12125550100", account_id="A")]}, idem="crm-10")
    assert code == 202 and answer["accepted"] == 1
    workspace = await api.tenancy.get_workspace(api.workspace_id)
    assert workspace["credits"] == 99 and not workspace.get("reservations")


async def test_two_requests_with_one_key_whose_second_writes_the_intake_spend_its_credits(api, monkeypatch):
    """Two requests with one key at once (two API processes): A reserves, B finds A's reservation and
    takes nothing, B's intake lands first, and A, losing, gives back its reservation before B settles it:
    B's contacts were scheduled for nothing."""
    await admin_patch(api, {"credits": 10})
    body = {"contacts": [contact(f"+1212555010{i}", account_id=f"A{i}") for i in range(3)]}
    intakes, tenancy = api.store.intakes, api.store.tenancy
    insert, settle = intakes.insert, tenancy.settle_credits
    b_written, a_settled, inserts = asyncio.Event(), asyncio.Event(), []

    async def a_lands_last(intake):
        inserts.append(intake["_id"])
        if len(inserts) == 1:  # A
            await b_written.wait()
            return await insert(intake)
        try:
            return await insert(intake)
        finally:
            b_written.set()

    order = []

    async def settles_in_order(workspace_id, ref, *args, **kwargs):
        order.append(len(order))
        if len(order) == 1:  # B, whose intake was written first: after A's (if A settles anything)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(a_settled.wait(), 0.5)
            return await settle(workspace_id, ref, *args, **kwargs)
        try:
            return await settle(workspace_id, ref, *args, **kwargs)
        finally:
            a_settled.set()

    monkeypatch.setattr(intakes, "insert", a_lands_last)
    monkeypatch.setattr(tenancy, "settle_credits", settles_in_order)
    headers = {"x-api-key": api.key, "Idempotency-Key": "crm-11"}
    path = f"/api/v1/agents/{api.agent['_id']}/schedule/sequences"
    first = asyncio.create_task(api.client.post(path, json=body, headers=headers))
    while not inserts:
        await asyncio.sleep(0.01)
    second, first = await asyncio.gather(api.client.post(path, json=body, headers=headers), first)
    assert (first.status, second.status) == (202, 202)
    assert await first.read() == await second.read()
    await api.app[ENROLLMENT].close()
    monkeypatch.undo()
    workspace = await api.tenancy.get_workspace(api.workspace_id)
    assert workspace["credits"] == 7 and not workspace.get("reservations")


async def test_a_retry_that_reserved_after_the_intake_was_settled_gives_its_reservation_back(api, monkeypatch):
    """Seen with two API processes on one store and a partner retrying with its key (90 contacts charged
    135 credits): a retry looked for the key's intake just before it was written, reserved afresh once the
    first reservation was spent, then found the intake. Its reservation paid for nothing, yet the intake's
    processing, running meanwhile, took it as spent."""
    await admin_patch(api, {"credits": 10})
    enrollment = api.app[ENROLLMENT]
    body = {"contacts": [contact(f"+1212555010{i}", account_id=f"A{i}") for i in range(3)]}
    monkeypatch.setattr(enrollment, "_background", lambda intake_id: None)  # processed below, later
    code, _, raw, _ = await enroll(api, body, idem="crm-12")
    assert code == 202 and (await api.tenancy.get_workspace(api.workspace_id))["credits"] == 7
    monkeypatch.undo()
    intakes = api.store.intakes
    get, insert = intakes.get, intakes.insert
    looks = []

    async def not_yet(intake_id):  # the retry's first look came before the intake was written
        looks.append(intake_id)
        return None if len(looks) == 1 else await get(intake_id)

    async def processed_meanwhile(intake):  # the first request's intake is processed as the retry writes
        assert await enrollment.process(intake["_id"])
        return await insert(intake)

    monkeypatch.setattr(intakes, "get", not_yet)
    monkeypatch.setattr(intakes, "insert", processed_meanwhile)
    code, _, raw_again, headers = await enroll(api, body, idem="crm-12")
    monkeypatch.undo()
    assert (code, raw_again, headers.get("Idempotent-Replay")) == (202, raw, "true")
    answer = orjson.loads(raw)
    assert len(await api.all_calls(answer["batchId"])) == 3
    workspace = await api.tenancy.get_workspace(api.workspace_id)
    assert workspace["credits"] == 7 and not workspace.get("reservations")
