"""`make run`'s shape: the API with its embedded dispatcher on the real clock, APScheduler jobs and all."""

from __future__ import annotations

import asyncio
import logging

from dialer.composition import build_app
from dialer.core.clock import SystemClock
from dialer.ports import StoreUnavailable
from tests.conftest import Api, make_api


async def fast_engine(aiohttp_client, settings) -> tuple[Api, str]:
    """The API with its embedded dispatcher polling 20 times a second and a fast simulator; a batch of limit 3."""
    fast = settings.replace(embedded_dispatcher="true", provider="simulator", sim_time_scale=2000.0,
                            poll_interval_seconds=0.05, calls_per_second=50.0, lease_seconds=60)
    app = build_app(fast, SystemClock())
    api = await make_api(await aiohttp_client(app), app)
    return api, await api.create_batch(concurrencyLimit=3, callingWindow={"start": "00:00", "end": "24:00"})


async def test_embedded_dispatcher_completes_a_batch(aiohttp_client, settings):
    api, batch = await fast_engine(aiohttp_client, settings)
    code, _ = await api.add_calls(batch, [{"phoneNumber": f"+1212555{i:04d}"} for i in range(12)])
    assert code == 200
    for _ in range(200):
        _, doc = await api.get(f"/api/call/batches/{batch}")
        assert doc["data"]["counters"]["inFlight"] <= 3
        if doc["data"]["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert doc["data"]["status"] == "completed"
    assert doc["data"]["counters"]["finished"] == 12


async def test_a_stopped_engine_leaves_no_simulated_call_in_flight(aiohttp_client, settings):
    """SIGTERM (Engine.stop) took the simulated line down with its calls still in flight: a restart found them
    holding the batch's slots until their leases ran out (16 minutes for an answered call). They end at the stop
    now, a talking one completed, any other failed; and the next process's call ids are not the last one's."""
    slow = settings.replace(embedded_dispatcher="true", provider="simulator", sim_time_scale=1.0,
                            sim_outcomes="answered=1", poll_interval_seconds=0.05, calls_per_second=50.0,
                            lease_seconds=60)
    app = build_app(slow, SystemClock())
    client = await aiohttp_client(app)
    api = await make_api(client, app)
    batch = await api.create_batch(concurrencyLimit=4, callingWindow={"start": "00:00", "end": "24:00"})
    await api.add_calls(batch, [{"phoneNumber": f"+1212555{i:04d}"} for i in range(10)])
    for _ in range(100):
        _, doc = await api.get(f"/api/call/batches/{batch}")
        if doc["data"]["counters"]["inFlight"] == 4:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the four claimed are placed (50 calls/s), none ends of itself (3 s of ringing at least)
    await client.close()  # the app's shutdown: Engine.stop, then the store
    app = build_app(slow, SystemClock())  # the next process, on the same store file
    client = await aiohttp_client(app)
    api = Api(client, app, api.key, api.workspace_id, api.agent)
    calls = await api.all_calls(batch)
    assert [c for c in calls if c["status"] in ("dialing", "ringing", "in_progress")] == []
    assert {c["status"] for c in calls} <= {"completed", "failed", "queued"}
    ended = [c for c in calls if c["status"] in ("completed", "failed")]
    assert len(ended) == 4 and all(c["attempts"] == 1 for c in ended)
    first_ids = {c["providerCallId"] for c in ended}
    batch2 = await api.create_batch(concurrencyLimit=4, callingWindow={"start": "00:00", "end": "24:00"})
    await api.add_calls(batch2, [{"phoneNumber": f"+1313555{i:04d}"} for i in range(4)])
    for _ in range(100):
        second_ids = {c["providerCallId"] for c in await api.all_calls(batch2) if c.get("providerCallId")}
        if len(second_ids) == 4:
            break
        await asyncio.sleep(0.05)
    assert len(second_ids) == 4 and not second_ids & first_ids


async def test_a_store_outage_is_logged_when_it_starts_and_ends_not_at_every_poll(aiohttp_client, settings, caplog):
    """A full disk or a lost MongoDB primary fails every poll of the dispatcher (20 a second here): one line
    when the outage starts, one when it ends, never a traceback per poll; the calls wait and are placed after."""
    api, batch = await fast_engine(aiohttp_client, settings)
    calls = api.store.calls
    look, read = calls.look, api.store.ledger.read

    async def unavailable(*args, **kwargs):
        raise StoreUnavailable("database error: disk is full")

    calls.look = api.store.ledger.read = unavailable
    caplog.set_level(logging.INFO, logger="workers")
    assert (await api.add_calls(batch, [{"phoneNumber": f"+1212555{i:04d}"} for i in range(4)]))[0] == 200
    await asyncio.sleep(1.0)  # ~20 polls fail
    calls.look, api.store.ledger.read = look, read
    for _ in range(200):
        _, doc = await api.get(f"/api/call/batches/{batch}")
        if doc["data"]["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert doc["data"]["status"] == "completed" and doc["data"]["counters"]["finished"] == 4
    outage = [r for r in caplog.records if "store is" in r.getMessage()]
    assert [r.getMessage() for r in outage] == ["dispatcher job: the store is unavailable; retrying at each interval",
                                                "dispatcher job: the store is available again"], outage
    assert outage[1].failures >= 10 and not any(r.exc_info for r in caplog.records if r.name.startswith("workers"))
