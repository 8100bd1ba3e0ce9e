"""IntakeRepo: an enrollment written once (a second insert hands back the first), leases, the pending
ones to resume, done ones kept for replays until purged by the `now` given."""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

from tests.contract.conftest import T0, at

FUTURE = dt.datetime(2101, 1, 1, tzinfo=dt.timezone.utc)


def intake(iid: str, expires=FUTURE, created=T0) -> dict:
    return {"_id": iid, "workspaceId": ObjectId(), "publicId": "u-" + iid, "batch": {"name": "b"},
            "calls": [{"e164": "+12125550101"}], "answer": '{"batchId":"u"}', "credits": 0, "state": "pending",
            "createdAt": created, "expiresAt": expires}


async def test_insert_once_and_hand_back_the_first(repos):
    assert await repos.intakes.insert(intake("ws:key:k1")) is None
    again = intake("ws:key:k1")
    again["answer"] = "other"
    existing = await repos.intakes.insert(again)
    assert existing["answer"] == '{"batchId":"u"}'
    assert (await repos.intakes.get("ws:key:k1"))["calls"] == [{"e164": "+12125550101"}]
    assert await repos.intakes.get("ws:key:nope") is None


async def test_leases_and_unfinished(repos):
    await repos.intakes.insert(intake("a", created=at(0)))
    await repos.intakes.insert(intake("b", created=at(1)))
    assert await repos.intakes.unfinished(at(2), 10) == ["a", "b"]
    taken = await repos.intakes.take("a", "api-1", at(60), at(2))
    assert taken["takenBy"] == "api-1"
    assert await repos.intakes.take("a", "api-2", at(70), at(3)) is None  # leased
    assert await repos.intakes.unfinished(at(3), 10) == ["b"]
    assert await repos.intakes.unfinished(at(61), 10) == ["a", "b"]  # the lease passed: resumable
    assert (await repos.intakes.take("a", "api-2", at(120), at(61)))["takenBy"] == "api-2"
    await repos.intakes.finish("a", at(62))
    assert await repos.intakes.take("a", "api-3", at(200), at(500)) is None  # done
    done = await repos.intakes.get("a")
    assert (done["state"], "calls" in done, done["answer"]) == ("done", False, '{"batchId":"u"}')
    assert await repos.intakes.unfinished(at(500), 10) == ["b"]


async def test_expiry_follows_the_given_clock(repos):
    await repos.intakes.insert(intake("old", expires=at(100)))
    await repos.intakes.insert(intake("pending", expires=at(100)))
    await repos.intakes.finish("old", at(10))
    assert not await repos.intakes.remove_expired("old", at(99))
    assert await repos.intakes.purge(at(99)) == 0
    assert await repos.intakes.remove_expired("old", at(100))
    assert await repos.intakes.get("old") is None
    await repos.intakes.insert(intake("old2", expires=at(100)))
    await repos.intakes.finish("old2", at(10))
    assert await repos.intakes.purge(FUTURE) == 1  # years ahead: done ones go, pending ones never
    assert await repos.intakes.get("pending") is not None


async def test_credits_are_settled_once_on_the_reservation_named_first(repos):
    assert await repos.intakes.claim_settlement("ws:key:none", "r1") == (False, None)
    await repos.intakes.insert(intake("ws:key:s1"))
    assert await repos.intakes.claim_settlement("ws:key:s1", "r1") == (True, "r1")
    assert await repos.intakes.claim_settlement("ws:key:s1", "r2") == (False, "r1")
    await repos.intakes.finish("ws:key:s1", at(5))
    done = await repos.intakes.get("ws:key:s1")
    assert done["state"] == "done" and done["creditsSettled"] and done["creditsSettledBy"] == "r1"
