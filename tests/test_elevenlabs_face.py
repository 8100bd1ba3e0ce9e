"""The ElevenLabs batch-calling face, driven by the vendor's own Python SDK pointed at our server."""

from __future__ import annotations

import json

import pytest
from elevenlabs import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError

from tests.conftest import make_api
from tests.dispatch_harness import Harness


def sdk(api, key: str | None = None) -> AsyncElevenLabs:
    return AsyncElevenLabs(api_key=key or api.key, base_url=str(api.client.make_url("")).rstrip("/"))


def recipients(n: int, area: str = "212") -> list[dict]:
    return [{"id": f"r-{i}", "phone_number": f"+1{area}555{i:04d}",
             "conversation_initiation_client_data": {"dynamic_variables": {"name": f"Zoë {i}", "n": i},
                                                     "user_id": f"u{i}"}} for i in range(n)]


async def test_submit_get_list_with_the_sdk(api, clock):
    client = sdk(api)
    created = await client.conversational_ai.batch_calls.create(
        call_name="Survey", agent_id=str(api.agent["_id"]), recipients=recipients(3),
        telephony_call_config={"ringing_timeout_secs": 25}, target_concurrency_limit=2, timezone="America/Chicago")
    assert created.name == "Survey" and created.agent_id == str(api.agent["_id"]) and created.agent_name == "agent"
    assert created.status == "in_progress" and created.total_calls_scheduled == 3
    assert created.total_calls_dispatched == 0 and created.total_calls_finished == 0
    assert created.target_concurrency_limit == 2 and created.telephony_call_config.ringing_timeout_secs == 25
    assert created.phone_number_id == api.agent["callingNumbers"][0] and created.phone_provider == "twilio"
    assert created.timezone == "America/Chicago" and created.retry_count == 0
    assert created.created_at_unix == int(clock.now().timestamp())
    got = await client.conversational_ai.batch_calls.get(created.id)
    assert [r.id for r in got.recipients] == ["r-0", "r-1", "r-2"]
    assert {r.status for r in got.recipients} == {"pending"} and got.recipients[0].phone_number == "+12125550000"
    assert got.recipients[1].conversation_initiation_client_data.dynamic_variables == {"name": "Zoë 1", "n": 1}
    # The native API sees the same batch: the dynamic variables are the calls' variables.
    calls = await api.all_calls(created.id)
    assert calls[0]["variables"] == {"name": "Zoë 0", "n": 0} and len(calls) == 3
    second = await client.conversational_ai.batch_calls.create(call_name="Two", agent_id=str(api.agent["_id"]),
                                                               recipients=recipients(1, "305"))
    page = await client.conversational_ai.batch_calls.list(limit=1)
    assert [b.id for b in page.batch_calls] == [second.id] and page.has_more is True
    rest = await client.conversational_ai.batch_calls.list(limit=1, last_doc=page.next_doc)
    assert [b.id for b in rest.batch_calls] == [created.id] and rest.has_more is False
    mine = await client.conversational_ai.batch_calls.list(agent_id=str(api.agent["_id"]))
    assert len(mine.batch_calls) == 2


async def test_recipient_statuses_follow_the_calls_and_cancel_retry_delete(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"busy": 1.0})
    client = sdk(api)
    batch = await client.conversational_ai.batch_calls.create(
        call_name="Busy", agent_id=str(api.agent["_id"]), recipients=recipients(4), target_concurrency_limit=4)
    await h.run_until(lambda: _status(client, batch.id, "completed"))
    done = await client.conversational_ai.batch_calls.get(batch.id)
    assert {r.status for r in done.recipients} == {"failed"} and done.total_calls_finished == 4
    assert done.total_calls_dispatched == 4
    retried = await client.conversational_ai.batch_calls.retry(batch.id)
    assert retried.status == "in_progress" and retried.retry_count == 1
    got = await client.conversational_ai.batch_calls.get(batch.id)
    assert {r.status for r in got.recipients} == {"pending"}
    cancelled = await client.conversational_ai.batch_calls.cancel(batch.id)
    assert cancelled.status == "cancelled"
    got = await client.conversational_ai.batch_calls.get(batch.id)
    assert {r.status for r in got.recipients} == {"cancelled"}
    await client.conversational_ai.batch_calls.delete(batch.id)
    with pytest.raises(ApiError) as err:
        await client.conversational_ai.batch_calls.get(batch.id)
    assert err.value.status_code == 404


