"""CallRepo's contact-chaining methods: planned calls written once under their own ids, held calls, a
group read back, activation as a compare-and-set, skipping, the verdict, and the tallies they keep."""

from __future__ import annotations

from bson import ObjectId

from dialer.ports import Finish
from tests.contract.conftest import T0, at, claim, planned


def chained(e164: str, key: str, seq: int, *, policy: str = "untilSuccess", suffix: str = "", earliest=T0):
    call = planned(e164, earliest, index=seq)
    call.call_id = ObjectId()
    call.held = seq > 0
    call.group = {"key": key, "seq": seq, "policy": policy}
    call.key_suffix = suffix
    return call


def counts(tallies) -> dict:
    return {t.status: t.calls for t in tallies}


async def test_insert_new_writes_each_planned_call_once(repos, batch):
    calls = [chained("+12125550101", "acc=1", 0), chained("+12125550102", "acc=1", 1),
             chained("+12125550103", "acc=2", 0)]
    assert await repos.calls.insert_new(batch, calls, T0) == 3
    assert await repos.calls.insert_new(batch, calls, at(5)) == 0  # a resumed intake: nothing twice
    got = await repos.calls.get(calls[1].call_id)
    assert (got["status"], got["group"], got["phoneNumber"]) == ("held", calls[1].group, "+12125550102")
    assert counts(await repos.calls.tallies(batch["_id"])) == {"queued": 2, "held": 1}
    due = await repos.calls.due(batch["_id"], at(1), 10)
    assert {d["_id"] for d in due} == {calls[0].call_id, calls[2].call_id}  # held calls are never due
    assert await repos.calls.has_waiting(batch["_id"])


async def test_duplicates_of_a_callee_wait_under_their_own_key(repos, batch):
    first = chained("+12125550101", "callee=+12125550101;", 0, policy="each")
    second = chained("+12125550101", "callee=+12125550101;", 1, policy="each", suffix="#1")
    assert await repos.calls.insert_new(batch, [first, second], T0) == 2
    stranger = chained("+12125550101", "other", 0)  # the callee already waits in this batch
    assert await repos.calls.insert_new(batch, [stranger], T0) == 0
    assert await repos.calls.get(stranger.call_id) is None


async def test_group_activate_and_skip(repos, batch):
    calls = [chained(f"+1212555010{i}", "acc=1", i) for i in range(4)]
    calls.append(chained("+12125550199", "acc=2", 1))
    await repos.calls.insert_new(batch, calls, T0)
    group = await repos.calls.group(batch["_id"], "acc=1")
    assert sorted(c["group"]["seq"] for c in group) == [0, 1, 2, 3]
    assert {c["status"] for c in group} == {"queued", "held"}
    assert sorted(await repos.calls.held_groups(batch["_id"], 10)) == ["acc=1", "acc=2"]

    assert await repos.calls.activate(calls[1].call_id, at(100), {"at": at(100), "event": "activated"})
    assert not await repos.calls.activate(calls[1].call_id, at(101), {"at": at(101), "event": "again"})  # CAS
    assert not await repos.calls.activate(calls[0].call_id, at(101), {"at": at(101), "event": "queued one"})
    got = await repos.calls.get(calls[1].call_id)
    assert (got["status"], got["nextAttemptAt"]) == ("queued", at(100))  # due now, not at its planned time

    assert await repos.calls.skip_held(batch["_id"], "acc=1", at(200), {"at": at(200), "event": "done"}) == 2
    assert [(await repos.calls.get(c.call_id))["status"] for c in calls[2:4]] == ["skipped", "skipped"]
    assert (await repos.calls.get(calls[4].call_id))["status"] == "held"  # another group
    assert counts(await repos.calls.tallies(batch["_id"])) == {"queued": 2, "skipped": 2, "held": 1}
    assert await repos.calls.held_groups(batch["_id"], 10) == ["acc=2"]


async def test_activation_keeps_a_later_planned_time(repos, batch):
    later = at(3600)
    calls = [chained("+12125550101", "g", 0), chained("+12125550102", "g", 1, earliest=later)]
    await repos.calls.insert_new(batch, calls, T0)
    assert await repos.calls.activate(calls[1].call_id, at(10), {"at": at(10), "event": "activated"})
    assert (await repos.calls.get(calls[1].call_id))["nextAttemptAt"] == later


async def test_finish_names_the_group_and_verdict_is_kept(repos, batch):
    call = chained("+12125550101", "acc=9", 0)
    await repos.calls.insert_new(batch, [call], T0)
    assert await claim(repos, call.call_id, now=at(1))
    done = await repos.calls.finish(call.call_id, "tok-1", None, Finish(
        final="completed", outcome="completed", entry={"at": at(30), "event": "completed"}, duration=40), at(30))
    assert done == ("final", batch["_id"], call.group)
    after = await repos.calls.record_verdict(call.call_id, {"successful": False, "reason": "wrong person"}, at(31))
    assert after["verdict"] == {"successful": False, "reason": "wrong person"}
    group = await repos.calls.group(batch["_id"], "acc=9")
    assert (group[0]["verdict"]["successful"], group[0]["duration"], group[0]["status"]) == (False, 40, "completed")
    assert await repos.calls.record_verdict(ObjectId(), {"successful": True}, at(32)) is None


async def test_retry_leaves_chained_calls_alone(repos, batch):
    call = chained("+12125550101", "acc=1", 0)
    await repos.calls.insert_new(batch, [call], T0)
    assert await claim(repos, call.call_id, now=at(1))
    await repos.calls.finish(call.call_id, "tok-1", None, Finish(
        final="busy", outcome="busy", entry={"at": at(30), "event": "busy"}), at(30))
    assert await repos.calls.retry_finished(batch["_id"], ["busy"], at(40), {"at": at(40), "event": "retry"}, 10) \
        == (0, 0)
    assert (await repos.calls.get(call.call_id))["status"] == "busy"
