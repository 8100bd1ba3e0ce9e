"""Every write safe to retry (issue 14, item 5): an Idempotency-Key on createBatch, a batch's retry, the
ElevenLabs face's submit and retry, the admin routes that create and a workspace's settings, over HTTP. The same request with a
used key gets the first answer byte for byte (`Idempotent-Replay: true`) and nothing is done twice;
another body with the key is a 422 naming the reason; the key expires by the injected clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from bson import ObjectId
from elevenlabs.core.api_error import ApiError

from dialer.api.appkeys import BATCHES, IDEMPOTENCY
from dialer.composition import build_app
from dialer.core.clock import SystemClock
from dialer.services.idempotency import Idempotency, KeyInUse, StoredResponse
from dialer.services.tenancy import hash_key
from tests.conftest import make_api
from tests.dispatch_harness import Harness, nums
from tests.killed import after_the_first_chunk, unanswered
from tests.test_elevenlabs_face import recipients, sdk

CREATE = "/api/call/createBatch"
SUBMIT = "/v1/convai/batch-calling/submit"


async def send(api, path: str, body=None, key: str | None = None, *, raw: bytes | None = None,
               headers: dict | None = None, method: str = "POST") -> tuple[int, bytes, dict]:
    """(status, the body's bytes, headers) of a POST (or `method`) with the workspace's key and `key` as
    Idempotency-Key."""
    sent = {**(headers or api.headers()), **({"Idempotency-Key": key} if key is not None else {})}
    data = raw if raw is not None else json.dumps(body).encode()
    resp = await api.client.request(method, path, data=data, headers=sent)
    return resp.status, await resp.read(), resp.headers


async def batch_ids(api) -> list[str]:
    code, doc = await api.get("/api/call/batches?limit=100")
    assert code == 200, doc
    return [b["batchId"] for b in doc["data"]["batches"]]


def batch_body(api, **more) -> dict:
    return {"name": "November renewals", "agentId": str(api.agent["_id"]), "concurrencyLimit": 5, **more}


async def test_create_batch_retried_with_its_key_creates_one_batch(api):
    code, body, _ = await send(api, CREATE, batch_body(api), "crm-sync-1", headers={"x-api-key": "nope"})
    assert code == 403 and "invalid API key" in json.loads(body)["errorMessage"]  # who asks comes first
    code, first, headers = await send(api, CREATE, batch_body(api), "crm-sync-1")  # the stranger took no key
    assert code == 200 and "Idempotent-Replay" not in headers
    # The partner's retry after a timeout, serialised another way: the first answer, byte for byte.
    reordered = json.dumps(dict(reversed(list(batch_body(api).items()))), indent=1).encode()
    code, again, headers = await send(api, CREATE, key="crm-sync-1", raw=reordered)
    assert code == 200 and again == first and headers["Idempotent-Replay"] == "true"
    assert await batch_ids(api) == [json.loads(first)["data"]["batchId"]]
    code, refused, _ = await send(api, CREATE, batch_body(api, concurrencyLimit=6), "crm-sync-1")
    doc = json.loads(refused)
    assert code == 422 and "already used for another body" in doc["errorMessage"]
    assert doc["data"] == {"header": "Idempotency-Key"} and len(await batch_ids(api)) == 1
    code, _, _ = await send(api, CREATE, batch_body(api), "crm-sync-2")  # a new key is a new batch
    assert code == 200 and len(await batch_ids(api)) == 2


async def test_a_key_is_a_workspaces_own(api, client, app):
    other = await make_api(client, app)
    code, mine, _ = await send(api, CREATE, batch_body(api), "k1")
    code2, theirs, headers = await send(other, CREATE, batch_body(other), "k1")
    assert code == code2 == 200 and "Idempotent-Replay" not in headers
    assert json.loads(mine)["data"]["batchId"] != json.loads(theirs)["data"]["batchId"]
    code, _, _ = await send(api, "/api/call/addCallsToBatch", {"batchId": json.loads(mine)["data"]["batchId"],
                                                               "call_data": [{"phoneNumber": "+12125550100"}]}, "k1")
    assert code == 422  # the key belongs to the createBatch request: not a replay of a batch for these calls


async def test_a_refused_create_is_replayed_and_a_malformed_key_refused(api):
    body = batch_body(api, concurrencyLimit=0)
    code, first, _ = await send(api, CREATE, body, "bad-limit")
    assert code == 400 and "concurrencyLimit" in json.loads(first)["errorMessage"]
    code, again, headers = await send(api, CREATE, body, "bad-limit")
    assert code == 400 and again == first and headers["Idempotent-Replay"] == "true"
    for key, reason in (("", "empty"), ("k" * 256, "255"), ("clé", "printable ASCII")):
        resp = await api.client.post(CREATE, data=json.dumps(batch_body(api)).encode(),
                                     headers={**api.headers(), "Idempotency-Key": key})
        doc = await resp.json()
        assert resp.status == 400 and reason in doc["errorMessage"], key
    assert await batch_ids(api) == []


async def test_concurrent_creates_with_one_key_make_one_batch(api, monkeypatch):
    batches = api.app[BATCHES]
    create, entered, release = batches.create, asyncio.Event(), asyncio.Event()

    async def held_create(*args, **kwargs):  # the first request's write is held until the others were answered
        entered.set()
        await release.wait()
        return await create(*args, **kwargs)

    monkeypatch.setattr(batches, "create", held_create)
    first = asyncio.ensure_future(send(api, CREATE, batch_body(api), "double-click"))
    await entered.wait()
    others = await asyncio.wait_for(  # (without the key's claim they would wait for the first's write: forever)
        asyncio.gather(*[send(api, CREATE, batch_body(api), "double-click") for _ in range(4)]), 10)
    assert [code for code, _, _ in others] == [409] * 4
    assert "still being processed" in json.loads(others[0][1])["errorMessage"]
    release.set()
    code, answer, _ = await first
    assert code == 200 and await batch_ids(api) == [json.loads(answer)["data"]["batchId"]]
    results = await asyncio.gather(*[send(api, CREATE, batch_body(api), "double-click") for _ in range(4)])
    assert {(code, body, headers["Idempotent-Replay"]) for code, body, headers in results} == {(200, answer, "true")}
    assert len(await batch_ids(api)) == 1


@pytest.mark.parametrize("years", [-3, 0, 5])
async def test_a_key_expires_by_the_injected_clock(api, clock, years):
    clock.set(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365 * years))
    code, first, _ = await send(api, CREATE, batch_body(api), "nightly")
    clock.advance(23 * 3600)
    code, again, headers = await send(api, CREATE, batch_body(api), "nightly")
    assert code == 200 and again == first and headers["Idempotent-Replay"] == "true"
    clock.advance(2 * 3600)  # 25 h: the key is free again, for any request
    code, later, headers = await send(api, CREATE, batch_body(api, name="another"), "nightly")
    assert code == 200 and "Idempotent-Replay" not in headers and later != first
    assert len(await batch_ids(api)) == 2


async def test_a_retried_retry_requeues_once_and_a_409_is_not_kept(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"busy": 1.0})
    batch = await api.create_batch(concurrencyLimit=4)
    await api.add_calls(batch, nums(4))
    retry = f"/api/call/batches/{batch}/retry"
    code, early, _ = await send(api, retry, {"outcomes": ["busy"]}, "redial-busy")
    assert code == 409  # running: nothing to retry yet; a conflict of the moment is not kept
    await h.run_until(lambda: _status(api, batch, "completed"))
    code, first, headers = await send(api, retry, {"outcomes": ["busy"]}, "redial-busy")
    assert code == 200 and "Idempotent-Replay" not in headers and json.loads(first)["data"]["retryCount"] == 1
    code, again, headers = await send(api, retry, {"outcomes": ["busy"]}, "redial-busy")
    assert code == 200 and again == first and headers["Idempotent-Replay"] == "true"
    code, doc = await api.get(f"/api/call/batches/{batch}")
    assert doc["data"]["retryCount"] == 1 and doc["data"]["counters"]["waiting"] == 4  # requeued once
    code, refused, _ = await send(api, retry, {"outcomes": ["busy", "no_answer"]}, "redial-busy")
    assert code == 422 and "another body" in json.loads(refused)["errorMessage"]
    other = await api.create_batch()
    code, refused, _ = await send(api, f"/api/call/batches/{other}/retry", {"outcomes": ["busy"]}, "redial-busy")
    assert code == 422 and "another request" in json.loads(refused)["errorMessage"]


async def _status(api, batch: str, status: str) -> bool:
    return (await api.get(f"/api/call/batches/{batch}"))[1]["data"]["status"] == status


def keyed(key: str) -> dict:
    """The SDK's way to send a header of ours."""
    return {"additional_headers": {"Idempotency-Key": key}}


async def test_the_elevenlabs_sdk_submitting_twice_with_one_key_creates_one_batch(api):
    calls = sdk(api).conversational_ai.batch_calls
    submit = {"call_name": "Survey", "agent_id": str(api.agent["_id"]), "recipients": recipients(3)}
    first = await calls.create(**submit, request_options=keyed("survey-42"))
    again = await calls.create(**submit, request_options=keyed("survey-42"))
    assert again == first
    assert [b.id for b in (await calls.list()).batch_calls] == [first.id]
    assert len(await api.all_calls(first.id)) == 3  # every recipient dialled once, not twice
    with pytest.raises(ApiError) as err:  # another body with the key: the vendor's 422, located at the header
        await calls.create(**{**submit, "recipients": recipients(4)}, request_options=keyed("survey-42"))
    assert err.value.status_code == 422
    [detail] = err.value.body["detail"]
    assert detail["loc"] == ["header", "Idempotency-Key"] and "another body" in detail["msg"]
    with pytest.raises(ApiError) as err:
        await calls.create(**submit, request_options=keyed("k" * 256))
    assert err.value.status_code == 422 and "255" in err.value.body["detail"][0]["msg"]
    assert len((await calls.list()).batch_calls) == 1


async def test_a_retried_submit_is_replayed_byte_for_byte_and_a_refused_one_too(api):
    headers = {"xi-api-key": api.key}
    body = {"call_name": "Survey", "agent_id": str(api.agent["_id"]), "recipients": recipients(2)}
    code, first, _ = await send(api, SUBMIT, body, "s-1", headers=headers)
    code2, again, replay = await send(api, SUBMIT, body, "s-1", headers=headers)
    assert code == code2 == 200 and again == first and replay["Idempotent-Replay"] == "true"
    assert replay["Content-Type"] == "application/json"
    bad = {**body, "recipients": [{"phone_number": "12"}]}
    code, refused, _ = await send(api, SUBMIT, bad, "s-2", headers=headers)
    code2, again, replay = await send(api, SUBMIT, bad, "s-2", headers=headers)
    assert code == code2 == 422 and again == refused and replay["Idempotent-Replay"] == "true"
    code, unauthorised, _ = await send(api, SUBMIT, body, "s-1", headers={"xi-api-key": "sk_wrong"})
    assert code == 401 and json.loads(unauthorised)["detail"]["status"] == "invalid_api_key"
    assert len(await batch_ids(api)) == 1


async def test_the_elevenlabs_retry_with_one_key_retries_once(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"busy": 1.0})
    calls = sdk(api).conversational_ai.batch_calls
    batch = await calls.create(call_name="Busy", agent_id=str(api.agent["_id"]), recipients=recipients(3),
                               target_concurrency_limit=3)
    await h.run_until(lambda: _status(api, batch.id, "completed"))
    first = await calls.retry(batch.id, request_options=keyed("again-1"))
    again = await calls.retry(batch.id, request_options=keyed("again-1"))
    assert first.retry_count == again.retry_count == 1 and again == first
    code, doc = await api.get(f"/api/call/batches/{batch.id}")
    assert doc["data"]["retryCount"] == 1 and doc["data"]["counters"]["waiting"] == 3
    with pytest.raises(ApiError) as err:  # the key already belongs to the retry: not a submit's
        await calls.create(call_name="x", agent_id=str(api.agent["_id"]), recipients=recipients(1),
                           request_options=keyed("again-1"))
    assert err.value.status_code == 422 and "another request" in err.value.body["detail"][0]["msg"]