async def _status(client, batch_id, status):
    return (await client.conversational_ai.batch_calls.get(batch_id)).status == status


async def test_errors_in_the_vendors_shapes(api, client, app):
    other = await make_api(client, app)
    theirs = await sdk(other).conversational_ai.batch_calls.create(
        call_name="x", agent_id=str(other.agent["_id"]), recipients=recipients(1))
    mine = sdk(api)
    with pytest.raises(ApiError) as err:
        await mine.conversational_ai.batch_calls.get(theirs.id)  # another workspace's: as unknown as none
    assert err.value.status_code == 404
    for batch_id in ("64e5f12345abcdef98765432", "not-an-id"):
        with pytest.raises(ApiError) as err:
            await mine.conversational_ai.batch_calls.cancel(batch_id)
        assert err.value.status_code == 404
    with pytest.raises(ApiError) as err:
        await mine.conversational_ai.batch_calls.create(call_name="x", agent_id=str(other.agent["_id"]),
                                                         recipients=recipients(1))
    assert err.value.status_code == 404
    with pytest.raises(ApiError) as err:
        await sdk(api, key="sk_wrong").conversational_ai.batch_calls.list()
    assert err.value.status_code == 401
    with pytest.raises(ApiError) as err:  # a recipient without a phone number
        await mine.conversational_ai.batch_calls.create(call_name="x", agent_id=str(api.agent["_id"]),
                                                         recipients=[{"phone_number": "+12125550100"}, {"id": "a"}])
    assert err.value.status_code == 422
    assert [d["loc"] for d in err.value.body["detail"]] == [["body", "recipients", 1, "phone_number"]]
    with pytest.raises(ApiError) as err:  # an impossible one
        await mine.conversational_ai.batch_calls.create(call_name="x", agent_id=str(api.agent["_id"]),
                                                         recipients=[{"phone_number": "+12125550100"},
                                                                     {"phone_number": "12"}])
    assert err.value.status_code == 422
    [detail] = err.value.body["detail"]
    assert detail["loc"] == ["body", "recipients", 1, "phone_number"] and "impossible" in detail["msg"]
    code, doc = await api.get("/api/call/batches?limit=100")
    assert code == 200 and doc["data"]["batches"] == []  # nothing half-written: no batch at all


@pytest.mark.parametrize("body, loc", [
    ({"call_name": "x", "recipients": [{"phone_number": "+12125550100"}]}, ["body", "agent_id"]),
    ({"call_name": "x", "agent_id": "A", "recipients": []}, ["body", "recipients"]),
    ({"call_name": "x", "agent_id": "A", "recipients": [{"phone_number": "+12125550100"}], "surprise": 1},
     ["body", "surprise"]),
    ({"call_name": "x", "agent_id": "A", "recipients": [{"phone_number": "+12125550100", "name": "x"}]},
     ["body", "recipients", 0, "name"]),
    ({"call_name": "x", "agent_id": "A", "recipients": [{"phone_number": "+12125550100"}],
      "telephony_call_config": {"ringing_timeout_secs": "long"}}, ["body", "telephony_call_config", "ringing_timeout_secs"]),
    ({"call_name": "x", "agent_id": "A", "recipients": [{"phone_number": "+12125550100"}],
      "target_concurrency_limit": 0}, ["body", "target_concurrency_limit"]),
    ({"call_name": "x", "agent_id": "A", "recipients": [{"phone_number": "+12125550100"}], "timezone": "Mars/Base"},
     ["body", "timezone"]),
])
async def test_invalid_submits_are_422_with_their_location(api, body, loc):
    body = {**body, **({"agent_id": str(api.agent["_id"])} if body.get("agent_id") == "A" else {})}
    resp = await api.client.post("/v1/convai/batch-calling/submit", json=body, headers={"xi-api-key": api.key})
    doc = await resp.json()
    assert resp.status == 422 and loc in [d["loc"] for d in doc["detail"]]
    assert all({"loc", "msg", "type"} <= set(d) for d in doc["detail"])


