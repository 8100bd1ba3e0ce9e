"""TenancyRepo: workspaces, API keys, agents and who owns a calling number."""

from __future__ import annotations

import pytest
from bson import ObjectId

from tests.contract.conftest import T0, at


def agent(workspace_id, numbers, created=T0, name="agent") -> dict:
    return {"_id": ObjectId(), "workspaceId": workspace_id, "name": name, "requiredVariables": [],
            "callingNumbers": list(numbers), "timezones": ["America/New_York"], "createdAt": created}


async def test_workspaces_by_creation(repos):
    late = {"_id": ObjectId(), "name": "late", "createdAt": at(60)}
    early = {"_id": ObjectId(), "name": "early", "createdAt": at(0)}
    await repos.tenancy.insert_workspace(late)
    await repos.tenancy.insert_workspace(early)
    assert [w["name"] for w in await repos.tenancy.list_workspaces()] == ["early", "late"]
    got = await repos.tenancy.get_workspace(late["_id"])
    assert got == late
    got["name"] = "changed"
    assert (await repos.tenancy.get_workspace(late["_id"]))["name"] == "late"
    assert await repos.tenancy.get_workspace(ObjectId()) is None


async def test_keys_by_hash_until_revoked(repos):
    ws = ObjectId()
    key = {"_id": ObjectId(), "workspaceId": ws, "keyHash": "h1", "hint": "dk_abc…", "createdAt": T0, "revoked": False}
    await repos.tenancy.insert_key(key)
    got = await repos.tenancy.key_by_hash("h1")
    assert (got["_id"], got["workspaceId"]) == (key["_id"], ws)
    assert await repos.tenancy.key_by_hash("h2") is None
    assert await repos.tenancy.revoke_key("h1")
    assert await repos.tenancy.key_by_hash("h1") is None
    assert not await repos.tenancy.revoke_key("h1")  # already revoked
    assert not await repos.tenancy.revoke_key("nope")


async def test_agents_own_their_numbers(repos):
    ws, other_ws = ObjectId(), ObjectId()
    second = agent(ws, ["+14155550102"], at(60), "second")
    first = agent(ws, ["+14155550100", "+14155550101"], at(0), "first")
    elsewhere = agent(other_ws, ["+14155550200"], at(30), "elsewhere")
    for doc in (second, first, elsewhere):
        assert await repos.tenancy.insert_agent(doc)
    clash = agent(other_ws, ["+14155550999", "+14155550101"], at(90), "clash")
    assert not await repos.tenancy.insert_agent(clash)
    assert await repos.tenancy.get_agent(clash["_id"]) is None
    assert [a["name"] for a in await repos.tenancy.list_agents(ws)] == ["first", "second"]
    assert [a["name"] for a in await repos.tenancy.list_agents(other_ws)] == ["elsewhere"]
    # The clash wrote nothing: its other number is still free.
    assert await repos.tenancy.insert_agent(agent(other_ws, ["+14155550999"], at(91), "free"))
    assert (await repos.tenancy.get_agent(first["_id"]))["name"] == "first"
    assert (await repos.tenancy.get_agent(first["_id"], ws))["name"] == "first"
    assert await repos.tenancy.get_agent(first["_id"], other_ws) is None


async def test_agent_owning_every_number(repos):
    ws = ObjectId()
    one = agent(ws, ["+14155550100", "+14155550101"])
    two = agent(ws, ["+14155550102"], at(1))
    await repos.tenancy.insert_agent(one)
    await repos.tenancy.insert_agent(two)
    assert (await repos.tenancy.agent_owning(ws, ["+14155550101"]))["_id"] == one["_id"]
    assert (await repos.tenancy.agent_owning(ws, ["+14155550100", "+14155550101"]))["_id"] == one["_id"]
    assert await repos.tenancy.agent_owning(ws, ["+14155550100", "+14155550102"]) is None  # two owners
    assert await repos.tenancy.agent_owning(ws, ["+14155550100", "+14155559999"]) is None  # one unowned
    assert await repos.tenancy.agent_owning(ObjectId(), ["+14155550100"]) is None  # another workspace
    got = await repos.tenancy.agent_owning(ws, ["+14155550102"])
    got["callingNumbers"].append("+14155550100")
    assert (await repos.tenancy.get_agent(two["_id"]))["callingNumbers"] == ["+14155550102"]


async def test_a_deleted_agent_is_gone_and_frees_its_numbers(repos):
    from bson import ObjectId
    import datetime as dt

    now = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.timezone.utc)
    workspace = ObjectId()
    agent = {"_id": ObjectId(), "workspaceId": workspace, "name": "a", "requiredVariables": [],
             "callingNumbers": ["+14155550100"], "timezones": [], "createdAt": now}
    assert await repos.tenancy.insert_agent(agent)
    assert await repos.tenancy.delete_agent(agent["_id"])
    assert await repos.tenancy.get_agent(agent["_id"]) is None
    assert await repos.tenancy.list_agents(workspace) == []
    assert not await repos.tenancy.delete_agent(agent["_id"])
    assert await repos.tenancy.insert_agent({**agent, "_id": ObjectId()})  # the number is free again