ADMIN = {"Authorization": "Bearer admin-secret"}


async def test_the_admin_routes_that_create_do_it_once_per_key(api):
    code, first, _ = await send(api, "/api/admin/workspaces", {"name": "Acme"}, "onboard-acme", headers=ADMIN)
    code2, again, replay = await send(api, "/api/admin/workspaces", {"name": "Acme"}, "onboard-acme", headers=ADMIN)
    assert code == code2 == 200 and again == first and replay["Idempotent-Replay"] == "true"
    _, listing = await api.get("/api/admin/workspaces", key="admin-secret")
    assert [w["name"] for w in listing["data"]["workspaces"]].count("Acme") == 1
    created = json.loads(first)["data"]
    workspace, workspace_key = created["workspaceId"], created["apiKey"]
    code, refused, _ = await send(api, "/api/admin/workspaces", {"name": "Acme 2"}, "onboard-acme", headers=ADMIN)
    assert code == 422 and "another body" in json.loads(refused)["errorMessage"]

    keys = f"/api/admin/workspaces/{workspace}/keys"
    code, first, _ = await send(api, keys, None, "second-key", headers=ADMIN, raw=b"")
    code2, again, replay = await send(api, keys, None, "second-key", headers=ADMIN, raw=b"")
    assert code == code2 == 200 and again == first and replay["Idempotent-Replay"] == "true"  # one key, shown once

    agents = f"/api/admin/workspaces/{workspace}/agents"
    agent = {"name": "sales", "callingNumbers": ["+14155550199"], "timezones": ["America/Los_Angeles"]}
    code, first, _ = await send(api, agents, agent, "sales-agent", headers=ADMIN)
    code2, again, replay = await send(api, agents, agent, "sales-agent", headers=ADMIN)
    assert code == code2 == 200 and again == first and replay["Idempotent-Replay"] == "true"
    _, mine = await api.get("/api/agents", key=workspace_key)
    assert [a["name"] for a in mine["data"]["agents"]] == ["sales"]
    code, refused, _ = await send(api, f"/api/admin/workspaces/{api.workspace_id}/agents", agent, "sales-agent",
                                  headers=ADMIN)  # the same agent into another workspace: another request
    assert code == 422 and "another request" in json.loads(refused)["errorMessage"]


