"""Contact chaining and durable intake, with dispatchers on a virtual clock (tests/dispatch_harness.py):
a group's next contact is called only after the previous one ended without success, the rest are
skipped once one succeeds, a verdict moves a group on, a crash loses nothing and doubles nothing."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import orjson
import pytest

from dialer.api.appkeys import CHAINS, EVENTS
from dialer.composition import services_over
from dialer.core.chains import ChainRule
from dialer.core.statuses import CallStatus
from tests.conftest import make_api
from tests.dispatch_harness import Harness
from tests.enrollment_client import batch_of, contact, enroll
from tests.faults import inject


@pytest.fixture
async def api(client, app):
    return await make_api(client, app, {"name": "sdr", "requiredVariables": ["account_id"],
                                        "callingNumbers": ["+14155550142"], "timezones": ["America/New_York"]})


def groups_of(n_groups: int, per_group: int) -> list[dict]:
    return [contact(f"+1212555{g}{i:03d}", account_id=f"ACC-{g}", name=f"c{g}-{i}")
            for i in range(per_group) for g in range(n_groups)]


def intervals(h: Harness, calls: list[dict]) -> dict[str, list[tuple[dt.datetime, dt.datetime, str]]]:
    """Per group: (placed, ended, number) of each call, in placement order."""
    placed = {number: at for at, number in h.placements}
    out: dict[str, list] = defaultdict(list)
    for c in calls:
        if c["phoneNumber"] in placed:
            ended = next(e["at"] for e in reversed(c["history"]) if e.get("result"))
            out[c["variables"]["account_id"]].append((placed[c["phoneNumber"]], ended, c["contact"]["index"]))
    return {k: sorted(v) for k, v in out.items()}


async def test_next_contact_only_after_the_previous_failed(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"busy": 1.0})
    code, answer, _, _ = await enroll(api, {"contacts": groups_of(3, 3), "groupByField": "account_id"})
    assert code == 202 and answer["accepted"] == 9
    batch = answer["batchId"]
    await h.run_until(lambda: _status(api, batch, "completed"))
    calls = await api.all_calls(batch)
    assert {c["status"] for c in calls} == {"busy"}  # every contact was tried: none succeeded
    for group, spans in intervals(h, calls).items():
        indexes = [index for _, _, index in spans]
        assert indexes == sorted(indexes), group  # in the request's order
        for (_, ended, _), (started, _, _) in zip(spans, spans[1:]):
            assert started >= dt.datetime.fromisoformat(ended.replace("Z", "+00:00")), group  # never two at once


async def test_success_skips_the_rest_after_the_verdict_window(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"answered": 1.0}, mean_duration=200)
    code, answer, _, _ = await enroll(api, {"contacts": groups_of(2, 3), "groupByField": "account_id"})
    batch = answer["batchId"]
    await h.run_until(lambda: _status(api, batch, "completed"))
    calls = await api.all_calls(batch)
    firsts = [c for c in calls if c["group"]["seq"] == 0]
    assert {c["status"] for c in firsts} == {"completed"}
    assert {c["status"] for c in calls if c["group"]["seq"] > 0} == {"skipped"}
    assert len(h.sim.placed) == 2


async def test_an_unsuccessful_verdict_moves_the_group_on(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"answered": 1.0}, mean_duration=200)
    code, answer, _, _ = await enroll(api, {"contacts": groups_of(1, 2), "groupByField": "account_id"})
    batch = answer["batchId"]
    for _ in range(10):
        await h.step()
    [first] = await api.all_calls(batch, "in_progress")
    code, doc = await api.post(f"/api/call/calls/{first['callId']}/verdict", {"successful": False,
                                                                              "reason": "asked to call another"})
    assert code == 200 and doc["data"]["verdict"]["successful"] is False
    await h.run_until(lambda: _status(api, batch, "completed"))
    calls = {c["group"]["seq"]: c for c in await api.all_calls(batch)}
    assert calls[1]["status"] == "completed"  # the second contact was called
    assert len(h.sim.placed) == 2
    code, _ = await api.post(f"/api/call/calls/{first['callId']}/verdict", {"successful": "no"})
    assert code == 400


async def test_a_verdict_after_the_window_changes_no_success(api, clock, engine_settings):
    """A success is final once its verdict window has passed (the reaper's sweep skips the rest when it
    next runs): an unsuccessful verdict arriving after the window, before that sweep, called the next
    contact of a group that had succeeded. The late verdict is recorded; the success stands."""
    h = Harness(api, clock, engine_settings, outcomes={"answered": 1.0}, mean_duration=200)
    code, answer, _, _ = await enroll(api, {"contacts": groups_of(1, 2), "groupByField": "account_id"})
    batch = answer["batchId"]
    while not await api.all_calls(batch, "completed"):
        await h.step()
    [first] = await api.all_calls(batch, "completed")
    assert [c["status"] for c in await api.all_calls(batch, "held")] == ["held"]  # a success, waiting its window
    clock.advance(61)  # the window (60 s) has passed; the sweep has not run yet
    code, doc = await api.post(f"/api/call/calls/{first['callId']}/verdict", {"successful": False, "reason": "late"})
    assert code == 200 and doc["data"]["verdict"]["successful"] is False  # recorded
    # Its step finds the window passed: the rest of the group is skipped, not called.
    assert {c["group"]["seq"]: c["status"] for c in await api.all_calls(batch)} == {0: "completed", 1: "skipped"}
    await h.run_until(lambda: _status(api, batch, "completed"))
    assert len(h.sim.placed) == 1


async def test_a_short_call_is_not_a_success(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"answered": 1.0})
    # The rule is read at composition (DIALER_CHAIN_MIN_SUCCESS_SECONDS): give the app's chains a long one.
    api.app[CHAINS].rule = ChainRule(min_seconds=10_000, verdict_seconds=60)
    code, answer, _, _ = await enroll(api, {"contacts": groups_of(1, 3), "groupByField": "account_id"})
    await h.run_until(lambda: _status(api, answer["batchId"], "completed"))
    assert len(h.sim.placed) == 3


async def test_a_lost_step_is_taken_by_the_reapers_sweep(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"no_answer": 1.0})
    events = api.app[EVENTS]
    events.on_group_call_final = None  # the process "crashes" between a call's end and its group's step
    code, answer, _, _ = await enroll(api, {"contacts": groups_of(2, 2), "groupByField": "account_id"})
    batch = answer["batchId"]
    for _ in range(120):
        await h.step()
    assert len(h.sim.placed) == 2 and (await batch_of(api, batch))["counters"]["byStatus"]["held"] == 2
    await h.engines[0].reaper.run()  # the sweep finds the two groups without a next step
    await h.run_until(lambda: _status(api, batch, "completed"))
    assert len(h.sim.placed) == 4


async def test_duplicates_are_never_dialled_at_once(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"answered": 1.0}, mean_duration=60)
    same = [contact("+12125550100", account_id=str(i), name=f"n{i}") for i in range(3)]
    code, answer, _, _ = await enroll(api, {"contacts": same, "allowDuplicates": True})
    assert answer["accepted"] == 3
    batch = answer["batchId"]
    await h.run_until(lambda: _status(api, batch, "completed"))
    assert len(h.sim.placed) == 3  # each contact called, whatever the first's outcome
    assert h.peak[(await batch_of(api, batch))["internalId"]] == 1


@pytest.mark.parametrize("store", ["sqlite", "mongomock"])
async def test_a_crash_between_intake_and_scheduling_loses_nothing(store, settings, clock, tmp_path):
    """The accepted contacts are written before the 202; the process dies after the first chunk of calls.
    A new process over the same store resumes the intake: every contact once, the group chain intact."""
    if store == "sqlite":
        from dialer.store.sqlite import open_sqlite
        repos = await open_sqlite(str(tmp_path / "crash.db"))
    else:
        from dialer.store.mongo.testing import mongomock_repositories
        repos = await mongomock_repositories()
    first = services_over(repos, settings, clock)
    workspace, key = await first.tenancy.create_workspace("acme")
    agent = await first.tenancy.create_agent(workspace["_id"], {"name": "a", "callingNumbers": ["+14155550142"]})
    principal = await first.tenancy.authenticate(key)
    contacts = [contact(f"+1212{i:07d}", account_id=f"G{i % 400}") for i in range(1000)]
    body = orjson.dumps({"contacts": contacts, "groupByField": "account_id"})
    inject(repos.calls, "insert_new", {2})  # the second chunk's write dies with the process
    answer = await first.enrollment.enroll(principal, str(agent["_id"]), body, "crash-1")
    await first.enrollment.close()
    assert answer.code == 202
    batch = await repos.batches.by_public_id(orjson.loads(answer.body)["batchId"])
    assert sum(t.calls for t in await repos.calls.tallies(batch["_id"])) == 500  # half written

    clock.advance(61)  # the dead process's lease passes
    second = services_over(repos, settings, clock)  # "restarted"
    assert await second.enrollment.resume() == 1
    assert await second.enrollment.resume() == 0
    tallies = {t.status: t.calls for t in await repos.calls.tallies(batch["_id"])}
    assert tallies == {CallStatus.QUEUED.value: 400, CallStatus.HELD.value: 600}
    assert (await repos.batches.get(batch["_id"]))["status"] == "running"
    replay = await second.enrollment.enroll(principal, str(agent["_id"]), body, "crash-1")
    assert (replay.body, replay.replayed) == (answer.body, True)  # and a retry schedules nothing
    await repos.close()


async def _status(api, batch: str, status: str) -> bool:
    return (await batch_of(api, batch))["status"] == status


async def test_operators_while_an_intake_is_being_written(api, clock):
    """A cancel between two chunks of an intake's calls: the calls written after it are withdrawn too.
    A delete while the intake is pending is refused (its calls would outlive the batch)."""
    calls_repo = api.store.calls
    original = calls_repo.insert_new
    seen = []

    async def cancel_after_first_chunk(batch, chunk, now):
        written = await original(batch, chunk, now)
        seen.append(written)
        if len(seen) == 1:
            resp = await api.client.delete(f"/api/call/batches/{batch['publicId']}", headers=api.headers())
            assert resp.status == 409 and "still being scheduled" in (await resp.json())["errorMessage"]
            code, doc = await api.post(f"/api/call/batches/{batch['publicId']}/cancel")
            assert code == 200
        return written

    calls_repo.insert_new = cancel_after_first_chunk
    contacts = [contact(f"+1212{n:07d}", account_id=f"G{n % 250}") for n in range(1000)]
    code, answer, _, _ = await enroll(api, {"contacts": contacts, "groupByField": "account_id"})
    calls_repo.insert_new = original
    assert code == 202 and seen == [500, 500]
    batch = await batch_of(api, answer["batchId"])
    assert batch["status"] == "cancelled"
    assert {k: v for k, v in batch["counters"]["byStatus"].items() if v} == {"cancelled": 1000}
    resp = await api.client.delete(f"/api/call/batches/{answer['batchId']}", headers=api.headers())
    assert resp.status == 200 and (await resp.json())["data"]["batchId"] == answer["batchId"]


async def test_a_failing_intake_does_not_stop_the_chain_sweep(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"no_answer": 1.0})
    api.app[EVENTS].on_group_call_final = None  # lost steps, for the sweep to take
    code, answer, _, _ = await enroll(api, {"contacts": groups_of(1, 2), "groupByField": "account_id"})
    for _ in range(120):
        await h.step()
    intakes = api.store.intakes

    async def broken(now, limit):
        raise RuntimeError("a document the code cannot read")

    intakes.unfinished = broken
    await h.engines[0].reaper.run()
    await h.run_until(lambda: _status(api, answer["batchId"], "completed"))
    assert len(h.sim.placed) == 2


async def test_a_dispatcher_dying_mid_call_does_not_break_the_chain(api, clock, engine_settings):
    """The dispatcher dies while each group's first call rings; the provider ends them unheard. The
    survivor's reaper reconciles them with the provider, and each group moves on to its next contact:
    every contact called once, in order, never two of a group at once."""
    h = Harness(api, clock, engine_settings, outcomes={"busy": 1.0}, mean_duration=30)
    code, answer, _, _ = await enroll(api, {"contacts": groups_of(2, 3), "groupByField": "account_id"})
    batch = answer["batchId"]
    await h.step()
    await h.step()
    assert len(h.sim.placed) == 2
    h.sim.sink = None  # the dispatcher died: nobody hears the provider's events any more
    clock.advance(200)
    await h.sim.pump()
    h.engines = [h.new_engine("survivor")]
    assert await h.engines[0].reaper.reconcile_expired() == 2
    await h.run_until(lambda: _status(api, batch, "completed"))
    calls = await api.all_calls(batch)
    assert len(h.sim.placed) == 6 and {c["status"] for c in calls} == {"busy"}
    for group, spans in intervals(h, calls).items():
        assert [index for _, _, index in spans] == sorted(index for _, _, index in spans), group
        for (_, ended, _), (started, _, _) in zip(spans, spans[1:]):
            assert started >= dt.datetime.fromisoformat(ended.replace("Z", "+00:00")), group