async def test_every_field_the_sdk_can_send_is_accepted(api):
    batch = await sdk(api).conversational_ai.batch_calls.create(
        call_name="All", agent_id=str(api.agent["_id"]), recipients=[
            {"id": "x1", "phone_number": "+1 (212) 555-0100", "whatsapp_user_id": "w1",
             "conversation_initiation_client_data": {"dynamic_variables": {"a": 1}, "user_id": "u",
                                                     "source_info": {"source": "python_sdk"}}}],
        scheduled_time_unix=2_000_000_000, agent_phone_number_id=api.agent["callingNumbers"][0],
        whatsapp_params={"whatsapp_phone_number_id": "wp"}, timezone="Europe/Paris", branch_id="b1",
        environment="production", telephony_call_config={"ringing_timeout_secs": 30},
        target_concurrency_limit=3)
    assert batch.status == "pending" and batch.scheduled_time_unix == 2_000_000_000
    assert batch.branch_id == "b1" and batch.environment == "production"
    got = await sdk(api).conversational_ai.batch_calls.get(batch.id)
    [recipient] = got.recipients
    assert recipient.id == "x1" and recipient.phone_number == "+12125550100" and recipient.whatsapp_user_id == "w1"


async def test_ten_thousand_recipients_in_one_submit(api):
    batch = await sdk(api).conversational_ai.batch_calls.create(
        call_name="Big", agent_id=str(api.agent["_id"]),
        recipients=[{"phone_number": f"+1212{i:07d}"} for i in range(2_000_000, 2_010_000)])
    assert batch.total_calls_scheduled == 10_000 and batch.status == "in_progress"


@pytest.mark.parametrize("recipient, loc", [
    ({"phone_number": "+12125550100", "whatsapp_user_id": {"x": 1}}, ["body", "recipients", 0, "whatsapp_user_id"]),
    ({"phone_number": "+12125550100", "conversation_initiation_client_data": {"dynamic_variables": {"timezone": "x"}}},
     ["body", "recipients", 0, "conversation_initiation_client_data", "dynamic_variables", "timezone"]),
])
async def test_recipient_fields_are_typed_and_reserved_names_refused(api, recipient, loc):
    body = {"call_name": "x", "agent_id": str(api.agent["_id"]), "recipients": [recipient]}
    resp = await api.client.post("/v1/convai/batch-calling/submit", json=body, headers={"xi-api-key": api.key})
    assert resp.status == 422 and loc in [d["loc"] for d in (await resp.json())["detail"]]


async def test_big_integers_in_dynamic_variables_are_refused_not_rounded(api):
    raw = (b'{"call_name": "x", "agent_id": "%s", "recipients": [{"phone_number": "+12125550100", '
           b'"conversation_initiation_client_data": {"dynamic_variables": {"n": %d}}}]}') % (
        str(api.agent["_id"]).encode(), 2 ** 80)
    resp = await api.client.post("/v1/convai/batch-calling/submit", data=raw,
                                 headers={"xi-api-key": api.key, "Content-Type": "application/json"})
    doc = await resp.json()
    assert resp.status == 422 and "64 bits" in doc["detail"][0]["msg"]


async def _batches(api) -> list:
    code, doc = await api.get("/api/call/batches?limit=100")
    assert code == 200
    return doc["data"]["batches"]