async def test_admin_keys_are_apart_from_the_workspaces(api):
    code, batch, _ = await send(api, CREATE, batch_body(api), "shared-name")
    assert code == 200
    code, body, _ = await send(api, "/api/admin/workspaces", {"name": "Acme"}, "shared-name",
                               headers={"Authorization": "Bearer wrong"})
    assert code == 403 and json.loads(body)["errorMessage"] == "invalid admin token"
    code, workspace, headers = await send(api, "/api/admin/workspaces", {"name": "Acme"}, "shared-name", headers=ADMIN)
    assert code == 200 and "Idempotent-Replay" not in headers  # not the workspace's createBatch: a 422 there
    for path, body, headers, first in ((CREATE, batch_body(api), None, batch),
                                       ("/api/admin/workspaces", {"name": "Acme"}, ADMIN, workspace)):
        code, again, replay = await send(api, path, body, "shared-name", headers=headers)
        assert code == 200 and again == first and replay["Idempotent-Replay"] == "true"  # each its own answer


async def test_credits_added_by_a_retried_settings_change_are_added_once(api):
    settings = f"/api/admin/workspaces/{api.workspace_id}"
    code, _, _ = await send(api, settings, {"credits": 1000}, method="PATCH", headers=ADMIN)
    assert code == 200
    code, first, _ = await send(api, settings, {"addCredits": 100}, "top-up-7", method="PATCH", headers=ADMIN)
    code2, again, replay = await send(api, settings, {"addCredits": 100}, "top-up-7", method="PATCH", headers=ADMIN)
    assert code == code2 == 200 and again == first and replay["Idempotent-Replay"] == "true"
    _, doc = await api.get(settings, key="admin-secret")
    assert doc["data"]["credits"] == 1100


