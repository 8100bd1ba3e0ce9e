"""/metrics: Prometheus text that parses, and whose figures follow what happened."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from dialer.composition import services_over
from dialer.store.sqlite import open_sqlite
from tests.dispatch_harness import Harness
from workers.main import metrics_app


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_api_metrics_follow_requests_records_calls_and_outcomes(api, clock, engine_settings):
    h = Harness(api, clock, engine_settings, outcomes={"busy": 1.0})
    batch = await api.create_batch(concurrencyLimit=2)
    await api.add_calls(batch, [{"phoneNumber": f"+1212555{i:04d}"} for i in range(3)])
    await api.add_calls(batch, [{"phoneNumber": "12"}, {"phoneNumber": "x"}])
    await h.step()
    await h.step()  # dial times are spaced by the rate: the second call goes out on the next tick
    resp = await api.client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    found = samples(await resp.text())
    assert value(found, "dialer_records_total", result="accepted") == 3
    assert value(found, "dialer_records_total", result="rejected") == 2
    route = "/api/call/addCallsToBatch"
    assert value(found, "dialer_http_requests_total", route=route, method="POST", status="200") == 1
    assert value(found, "dialer_http_requests_total", route=route, method="POST", status="400") == 1
    assert value(found, "dialer_http_request_seconds_count", route=route) == 2
    assert value(found, "dialer_calls_placed_total", provider="simulator") == 2
    assert value(found, "dialer_calls_in_flight", batch=batch) == 2
    assert value(found, "dialer_calls_waiting", batch=batch) == 1
    await h.run_until(lambda: _done(h, batch))
    found = samples(await (await api.client.get("/metrics")).text())
    assert value(found, "dialer_call_outcomes_total", outcome="busy") == 3
    assert value(found, "dialer_calls_placed_total", provider="simulator") == 3
    assert value(found, "dialer_placement_delay_seconds_count") == 3
    assert ("dialer_calls_in_flight", (("batch", batch),)) not in found  # read at the scrape: none left
    assert value(found, "dialer_account_calls_in_flight") == 0


async def _done(h, batch):
    return await h.batch_status(batch) == "completed"


async def test_a_dispatchers_own_metrics_endpoint(aiohttp_client, settings, clock):
    services = services_over(await open_sqlite(":memory:"), settings, clock)
    services.metrics.placed.labels("twilio").inc(5)
    client = await aiohttp_client(metrics_app(services))
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert value(samples(await resp.text()), "dialer_calls_placed_total", provider="twilio") == 5