async def test_a_number_repeated_after_normalisation_refuses_the_whole_submit(api):
    """Not the last recipient winning in silence: each repeat is named, with the recipient it repeats."""
    def recipient(rid: str, phone: str) -> dict:
        return {"id": rid, "phone_number": phone,
                "conversation_initiation_client_data": {"dynamic_variables": {"v": rid}}}

    client = sdk(api)
    with pytest.raises(ApiError) as err:
        await client.conversational_ai.batch_calls.create(
            call_name="Dupes", agent_id=str(api.agent["_id"]),
            recipients=[recipient("a", "+12125551002"), recipient("b", "1 212 555 1002"),
                        recipient("c", "+12125551003"), recipient("d", "(212) 555-1002"),
                        recipient("e", "212.555.1003")])
    assert err.value.status_code == 422
    assert err.value.body["detail"] == [
        {"loc": ["body", "recipients", 1, "phone_number"], "msg": "duplicate phone number: the same as recipients[0]",
         "type": "value_error"},
        {"loc": ["body", "recipients", 3, "phone_number"], "msg": "duplicate phone number: the same as recipients[0]",
         "type": "value_error"},
        {"loc": ["body", "recipients", 4, "phone_number"], "msg": "duplicate phone number: the same as recipients[2]",
         "type": "value_error"}]
    assert await _batches(api) == []  # nothing created
    # Two extensions behind one number are two people, as for the native API.
    batch = await client.conversational_ai.batch_calls.create(
        call_name="Desks", agent_id=str(api.agent["_id"]),
        recipients=[recipient("a", "+12125551002 ext 21"), recipient("b", "+12125551002 ext 22")])
    assert batch.total_calls_scheduled == 2


@pytest.mark.parametrize("field, value", [
    ("call_name", "x" * 3_000_000),
    ("call_name", "x" * 201),  # the native API's cap on a batch's name
    ("call_name", "bell\u0007"),  # and its rule: no control characters
    ("scheduled_time_unix", 8_204_889_600),  # 2230: the native API takes 2000 to 2099
    ("scheduled_time_unix", 4_102_444_801),  # 2100-01-01T00:00:01Z
    ("scheduled_time_unix", 946_684_799),  # 1999-12-31T23:59:59Z
])
async def test_values_the_native_api_refuses_are_refused_here(api, field, value):
    body = {"call_name": "x", "agent_id": str(api.agent["_id"]), "recipients": [{"phone_number": "+12125550100"}],
            field: value}
    resp = await api.client.post("/v1/convai/batch-calling/submit", json=body, headers={"xi-api-key": api.key})
    doc = await resp.json()
    assert resp.status == 422 and [d["loc"] for d in doc["detail"]] == [["body", field]]
    assert await _batches(api) == []


async def test_the_native_bounds_themselves_are_accepted(api):
    batch = await sdk(api).conversational_ai.batch_calls.create(
        call_name="n" * 200, agent_id=str(api.agent["_id"]), recipients=[{"phone_number": "+12125550100"}],
        scheduled_time_unix=4_102_444_800)  # 2100-01-01T00:00:00Z, the native API's latest
    assert batch.name == "n" * 200 and batch.scheduled_time_unix == 4_102_444_800


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"d": value}
    return value


VARIABLES = ["body", "recipients", 1, "conversation_initiation_client_data", "dynamic_variables"]


@pytest.mark.parametrize("variables, says", [
    ({"account_id": "A2", "$x": 1}, "may not start with '$'"),
    ({"account_id": "A2", "a.b": 1}, "contain '.'"),
    ({"account_id": "A2", "deep": _nested(40)}, "nested more than"),
    ({"account_id": "A2", "n": 2 ** 80}, "64 bits"),
    ({"name": "Bo"}, "missing required variables: account_id"),  # the agent's required variables
])
async def test_a_refused_variable_is_located_at_the_variables_not_the_number(api, client, app, variables, says):
    agent = await make_api(client, app, {"name": "agent", "requiredVariables": ["account_id"],
                                         "callingNumbers": ["+14155550199"], "timezones": ["America/New_York"]})
    good = {"phone_number": "+12125550100",
            "conversation_initiation_client_data": {"dynamic_variables": {"account_id": "A1"}}}
    bad = {"phone_number": "+12125550101", "conversation_initiation_client_data": {"dynamic_variables": variables}}
    # json, not orjson: a 2 ** 80 in the body, as a client in another language may send it
    raw = json.dumps({"call_name": "x", "agent_id": str(agent.agent["_id"]), "recipients": [good, bad]})
    resp = await agent.client.post("/v1/convai/batch-calling/submit", data=raw,
                                   headers={"xi-api-key": agent.key, "Content-Type": "application/json"})
    doc = await resp.json()
    assert resp.status == 422, doc
    [detail] = doc["detail"]
    assert detail["loc"] == VARIABLES and says in detail["msg"] and detail["type"] == "value_error"
    assert await _batches(agent) == []