async def test_an_add_cut_short_by_a_crash_is_finished_by_its_retry_writing_nothing_twice(settings, clock,
                                                                                        aiohttp_client, monkeypatch):
    """Found by tests/test_crash.py: the process died (kill -9) after the first chunk of an addCallsToBatch.
    Its key was held for ten minutes; then a retry ran it afresh and wrote a second call for every number
    whose first call had ended meanwhile. Now the key is free once its claim runs out (claim_seconds,
    renewed while a request runs) and the retry finds the calls the dead request wrote by their ids."""
    app = build_app(settings.replace(chunk_size=2, idempotency_claim_seconds=30), clock)
    api = await make_api(await aiohttp_client(app), app)
    batch = await api.create_batch()
    records = nums(5)
    written = after_the_first_chunk(monkeypatch, app[IDEMPOTENCY], api.store.calls)
    code, _ = await api.add_calls(batch, records, headers={"Idempotency-Key": "sync-7"})
    assert code == 500 and len(written[0].call_ids) == 2
    monkeypatch.undo()
    # The two calls it wrote were placed and ended (here: withdrawn) before the partner retried.
    assert await api.store.calls.withdraw(ObjectId(batch), clock.now(), {"at": clock.now(), "event": "x"}, 10) == 2
    code, doc = await api.add_calls(batch, records, headers={"Idempotency-Key": "sync-7"})
    assert code == 409 and doc["data"] == {"header": "Idempotency-Key"}  # its claim still runs
    clock.advance(31)
    code, doc = await api.add_calls(batch, records, headers={"Idempotency-Key": "sync-7"})
    assert code == 200 and doc["data"]["added"] == 5 and set(written[0].call_ids) <= set(doc["data"]["callIds"])
    calls = await api.all_calls(batch)
    assert sorted(c["phoneNumber"] for c in calls) == sorted(r["phoneNumber"] for r in records)  # one call each
    assert sorted(c["callId"] for c in calls) == sorted(doc["data"]["callIds"])


