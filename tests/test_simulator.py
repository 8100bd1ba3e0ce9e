"""The simulated line's event delivery: one event at a time (virtual-clock runs stay deterministic) or, as
`dialer serve` has it (Twilio's status callbacks arrive as concurrent requests), several calls' events at
once, each call's still in order. And its search by number, as Twilio's (the reaper's after a crash)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from dialer.core.clock import FixedClock
from workers.telephony.base import DialRequest
from workers.telephony.simulator import Simulator

START = dt.datetime(2026, 12, 5, 15, 0, tzinfo=dt.timezone.utc)


def request(i: int) -> DialRequest:
    return DialRequest(call_id=f"c{i}", batch_id="b", to=f"+1212555{i:04d}", from_="+15005550006",
                       ringing_timeout=30, status_callback_url=None, twiml_url=None)


async def deliveries(concurrent_events: int) -> tuple[list, list]:
    """Five answered calls' events pumped at once: (the sink's start/end marks, the placed calls)."""
    clock = FixedClock(START)
    sim = Simulator(clock, {"answered": 1.0}, mean_duration=10, seed=3, concurrent_events=concurrent_events)
    marks: list[tuple[str, str, str]] = []

    async def sink(event) -> None:
        marks.append(("start", event.provider_call_id, event.status))
        await asyncio.sleep(0.001)  # a store write's hand-off
        marks.append(("end", event.provider_call_id, event.status))

    sim.sink = sink
    placed = [await sim.place_call(request(i)) for i in range(5)]
    clock.advance(3600)
    assert await sim.pump() == 10
    return marks, placed


@pytest.mark.parametrize("concurrent_events", [1, 8])
async def test_every_event_arrives_once_each_calls_in_order(concurrent_events):
    marks, placed = await deliveries(concurrent_events)
    for p in placed:
        ends = [status for kind, sid, status in marks if kind == "end" and sid == p.provider_call_id]
        assert ends == ["in-progress", "completed"]


async def test_one_at_a_time_never_overlaps_and_concurrent_delivery_does():
    sequential, _ = await deliveries(1)
    assert [kind for kind, _, _ in sequential] == ["start", "end"] * 10
    concurrent, _ = await deliveries(8)
    assert [kind for kind, _, _ in concurrent][:2] == ["start", "start"]
    in_flight = peak = 0
    for kind, _, _ in concurrent:
        in_flight += 1 if kind == "start" else -1
        peak = max(peak, in_flight)
    assert peak == 5  # the five calls at once, never two events of one call


async def test_find_calls_gives_every_call_to_the_number_since_newest_first_as_twilio_does():
    clock = FixedClock(START)
    sim = Simulator(clock, {"answered": 1.0}, seed=5)
    same = DialRequest(call_id="c1", batch_id="b", to="+12125550001", from_="+15005550006", ringing_timeout=30,
                       status_callback_url=None, twiml_url=None, send_digits="ww22")
    old = (await sim.place_call(same)).provider_call_id
    clock.advance(60)
    first = (await sim.place_call(same)).provider_call_id
    await sim.place_call(request(2))  # another number
    await sim.place_call(DialRequest(**{**same.__dict__, "from_": "+15005550007"}))  # another caller
    clock.advance(1)
    second = (await sim.place_call(DialRequest(**{**same.__dict__, "send_digits": "ww23"}))).provider_call_id
    assert await sim.find_calls(same.to, same.from_, START + dt.timedelta(seconds=30)) == [second, first]
    assert await sim.find_calls(same.to, same.from_, START) == [second, first, old]
    assert await sim.find_calls(same.to, same.from_, START + dt.timedelta(seconds=62)) == []
