"""Crash tests with real processes (issue 13, item 4): `dialer serve` on its store (an SQLite file, or
MongoDB when DIALER_TEST_MONGODB_URI is set), the Twilio provider pointed at the fake Twilio in a
process of its own (tests/fake_twilio_server.py), partner and operator traffic (tests/crash_traffic.py),
and kill -9 at seeded random moments, each kill point printed; every request that got no answer is
retried with its Idempotency-Key. Once everything has settled, tests/crash_checks.py's invariants must
hold. A second test kills a `dialer worker` mid-batch while the API lives.

`make test` runs the bounded form (20 kills); `make chaos` a longer one: CHAOS_KILLS, CHAOS_SEED,
CHAOS_BIG (records of the first addCallsToBatch) in the environment.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from tests.crash_checks import failures
from tests.crash_harness import Chaos, Stack
from tests.crash_traffic import Partner, Volume

MONGODB_URI = os.environ.get("DIALER_TEST_MONGODB_URI", "")
BACKENDS = ["sqlite"] + ([pytest.param("mongodb", marks=pytest.mark.mongodb)] if MONGODB_URI else [])
SEED = int(os.environ.get("CHAOS_SEED", "1"))
VOLUME = Volume(kills=int(os.environ.get("CHAOS_KILLS", "20")), big=int(os.environ.get("CHAOS_BIG", "1000")))


@pytest.fixture(params=BACKENDS)
async def stack(request, tmp_path):
    if request.param == "sqlite":
        store = {"DIALER_DATA_DIR": str(tmp_path / "data")}
    else:
        store = {"MONGODB_URI": MONGODB_URI, "DIALER_DATABASE": f"dialer_crash_{uuid.uuid4().hex[:12]}",
                 "DIALER_EMBEDDED_DISPATCHER": "true"}
    stack = Stack(tmp_path, store)
    stack.start_fake(SEED)
    try:
        yield stack
    finally:
        stack.stop_all()
        if request.param == "mongodb":
            client = AsyncMongoClient(MONGODB_URI)
            await client.drop_database(store["DIALER_DATABASE"])
            await client.close()


async def started(stack: Stack, session: aiohttp.ClientSession, **env: str) -> Chaos:
    await stack.wait_listening(stack.fake_port, stack.fake, "fake")
    stack.start_server(**env)
    await stack.wait_health(session)
    chaos = Chaos(stack, session)
    chaos.up.set()
    return chaos


def report(chaos: Chaos, problems: list[str], seed: int) -> str:
    kills = "\n  ".join(str(k) for k in chaos.kills)
    found = "\n  ".join(problems[:40])
    return (f"seed {seed}: {len(problems)} invariant(s) broken after {len(chaos.kills)} kills\n  {found}\n"
            f"kills:\n  {kills}\nlogs in {chaos.stack.tmp}")


async def test_serve_killed_at_random_moments(stack):
    began = time.monotonic()
    async with aiohttp.ClientSession() as session:
        chaos = await started(stack, session)
        partner = Partner(chaos, SEED, VOLUME)
        await partner.setup()
        await partner.operators_batches()
        await partner.rounds()
        await partner.finish()
        traffic = time.monotonic() - began
        state = await partner.settled(stack.fake_record)
        problems = failures(partner.world, state, stack.fake_record())
        calls = sum(len(c) for c in state.calls.values())
        print(f"seed {SEED}: {len(chaos.kills)} kills, {chaos.unanswered} requests unanswered and retried, "
              f"{calls} calls, traffic {traffic:.1f} s, settled at {time.monotonic() - began:.1f} s")
        assert len(chaos.kills) >= VOLUME.kills
        assert not problems, report(chaos, problems, SEED)


async def test_worker_killed_mid_batch(stack):
    """The API lives (no dispatcher of its own); a `dialer worker` places the calls and is killed -9
    while they are in flight, then again; a new worker's reaper settles what the dead one left."""
    async with aiohttp.ClientSession() as session:
        chaos = await started(stack, session, DIALER_EMBEDDED_DISPATCHER="false")
        partner = Partner(chaos, SEED, VOLUME)
        await partner.setup()
        batch = await partner.create_batch("worker batch", 40)
        worker = stack.start_worker()
        await partner.add_calls(batch, 600)
        for n in range(3):
            await placed_by_this_worker(stack, 10)
            chaos.kill_worker(worker, f"worker mid-batch ({n + 1} of 3)")
            worker = stack.start_worker()
        state = await partner.settled(stack.fake_record)
        problems = failures(partner.world, state, stack.fake_record())
        assert not problems, report(chaos, problems, SEED)


async def placed_by_this_worker(stack: Stack, n: int, timeout: float = 30.0) -> None:
    """Wait until the provider has been asked for `n` more calls (by the worker just started)."""
    before = sum(r["event"] == "create" for r in stack.fake_record())
    deadline = time.monotonic() + timeout
    while sum(r["event"] == "create" for r in stack.fake_record()) < before + n:
        assert time.monotonic() < deadline, f"no {n} calls placed within {timeout} s"
        await asyncio.sleep(0.05)