async def test_a_claim_is_renewed_while_its_request_runs(api):
    """A request longer than claim_seconds keeps its key: a second request with it waits (409)."""
    idempotency = Idempotency(api.store.idempotency, SystemClock(), 3600, claim_seconds=0.3)
    started = asyncio.Event()

    async def slow(claim):
        started.set()
        await asyncio.sleep(1.0)  # the request's own work, three claim periods long
        return StoredResponse(200, "{}")

    first = asyncio.ensure_future(idempotency.once("ws", "k", "POST /x", "f", slow))
    await started.wait()
    await asyncio.sleep(0.6)
    with pytest.raises(KeyInUse):
        await idempotency.once("ws", "k", "POST /x", "f", slow)
    assert (await first).code == 200


async def test_a_create_cut_short_by_a_crash_makes_one_batch(api, clock, monkeypatch):
    """Found by tests/test_crash.py: the process died between the batch's insert and storing the answer;
    the retry that took the key over made a second batch, which nobody was ever told of."""
    unanswered(monkeypatch, api.app[IDEMPOTENCY])
    code, _, _ = await send(api, CREATE, batch_body(api), "crm-sync-9")
    assert code == 500 and len(await batch_ids(api)) == 1  # inserted, unanswered
    monkeypatch.undo()
    clock.advance(31)  # past its claim
    code, body, _ = await send(api, CREATE, batch_body(api), "crm-sync-9")
    assert code == 200 and await batch_ids(api) == [json.loads(body)["data"]["batchId"]]


async def test_a_submit_cut_short_by_a_crash_makes_one_batch_and_calls_each_recipient_once(api, clock, monkeypatch):
    """As tests/test_crash.py found for createBatch and addCallsToBatch: the process died after the
    ElevenLabs face's submit had written its batch and calls; the retry that takes its key over finds
    both, though the calls have ended meanwhile."""
    unanswered(monkeypatch, api.app[IDEMPOTENCY])
    body = {"call_name": "Survey", "agent_id": str(api.agent["_id"]), "recipients": recipients(3)}
    code, _, _ = await send(api, SUBMIT, body, "s-9", headers={"xi-api-key": api.key})
    [batch] = await batch_ids(api)
    assert code == 500
    monkeypatch.undo()
    assert await api.store.calls.withdraw(ObjectId(batch), clock.now(), {"at": clock.now(), "event": "x"}, 10) == 3
    clock.advance(31)
    code, answer, _ = await send(api, SUBMIT, body, "s-9", headers={"xi-api-key": api.key})
    assert code == 200 and await batch_ids(api) == [json.loads(answer)["id"]] == [batch]
    assert len(await api.all_calls(batch)) == 3


async def dies_unanswered(api, monkeypatch, path: str, body, key: str, method: str = "POST") -> None:
    """The admin request's work writes, then its process dies before the answer is stored (kill -9):
    its key is held until the claim runs out."""
    unanswered(monkeypatch, api.app[IDEMPOTENCY])
    code, _, _ = await send(api, path, body, key, headers=ADMIN, method=method, raw=b"" if body is None else None)
    assert code == 500
    monkeypatch.undo()


