"""`make run`'s shape: the API with its embedded dispatcher on the real clock, APScheduler jobs and all."""

from __future__ import annotations

import asyncio

from dialer.composition import build_app
from dialer.core.clock import SystemClock
from tests.conftest import make_api


async def test_embedded_dispatcher_completes_a_batch(aiohttp_client, settings):
    fast = settings.replace(embedded_dispatcher="true", provider="simulator", sim_time_scale=2000.0,
                            poll_interval_seconds=0.05, calls_per_second=50.0, lease_seconds=60)
    app = build_app(fast, SystemClock())
    client = await aiohttp_client(app)
    api = await make_api(client, app)
    batch = await api.create_batch(concurrencyLimit=3, callingWindow={"start": "00:00", "end": "24:00"})
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
