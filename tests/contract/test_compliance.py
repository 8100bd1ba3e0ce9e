"""CapLedger: attempts per number per workspace over a rolling window, reserved atomically, released by token."""

from __future__ import annotations

import asyncio
import datetime as dt

from bson import ObjectId

from dialer.ports import CapRequest
from tests.contract.conftest import T0, at

DAY = dt.timedelta(hours=24)
NUMBER = "+13055550100"


def req(ws, limit, number=NUMBER):
    return CapRequest(ws, number, ObjectId(), limit)


async def test_counts_up_to_the_limit_then_says_when_it_allows_again(repos):
    ws = ObjectId()
    first = [req(ws, 3), req(ws, 3)]
    assert await repos.caps.reserve(first, "t1", at(0), DAY) == {}
    third, fourth = req(ws, 3), req(ws, 3)
    refused = await repos.caps.reserve([third, fourth], "t2", at(60), DAY)
    assert refused == {fourth.call_id: at(0) + DAY}  # the requests of one step count each other
    assert await repos.caps.count(ws, NUMBER, at(0) - DAY) == 3
    # Once the two oldest leave the window, two more.
    assert await repos.caps.reserve([req(ws, 3), req(ws, 3)], "t3", at(0) + DAY + dt.timedelta(seconds=1), DAY) == {}
    refused = await repos.caps.reserve([late := req(ws, 3)], "t4", at(0) + DAY + dt.timedelta(seconds=2), DAY)
    assert refused == {late.call_id: at(60) + DAY}


async def test_numbers_and_workspaces_are_counted_apart_and_unlimited_requests_are_counted(repos):
    ws, other = ObjectId(), ObjectId()
    assert await repos.caps.reserve([req(ws, None), req(ws, None)], "t", T0, DAY) == {}
    assert await repos.caps.reserve([r := req(ws, 2)], "t", at(1), DAY) == {r.call_id: T0 + DAY}
    assert await repos.caps.reserve([req(other, 1), req(ws, 1, "+14055550100")], "t", at(1), DAY) == {}


async def test_release_gives_back_only_the_tokens_own_entries(repos):
    ws = ObjectId()
    a, b = req(ws, 2), req(ws, 2)
    await repos.caps.reserve([a], "mine", T0, DAY)
    await repos.caps.reserve([b], "theirs", T0, DAY)
    await repos.caps.release([a.call_id, b.call_id], "mine")
    await repos.caps.release([a.call_id], "mine")  # idempotent
    assert await repos.caps.count(ws, NUMBER, T0 - DAY) == 1
    assert await repos.caps.reserve([req(ws, 2)], "next", at(1), DAY) == {}


async def test_racing_reservations_never_pass_the_cap(repos):
    ws = ObjectId()
    requests = [[req(ws, 3)] for _ in range(8)]
    results = await asyncio.gather(*(repos.caps.reserve(r, f"t{i}", at(i), DAY) for i, r in enumerate(requests)))
    granted = sum(1 for r, refused in zip(requests, results) if r[0].call_id not in refused)
    assert granted == 3
    assert await repos.caps.count(ws, NUMBER, T0 - DAY) == 3


async def test_a_deferral_may_carry_its_rule_into_the_history(repos, batch):
    from tests.contract.conftest import enqueue, planned

    a, b = await enqueue(repos, batch, planned("+13055550100"), planned("+13055550101", index=1))
    entry = {"at": T0, "event": "deferred", "rule": "us-states/FL hours 08:00-20:00"}
    await repos.calls.claim([], [(a, at(3600), entry), (b, at(60))], [], T0)
    first, second = await repos.calls.get(a), await repos.calls.get(b)
    assert first["nextAttemptAt"] == at(3600) and first["history"][-1] == entry
    assert second["nextAttemptAt"] == at(60) and not any(e.get("rule") for e in second.get("history", []))


async def test_suppress_ends_a_queued_call_skipped_and_counts_it(repos, batch):
    from tests.contract.conftest import claim, enqueue, planned

    a, b = await enqueue(repos, batch, planned("+13055550100"), planned("+13055550101", index=1))
    entry = {"at": T0, "event": "suppressed", "rule": "us-states/FL hours 08:00-20:00"}
    assert await repos.calls.suppress_queued(a, at(1), entry)
    assert not await repos.calls.suppress_queued(a, at(2), entry)  # no longer queued
    assert await claim(repos, b)
    assert not await repos.calls.suppress_queued(b, at(2), entry)  # in flight: not withdrawn
    doc = await repos.calls.get(a)
    assert (doc["status"], doc["outcome"]) == ("skipped", "suppressed")
    assert {k: doc["history"][-1][k] for k in ("event", "rule")} == {"event": "suppressed", "rule": entry["rule"]}
    tallies = {(t.status, t.outcome): t.calls for t in await repos.calls.tallies(batch["_id"])}
    assert tallies[("skipped", "suppressed")] == 1
    assert not await repos.calls.has_waiting(batch["_id"])


async def test_purge_drops_what_every_window_has_left(repos):
    ws = ObjectId()
    await repos.caps.reserve([req(ws, None), req(ws, None, "+14055550100")], "t", T0, DAY)
    await repos.caps.reserve([req(ws, None)], "t", at(3600), DAY)
    assert await repos.caps.purge(at(60)) >= 1  # SQLite counts entries, MongoDB numbers
    assert await repos.caps.count(ws, NUMBER, T0 - DAY) == 1
    assert await repos.caps.count(ws, "+14055550100", T0 - DAY) == 0
    assert await repos.caps.reserve([req(ws, 1, "+14055550100")], "t", at(7200), DAY) == {}  # nothing left
    assert await repos.caps.reserve([req(ws, 1)], "t", at(7200), DAY) != {}  # the younger one still counts