async def test_a_workspace_create_cut_short_by_a_crash_makes_one_workspace(api, clock, monkeypatch):
    """The retry that took over the key of a workspace create whose process died made a second
    workspace (and key); now it finds the first by the claim's id, and its key is the one shown."""
    await dies_unanswered(api, monkeypatch, "/api/admin/workspaces", {"name": "Acme"}, "onboard-9")
    _, listing = await api.get("/api/admin/workspaces", key="admin-secret")
    [dead] = [w["workspaceId"] for w in listing["data"]["workspaces"] if w["name"] == "Acme"]
    clock.advance(31)
    code, body, _ = await send(api, "/api/admin/workspaces", {"name": "Acme"}, "onboard-9", headers=ADMIN)
    assert code == 200
    created = json.loads(body)["data"]
    _, listing = await api.get("/api/admin/workspaces", key="admin-secret")
    assert [w["workspaceId"] for w in listing["data"]["workspaces"] if w["name"] == "Acme"] == [dead]
    assert created["workspaceId"] == dead
    code, _ = await api.get("/api/agents", key=created["apiKey"])
    assert code == 200  # the key shown works


async def test_a_key_create_cut_short_by_a_crash_makes_one_key(api, clock, monkeypatch):
    """The retry made a second key beside the dead request's (never shown, never revocable by anyone
    who knows it); now the retry's key takes its place: one key, the one shown."""
    inserted, insert_key = [], api.store.tenancy.insert_key

    async def noted(key):
        inserted.append(key)
        return await insert_key(key)

    monkeypatch.setattr(api.store.tenancy, "insert_key", noted)
    keys = f"/api/admin/workspaces/{api.workspace_id}/keys"
    await dies_unanswered(api, monkeypatch, keys, None, "second-key-9")
    [dead] = inserted
    assert await api.store.tenancy.key_by_hash(dead["keyHash"]) is not None  # written, unanswered
    clock.advance(31)
    code, body, _ = await send(api, keys, None, "second-key-9", headers=ADMIN, raw=b"")
    assert code == 200
    shown = json.loads(body)["data"]["apiKey"]
    assert await api.store.tenancy.key_by_hash(dead["keyHash"]) is None  # not a second key
    assert (await api.store.tenancy.key_by_hash(hash_key(shown)))["_id"] == dead["_id"]
    code, _ = await api.get("/api/agents", key=shown)
    assert code == 200


async def test_an_agent_create_cut_short_by_a_crash_makes_one_agent(api, clock, monkeypatch):
    """The retry answered 400 "already owned": the dead request's agent owned the number."""
    agents = f"/api/admin/workspaces/{api.workspace_id}/agents"
    agent = {"name": "sales", "callingNumbers": ["+14155550177"], "timezones": ["America/Los_Angeles"]}
    await dies_unanswered(api, monkeypatch, agents, agent, "sales-agent-9")
    clock.advance(31)
    code, body, _ = await send(api, agents, agent, "sales-agent-9", headers=ADMIN)
    assert code == 200, body
    _, mine = await api.get("/api/agents")
    assert [a["name"] for a in mine["data"]["agents"]].count("sales") == 1
    assert json.loads(body)["data"]["agentId"] in [a["agentId"] for a in mine["data"]["agents"]]


async def test_credits_added_by_a_settings_change_cut_short_by_a_crash_are_added_once(api, clock, monkeypatch):
    """The retry that took over the key of an addCredits whose process died added them again."""
    settings = f"/api/admin/workspaces/{api.workspace_id}"
    code, _, _ = await send(api, settings, {"credits": 1000}, method="PATCH", headers=ADMIN)
    assert code == 200
    await dies_unanswered(api, monkeypatch, settings, {"addCredits": 100}, "top-up-9", method="PATCH")
    _, doc = await api.get(settings, key="admin-secret")
    assert doc["data"]["credits"] == 1100  # added, unanswered
    clock.advance(31)
    code, body, _ = await send(api, settings, {"addCredits": 100}, "top-up-9", method="PATCH", headers=ADMIN)
    assert code == 200 and json.loads(body)["data"]["credits"] == 1100
    _, doc = await api.get(settings, key="admin-secret")
    assert doc["data"]["credits"] == 1100