async def test_workspace_settings_and_credits(repos):
    ws = {"_id": ObjectId(), "name": "acme", "createdAt": T0}
    await repos.tenancy.insert_workspace(ws)
    assert await repos.tenancy.take_credits(ws["_id"], 5) == (True, None)  # no balance: unlimited
    assert await repos.tenancy.add_credits(ws["_id"], 5) is None
    after = await repos.tenancy.update_workspace(ws["_id"], {"credits": 10, "normalizationAllowed": True})
    assert (after["credits"], after["normalizationAllowed"]) == (10, True)
    assert await repos.tenancy.take_credits(ws["_id"], 4) == (True, 6)
    assert await repos.tenancy.take_credits(ws["_id"], 7) == (False, 6)
    assert (await repos.tenancy.add_credits(ws["_id"], 4))["credits"] == 10
    assert await repos.tenancy.update_workspace(ObjectId(), {"credits": 1}) is None


async def test_concurrent_reservations_never_overdraw(repos):
    import asyncio

    ws = {"_id": ObjectId(), "name": "acme", "createdAt": T0, "credits": 10}
    await repos.tenancy.insert_workspace(ws)
    results = await asyncio.gather(*(repos.tenancy.take_credits(ws["_id"], 3) for _ in range(6)))
    assert sum(ok for ok, _ in results) == 3  # 3 x 3 of 10
    assert (await repos.tenancy.get_workspace(ws["_id"]))["credits"] == 1


async def test_a_reservation_under_a_ref_is_taken_once_until_settled(repos):
    ws = {"_id": ObjectId(), "name": "acme", "createdAt": T0, "credits": 10}
    await repos.tenancy.insert_workspace(ws)
    take, settle = repos.tenancy.take_credits, repos.tenancy.settle_credits
    assert await take(ws["_id"], 4, "ws:key:k.1", "a") == (True, 6)
    assert await take(ws["_id"], 4, "ws:key:k.1", "b") == (True, 6)  # noted: the retry takes nothing
    assert await take(ws["_id"], 7, "ws:key:k.2", "c") == (False, 6)
    await settle(ws["_id"], "ws:key:k.1", refund_by="b")  # b reserved nothing: nothing given back
    assert (await repos.tenancy.get_workspace(ws["_id"]))["credits"] == 6
    await settle(ws["_id"], "ws:key:k.1", refund_by="a")
    assert (await repos.tenancy.get_workspace(ws["_id"]))["credits"] == 10
    assert await take(ws["_id"], 4, "ws:key:k.1", "d") == (True, 6)
    await settle(ws["_id"], "ws:key:k.1")  # spent: forgotten, not given back
    await settle(ws["_id"], "ws:key:k.1", refund_by="d")
    assert await take(ws["_id"], 4, "ws:key:k.1", "e") == (True, 2)  # a new reservation


async def test_a_reservation_under_a_ref_covers_a_larger_retry_by_the_difference_and_settles_to_what_was_spent(repos):
    """The retry under a noted ref with more contacts takes the difference (or is refused); settling with
    `spent` (the intake written under the ref) gives back what the note holds beyond it."""
    ws = {"_id": ObjectId(), "name": "acme", "createdAt": T0, "credits": 10}
    await repos.tenancy.insert_workspace(ws)
    take, settle = repos.tenancy.take_credits, repos.tenancy.settle_credits
    assert await take(ws["_id"], 2, "ws:key:k.1", "a") == (True, 8)
    assert await take(ws["_id"], 5, "ws:key:k.1", "b") == (True, 5)  # three more
    assert await take(ws["_id"], 20, "ws:key:k.1", "c") == (False, 5)  # fifteen more: not there
    assert await take(ws["_id"], 1, "ws:key:k.1", "d") == (True, 5)  # covered
    await settle(ws["_id"], "ws:key:k.1", spent=1, made_by="z")  # another's reservation: left alone
    assert (await repos.tenancy.get_workspace(ws["_id"]))["credits"] == 5
    await settle(ws["_id"], "ws:key:k.1", spent=1, made_by="a")  # the intake written accepted one: four back
    await settle(ws["_id"], "ws:key:k.1", spent=1, made_by="a")  # once
    workspace = await repos.tenancy.get_workspace(ws["_id"])
    assert workspace["credits"] == 9 and not workspace.get("reservations")


async def test_a_workspace_inserted_again_under_its_id_is_the_one_there(repos):
    """The retry of a request whose process died after writing the workspace (the same id, its claim's)."""
    first = {"_id": ObjectId(), "name": "acme", "createdAt": at(0)}
    assert await repos.tenancy.insert_workspace(first) == first
    again = await repos.tenancy.insert_workspace({**first, "createdAt": at(31)})
    assert again == first
    assert [w["_id"] for w in await repos.tenancy.list_workspaces()] == [first["_id"]]


