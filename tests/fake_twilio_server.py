"""FakeTwilio (tests/fake_twilio.py) as a process of its own, for the crash tests (tests/test_crash.py):
it outlives every dialer process it serves, records each call it is asked to place, and plays each
call out with signed status callbacks, as Twilio would.

    python -m tests.fake_twilio_server --port P --record calls.jsonl --account-sid AC... --auth-token T --seed 7

The record is one JSON object a line, flushed as written:

- `{"event": "create", "sid", "to", "from", "t", "callId", "batchId", "attempt"}` for every call created
  (the dialer's ids are read from the StatusCallback URL it gave);
- `{"event": "end", "sid", "to", "status", "t"}` when the call is over at the "provider" (its final
  status set by the play-out, or by the dialer's hang-up);
- `{"event": "dropped", "sid", "status"}` for a callback given up after its retries;
- `{"event": "quiet", "t"}` whenever no call is left to play out (every call over, every callback
  delivered or dropped), so a reader knows the provider has settled.

Each call rings for 0.05-0.3 s, then ends busy, no-answer or failed, or is answered and talks for
0.2-1 s (its reported CallDuration is a random 0-40 s, so contact chaining sees successes too). A
callback that meets a dead server (connection refused, reset, 5xx) is retried for a few seconds, then
dropped: the dialer's reaper finds the call's status through the REST API (GET Calls), which answers
from the same record of calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from tests.fake_twilio import FINAL, FakeTwilio

RETRY_DELAYS = (0.1, 0.2, 0.4, 0.8, 1.0, 1.5, 2.0)  # a callback is given up after ~6 s of refusals
OUTCOMES = (("completed", 0.6), ("busy", 0.15), ("no-answer", 0.15), ("failed", 0.1))


class Player:
    def __init__(self, fake: FakeTwilio, record_path: str, seed: int) -> None:
        self.fake = fake
        self.random = random.Random(seed)
        self.record = open(record_path, "a", buffering=1)  # a line at a time
        self.playing: set[asyncio.Task] = set()

    def write(self, **fields: Any) -> None:
        self.record.write(json.dumps(fields) + "\n")

    def created(self, call: dict[str, Any]) -> None:
        query = parse_qs(urlsplit(call.get("StatusCallback", "")).query)
        ours = {name: query.get(name, [None])[0] for name in ("callId", "batchId", "attempt")}
        self.write(event="create", sid=call["sid"], to=call["To"], t=time.time(), **{"from": call["From"]}, **ours)
        task = asyncio.get_running_loop().create_task(self.play(call["sid"]))
        self.playing.add(task)
        task.add_done_callback(self._played)

    def _played(self, task: asyncio.Task) -> None:
        self.playing.discard(task)
        if not self.playing:
            self.write(event="quiet", t=time.time())

    async def play(self, sid: str) -> None:
        rnd = self.random
        outcome = rnd.choices([o for o, _ in OUTCOMES], [w for _, w in OUTCOMES])[0]
        steps = [("ringing", rnd.uniform(0.02, 0.1), {})]
        if outcome == "completed":
            steps.append(("in-progress", rnd.uniform(0.05, 0.3), {"answered_by": "human"}))
            steps.append(("completed", rnd.uniform(0.2, 1.0), {"duration": rnd.randint(0, 40)}))
        else:
            steps.append((outcome, rnd.uniform(0.05, 0.3), {}))
        for status, delay, extra in steps:
            if await self._hung_up_within(sid, delay):
                status, extra = self.fake.calls[sid]["status"], {}
            elif status in FINAL:
                self.fake.set_status(sid, status, **extra)
            if status in FINAL:
                call = self.fake.calls[sid]
                self.write(event="end", sid=sid, to=call["To"], status=status, t=call["end_time"].timestamp())
            await self._deliver(sid, status, extra)
            if status in FINAL:
                return

    async def _hung_up_within(self, sid: str, seconds: float) -> bool:
        """Time passes on the call; True as soon as the dialer hangs it up (its status is final)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.fake.calls[sid]["status"] in FINAL:
                return True
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.fake.calls[sid]["status"] in FINAL

    async def _deliver(self, sid: str, status: str, extra: dict) -> None:
        for delay in (*RETRY_DELAYS, None):
            try:
                if await self.fake.send_status(sid, status, **extra) < 500:
                    return
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                pass  # the dialer is down (killed): try again, as Twilio retries a failed callback
            if delay is None:
                break
            await asyncio.sleep(delay)
        self.write(event="dropped", sid=sid, status=status)


async def serve(args: argparse.Namespace) -> None:
    fake = FakeTwilio(args.account_sid, args.auth_token)
    player = Player(fake, args.record, args.seed)
    fake.on_create = player.created
    await fake.start(args.port)
    print(f"fake twilio on {fake.base_url}", flush=True)
    await asyncio.Event().wait()  # until killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True, help="the JSONL file of creates and ends")
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--seed", type=int, default=0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
