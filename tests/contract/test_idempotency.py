"""IdempotencyRepo: claim by insert, compare-and-set replacement, the stored answer, release and purge.
Expiry is only ever by the `now` passed to purge: records far in the past stay until purged."""

from __future__ import annotations

import datetime as dt

from tests.contract.conftest import T0, at

UTC = dt.timezone.utc
PAST = dt.datetime(2001, 1, 1, tzinfo=UTC)
FUTURE = dt.datetime(2101, 1, 1, tzinfo=UTC)


def record(rid: str, expires: dt.datetime = FUTURE, state: str = "running", **extra) -> dict:
    return {"_id": rid, "state": state, "claimedUntil": at(600), "expiresAt": expires, **extra}


async def test_insert_once(repos):
    assert await repos.idempotency.insert(record("ws:k1"))
    assert not await repos.idempotency.insert(record("ws:k1", state="done"))
    got = await repos.idempotency.get("ws:k1")
    assert (got["state"], got["claimedUntil"], got["expiresAt"]) == ("running", at(600), FUTURE)
    assert await repos.idempotency.get("ws:other") is None


async def test_replace_if_is_a_compare_and_set(repos):
    await repos.idempotency.insert(record("ws:k", PAST))
    await repos.idempotency.finish("ws:k", 200, {"ok": True})
    fresh = record("ws:k", at(86400), claimedUntil=at(600))
    assert not await repos.idempotency.replace_if("ws:k", {"expiresAt": FUTURE}, fresh)
    assert (await repos.idempotency.get("ws:k"))["state"] == "done"
    assert await repos.idempotency.replace_if("ws:k", {"expiresAt": PAST}, fresh)
    got = await repos.idempotency.get("ws:k")
    assert (got["state"], got["expiresAt"]) == ("running", at(86400))
    assert "code" not in got and "body" not in got  # replaced, not merged
    assert await repos.idempotency.replace_if("ws:k", {"state": "running", "claimedUntil": at(600)},
                                              record("ws:k", at(86400), claimedUntil=at(1200)))
    assert (await repos.idempotency.get("ws:k"))["claimedUntil"] == at(1200)
    assert not await repos.idempotency.replace_if("ws:missing", {}, record("ws:missing"))
    assert await repos.idempotency.get("ws:missing") is None


async def test_finish_stores_the_answer(repos):
    await repos.idempotency.insert(record("ws:k"))
    body = {"data": {"batchId": "b1"}, "list": [1]}
    await repos.idempotency.finish("ws:k", 201, body)
    body["list"].append(2)
    got = await repos.idempotency.get("ws:k")
    assert (got["state"], got["code"], got["body"]) == ("done", 201, {"data": {"batchId": "b1"}, "list": [1]})
    got["body"]["data"]["batchId"] = "changed"
    assert (await repos.idempotency.get("ws:k"))["body"]["data"]["batchId"] == "b1"


async def test_release_deletes_only_a_running_record(repos):
    await repos.idempotency.insert(record("ws:running"))
    await repos.idempotency.insert(record("ws:done"))
    await repos.idempotency.finish("ws:done", 200, {})
    await repos.idempotency.release("ws:running")
    await repos.idempotency.release("ws:done")
    await repos.idempotency.release("ws:never")
    assert await repos.idempotency.get("ws:running") is None
    assert (await repos.idempotency.get("ws:done"))["state"] == "done"
    assert await repos.idempotency.insert(record("ws:running"))  # the key is free again


async def test_purge_follows_the_given_clock_only(repos):
    await repos.idempotency.insert(record("ws:past", PAST))
    await repos.idempotency.insert(record("ws:future", FUTURE))
    await repos.idempotency.insert(record("ws:now", T0))
    assert (await repos.idempotency.get("ws:past"))["expiresAt"] == PAST  # never expired on its own
    assert await repos.idempotency.purge(PAST - dt.timedelta(days=1)) == 0
    assert await repos.idempotency.purge(T0) == 2  # expiresAt <= now
    assert await repos.idempotency.get("ws:past") is None and await repos.idempotency.get("ws:now") is None
    assert await repos.idempotency.get("ws:future") is not None
    assert await repos.idempotency.purge(T0) == 0
    assert await repos.idempotency.purge(dt.datetime(2200, 1, 1, tzinfo=UTC)) == 1
    assert await repos.idempotency.get("ws:future") is None


async def test_purge_sees_a_replaced_expiry(repos):
    await repos.idempotency.insert(record("ws:k", PAST))
    assert await repos.idempotency.replace_if("ws:k", {"expiresAt": PAST}, record("ws:k", FUTURE))
    assert await repos.idempotency.purge(T0) == 0
    assert await repos.idempotency.get("ws:k") is not None