async def test_a_key_inserted_again_under_its_id_replaces_the_one_never_shown(repos):
    ws = ObjectId()
    dead = {"_id": ObjectId(), "workspaceId": ws, "keyHash": "h1", "hint": "dk_abc…", "createdAt": T0, "revoked": False}
    await repos.tenancy.insert_key(dead)
    await repos.tenancy.insert_key({**dead, "keyHash": "h2", "hint": "dk_def…", "createdAt": at(31)})
    assert await repos.tenancy.key_by_hash("h1") is None
    got = await repos.tenancy.key_by_hash("h2")
    assert (got["_id"], got["workspaceId"], got["hint"]) == (dead["_id"], ws, "dk_def…")
    with pytest.raises(ValueError):  # another workspace's key is never taken
        await repos.tenancy.insert_key({**dead, "workspaceId": ObjectId(), "keyHash": "h3"})
    with pytest.raises(ValueError):  # nor another key's hash
        await repos.tenancy.insert_key({**dead, "_id": ObjectId(), "keyHash": "h2"})
    assert (await repos.tenancy.key_by_hash("h2"))["_id"] == dead["_id"]
    assert await repos.tenancy.key_by_hash("h3") is None


async def test_an_agent_inserted_again_under_its_id_is_done_not_a_clash(repos):
    """The retry of a request whose process died after writing the agent: its numbers are its own."""
    ws = ObjectId()
    first = agent(ws, ["+14155550300"], at(0), "sales")
    assert await repos.tenancy.insert_agent(first)
    assert await repos.tenancy.insert_agent({**first, "createdAt": at(31)})
    assert [(a["_id"], a["createdAt"]) for a in await repos.tenancy.list_agents(ws)] == [(first["_id"], at(0))]
    assert not await repos.tenancy.insert_agent(agent(ws, ["+14155550300"], at(32), "other"))  # still a clash
    with pytest.raises(ValueError):  # another workspace's agent is never taken for this one's
        await repos.tenancy.insert_agent({**first, "workspaceId": ObjectId()})


async def test_credits_added_under_a_ref_are_added_once(repos):
    """The retry of a request whose process died after adding (the same ref, its claim's)."""
    ws = {"_id": ObjectId(), "name": "acme", "createdAt": T0, "credits": 10}
    await repos.tenancy.insert_workspace(ws)
    add = repos.tenancy.add_credits
    assert (await add(ws["_id"], 5, "claim-1"))["credits"] == 15
    assert (await add(ws["_id"], 5, "claim-1"))["credits"] == 15  # noted: nothing added again
    assert (await add(ws["_id"], -15, "claim-2"))["credits"] == 0
    assert (await add(ws["_id"], -15, "claim-2"))["credits"] == 0  # nor taken again
    assert await add(ws["_id"], -1, "claim-3") is None  # too small a balance: nothing noted
    assert (await add(ws["_id"], 3, "claim-3"))["credits"] == 3
    assert (await add(ws["_id"], 2))["credits"] == 5  # without a ref: every time
    assert (await add(ws["_id"], 2))["credits"] == 7
    assert await add(ObjectId(), 1, "claim-1") is None


async def test_a_workspace_keeps_the_refs_of_its_last_credit_changes(repos):
    from dialer.ports import CREDIT_REFS

    ws = {"_id": ObjectId(), "name": "acme", "createdAt": T0, "credits": 0}
    await repos.tenancy.insert_workspace(ws)
    for n in range(CREDIT_REFS + 1):
        await repos.tenancy.add_credits(ws["_id"], 1, f"claim-{n}")
    doc = await repos.tenancy.get_workspace(ws["_id"])
    assert doc["credits"] == CREDIT_REFS + 1 and len(doc["creditRefs"]) == CREDIT_REFS
    assert (await repos.tenancy.add_credits(ws["_id"], 1, f"claim-{CREDIT_REFS}"))["credits"] == CREDIT_REFS + 1
    assert (await repos.tenancy.add_credits(ws["_id"], 1, "claim-0"))["credits"] == CREDIT_REFS + 2  # forgotten


async def test_reservations_noted_under_a_ref_are_listed_until_settled(repos):
    ws = {"_id": ObjectId(), "name": "acme", "createdAt": T0, "credits": 10}
    other = {"_id": ObjectId(), "name": "other", "createdAt": T0, "credits": 10}
    for w in (ws, other):
        await repos.tenancy.insert_workspace(w)
    assert await repos.tenancy.reservations() == []
    await repos.tenancy.take_credits(ws["_id"], 3, "ws:key:a", "req-1")
    await repos.tenancy.take_credits(other["_id"], 2, "other:key:b", "req-2")
    await repos.tenancy.take_credits(ws["_id"], 1)  # no ref: nothing noted
    got = sorted(await repos.tenancy.reservations(), key=lambda r: r.ref)
    assert [(r.workspace_id, r.ref, r.amount, r.by) for r in got] == [
        (other["_id"], "other:key:b", 2, "req-2"), (ws["_id"], "ws:key:a", 3, "req-1")]
    await repos.tenancy.settle_credits(ws["_id"], "ws:key:a", refund_by="req-1")
    assert [r.ref for r in await repos.tenancy.reservations()] == ["other:key:b"]
    assert (await repos.tenancy.get_workspace(ws["_id"]))["credits"] == 9
