"""`make bench`'s partner webhooks (issue 14, "Measured"): 10,000 call events to one endpoint on loopback.

Real processes: `python -m dialer.cli serve` (the embedded SQLite store in a temporary DIALER_DATA_DIR, the
simulator at DIALER_SIM_TIME_SCALE=100, DIALER_WEBHOOKS_ALLOW_INSECURE=true) and a receiver in this process
on 127.0.0.1 that verifies every request with `standardwebhooks` and answers 500 for the first 30 s of the
dispatch, then 200. The endpoint subscribes to the calls' final events: each of the 10,000 calls yields one.
Retries follow a bench's schedule, DIALER_WEBHOOK_RETRY_DELAYS=0,1,2,5,10,20,30,60 (production's waits
minutes to hours; the rules are the same).

Run 1: two servers side by side, the same 10,000 calls at the same configured rate: one with the endpoint,
one without (the control); the dispatchers' calls/s are compared. The simulator's time scale multiplies the
rate budget (workers/engine.py), so DIALER_CPS=2 at 100x is 200 calls/s of real time: the rate a busy
account is configured for, which the dispatcher must hold while deliveries run. (Unbounded, DIALER_CPS=200
at 100x, each server places as fast as its CPU allows, and deliveries in the same process then take CPU from
the dispatcher by construction; `--unbounded` shows that figure.) Run 2: the same with
an endpoint only, the API process killed (SIGKILL) 40 s in and started again on the same store.
Figures: every message delivered and verified, none lost (one webhook-id per call, every call's), extra
deliveries only as repeats of one webhook-id, and the time from each event (its `timestamp`) to its first
2xx for the events after the receiver came up. Bounded: each run gives up after 240 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from standardwebhooks import Webhook

from bench.load import free_port

KEY = "bench-webhooks-key"
CALLS = 10_000
FAIL_SECONDS = 30.0
CPS = 2  # x the simulator's 100: 200 calls/s
DELAYS = "0,1,2,5,10,20,30,60"
FINAL = ["call.completed", "call.failed", "call.busy", "call.no_answer", "call.machine", "call.cancelled",
         "call.skipped"]
GIVE_UP = 240.0
KILL_AT = 40.0


@dataclass
class Receiver:
    """A partner: verifies each request; 500 until `up_at` (monotonic), then 200."""

    secret: str = ""
    up_at: float = float("inf")
    requests: int = 0
    refused: int = 0
    bad_signatures: int = 0
    first_ok: dict = field(default_factory=dict)  # webhook-id -> (wall time received, payload)
    oks: dict = field(default_factory=dict)  # webhook-id -> 2xx answers given

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        if time.monotonic() < self.up_at:
            self.refused += 1
            return web.Response(status=500, text="not yet")
        wid = request.headers["webhook-id"]
        self.oks[wid] = self.oks.get(wid, 0) + 1
        self.first_ok.setdefault(wid, (time.time(), payload))
        return web.Response(text="ok")


class Server:
    """`python -m dialer.cli serve` on a port and a data folder of its own."""

    def __init__(self, name: str, cps: float = CPS) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DIALER_DATA_DIR": tempfile.mkdtemp(prefix=f"dialer-bench-hooks-{name}-"),
                    "DIALER_HOST": "127.0.0.1", "DIALER_PORT": str(self.port), "DIALER_DEMO_API_KEY": KEY,
                    "DIALER_LOG_LEVEL": "WARNING", "MONGODB_URI": "", "DIALER_PROVIDER": "simulator",
                    "DIALER_SIM_TIME_SCALE": "100", "DIALER_SIM_OUTCOMES": "answered=1",
                    "DIALER_SIM_MEAN_DURATION": "10", "DIALER_CPS": str(cps), "DIALER_MAX_CONCURRENT": "1000",
                    "DIALER_LEASE_SECONDS": "10", "DIALER_WEBHOOKS_ALLOW_INSECURE": "true",
                    "DIALER_WEBHOOK_RETRY_DELAYS": DELAYS, "DIALER_WEBHOOK_TIMEOUT": "5"}
        self.process: subprocess.Popen | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "dialer.cli", "serve"], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with session.get(self.url + "/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit(f"{self.name}: no answer on /health within 30 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    async def call(self, session: aiohttp.ClientSession, method: str, path: str, body=None) -> dict:
        async with session.request(method, self.url + path, json=body, headers={"x-api-key": KEY}) as resp:
            doc = await resp.json()
            if resp.status != 200:
                raise SystemExit(f"{self.name}: {method} {path}: {resp.status} {doc}")
            return doc["data"]


async def load_batch(session, server: Server) -> str:
    batch = await server.call(session, "POST", "/api/call/createBatch", {
        "name": "bench webhooks", "callingNumbers": ["+15005550006"], "concurrencyLimit": 1000,
        "callingWindow": {"start": "00:00", "end": "24:00"}})
    batch_id = batch["batchId"]
    await server.call(session, "POST", "/api/call/addCallsToBatch", {
        "batchId": batch_id, "call_data": [{"phoneNumber": f"+1212{5550000 + i:07d}"} for i in range(CALLS)]})
    return batch_id


@dataclass
class Dispatch:
    """A server's placed calls over time (sampled every 0.2 s, each at its answer's time)."""

    samples: list = field(default_factory=list)
    last: float | None = None

    def rate(self) -> float | None:
        """Calls/s between 10% and 90% placed (interpolated): the start and the tail sampled late do not count."""
        def crossing(n: float) -> float | None:
            for (t0, p0), (t1, p1) in zip(self.samples, self.samples[1:]):
                if p0 < n <= p1:
                    return t0 + (t1 - t0) * (n - p0) / (p1 - p0)
            return None

        low, high = crossing(0.1 * CALLS), crossing(0.9 * CALLS)
        return 0.8 * CALLS / (high - low) if low is not None and high is not None else None


async def run(session, with_control: bool, kill_at: float | None, cps: float = CPS) -> dict:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    servers = {"endpoint": Server("endpoint", cps)} | ({"control": Server("control", cps)} if with_control else {})
    try:
        for server in servers.values():
            await server.start(session)
        hook = await servers["endpoint"].call(session, "POST", "/api/webhooks/endpoints",
                                              {"url": f"http://127.0.0.1:{hook_port}/hook", "events": FINAL})
        receiver.secret = hook["secret"]
        # Both batches are written before either starts: the dispatchers then run side by side.
        batches = {name: await load_batch(session, s) for name, s in servers.items()}
        started = time.monotonic()
        receiver.up_at = started + FAIL_SECONDS
        up_wall = time.time() + FAIL_SECONDS
        for name, s in servers.items():
            await s.call(session, "POST", f"/api/call/batches/{batches[name]}/start")
        dispatch = {name: Dispatch() for name in servers}
        killed = restarted = None
        while time.monotonic() - started < GIVE_UP:
            now = time.monotonic()
            for name, s in servers.items():
                if dispatch[name].last is not None or (killed and not restarted and name == "endpoint"):
                    continue
                try:
                    placed = (await s.call(session, "GET", f"/api/call/batches/{batches[name]}"))["counters"]["attempts"]
                except aiohttp.ClientError:
                    continue
                dispatch[name].samples.append((time.monotonic(), placed))
                if placed >= CALLS:
                    dispatch[name].last = now
            if kill_at is not None and killed is None and now - started >= kill_at:
                servers["endpoint"].kill()
                killed = time.monotonic() - started
                await servers["endpoint"].start(session)
                restarted = time.monotonic() - started
            if len(receiver.first_ok) >= CALLS and all(d.last is not None for d in dispatch.values()):
                break
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        await asyncio.sleep(1)  # a repeat under way lands (counted as a duplicate)
    finally:
        for server in servers.values():
            server.stop()
        await runner.cleanup()
    calls = {}
    for wid, (_, payload) in receiver.first_ok.items():
        calls.setdefault(payload["data"]["callId"], set()).add(wid)
    latencies = sorted(at - _epoch(p["timestamp"]) for at, p in receiver.first_ok.values() if _epoch(p["timestamp"]) >= up_wall)
    return {"receiver": receiver, "calls": calls, "latencies": latencies, "dispatch": dispatch, "elapsed": elapsed,
            "killed": killed, "restarted": restarted}


def _epoch(stamp: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def report(title: str, r: dict) -> tuple[list[tuple[str, str, str]], bool]:
    rec: Receiver = r["receiver"]
    delivered = len(rec.first_ok)
    repeats = sum(n - 1 for n in rec.oks.values())
    one_id_per_call = all(len(ids) == 1 for ids in r["calls"].values())
    lat = r["latencies"]
    ok = delivered == CALLS and len(r["calls"]) == CALLS and one_id_per_call and rec.bad_signatures == 0
    rows = [
        (f"{title}: messages delivered (2xx), each verified", f"{delivered:,} of {CALLS:,} in {r['elapsed']:.0f} s; "
         f"{rec.bad_signatures} bad signatures", f"{CALLS:,}, 0 bad"),
        (f"{title}: calls announced / with one webhook-id each", f"{len(r['calls']):,} / "
         f"{'all' if one_id_per_call else 'NOT all'}", "every call, one id"),
        (f"{title}: 500s answered while down / 2xx repeats of a delivered id", f"{rec.refused:,} / {repeats:,}",
         "repeats only of one id"),
        (f"{title}: event -> delivery once up, p50 / p99 (n={len(lat):,})",
         f"{pct(lat, .5) * 1000:.0f} / {pct(lat, .99) * 1000:.0f} ms", "")]
    if r["killed"] is not None:
        rows.append((f"{title}: API SIGKILLed at / answering again at", f"{r['killed']:.1f} s / {r['restarted']:.1f} s",
                     ""))
    return rows, ok


async def amain(kill: bool, cps: float) -> int:
    print(f"bench/webhooks: {CALLS:,} calls, one endpoint (final call events) on loopback; receiver answers 500 "
          f"for {FAIL_SECONDS:g} s, then 200")
    print(f"  bench retry schedule DIALER_WEBHOOK_RETRY_DELAYS={DELAYS} (not production's); DIALER_CPS={cps} (x100), "
          "simulator at 100x, SQLite store in a temporary folder")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        first = await run(session, with_control=True, kill_at=None, cps=cps)
        rows, ok = report("side by side", first)
        rates = {name: d.rate() for name, d in first["dispatch"].items()}
        if None in rates.values():
            rows.append(("dispatcher calls/s", "a batch did not finish placing", ""))
            ok = False
        else:
            ratio = rates["endpoint"] / rates["control"]
            rows.append(("dispatcher calls/s (10-90% placed): with the endpoint / control",
                         f"{rates['endpoint']:.1f} / {rates['control']:.1f} = {ratio:.3f}", ">= 0.95"))
            ok = ok and ratio >= 0.95
        if kill:
            second_rows, second_ok = report("killed mid-run", await run(session, with_control=False, kill_at=KILL_AT))
            rows += second_rows
            ok = ok and second_ok
    width = max(len(r[0]) for r in rows)
    print(f"  {'figure':<{width}}  {'value':<44} goal")
    for name, value, goal in rows:
        print(f"  {name:<{width}}  {value:<44} {goal}")
    print(json.dumps({"ok": ok}))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-kill", action="store_true", help="skip the run that kills the API mid-run")
    parser.add_argument("--unbounded", action="store_true",
                        help="run 1 with DIALER_CPS=200 (x100): each dispatcher as fast as its CPU allows")
    args = parser.parse_args()
    return asyncio.run(amain(not args.no_kill, 200 if args.unbounded else CPS))


if __name__ == "__main__":
    sys.exit(main())
