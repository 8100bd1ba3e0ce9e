"""The HTTP half of bench/ingest.py (see its docstring): servers in subprocesses, the bench as the client.

`python -m bench.ingest_http app` serves the real app (build_app, embedded store, FixedClock at the
bench's instant) and `python -m bench.ingest_http floor` a bare aiohttp app whose handler only parses
the body with orjson; each applies tune_gc(), listens on 127.0.0.1 (port 0), prints one READY line
(its port and, for the app, the API key and agent of the workspace it created through app[TENANCY])
and serves until its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web

READY = "BENCH-READY "
SMALL_SHARE = 10  # the small request has 1/10 of the records
WARM_UP_RECORDS = 10_000  # above 1 MB: starts the worker process that parses large bodies
HEALTH_EVERY = 0.020  # seconds between an answer and the next poll
FLOOR_REQUESTS = 3
GOAL_GROWTH = 11.0
GOAL_FLOOR_RATIO = 0.25
GOAL_HEALTH_MS = 100.0


# --------------------------------------------------------------------------------------- the servers

def floor_app(max_body: int) -> web.Application:
    async def ingest(request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        return web.Response(body=orjson.dumps({"status": True, "data": {"records": len(doc["call_data"])}}),
                            content_type="application/json")

    app = web.Application(client_max_size=max_body)
    app.router.add_post("/api/call/addCallsToBatch", ingest)
    return app


async def serve(kind: str) -> None:
    from dialer.api.appkeys import TENANCY
    from dialer.composition import build_app
    from dialer.core.clock import FixedClock
    from dialer.runtime import tune_gc
    from dialer.settings import Settings
    from bench.ingest import AGENT_ZONE, T0

    tune_gc()  # as `dialer serve` does
    logging.getLogger("dialer.store").setLevel(logging.ERROR)
    # The app's store: the SQLite file in a fresh temporary folder (BENCH_DATA_DIR names another, or :memory:).
    data_dir = os.environ.get("BENCH_DATA_DIR") or tempfile.mkdtemp(prefix="dialer-bench-")
    settings = Settings.load(env={}, embedded_dispatcher="false", data_dir=data_dir)
    app = build_app(settings, FixedClock(T0)) if kind == "app" else floor_app(settings.max_body_bytes)
    runner = web.AppRunner(app, access_log=None)
    with contextlib.redirect_stdout(io.StringIO()):  # the demo tenant prints its key
        await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    info: dict = {"port": runner.addresses[0][1]}
    if kind == "app":
        tenancy = app[TENANCY]  # as tests/conftest.py make_api does
        workspace, key = await tenancy.create_workspace("bench")
        agent = await tenancy.create_agent(workspace["_id"], {
            "name": "bench agent", "requiredVariables": [], "callingNumbers": ["+14155550100"],
            "timezones": [AGENT_ZONE]})
        info.update(key=key, agentId=str(agent["_id"]))
    print(READY + orjson.dumps(info).decode(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)  # until stdin closes
    await runner.cleanup()


@contextlib.asynccontextmanager
async def server(kind: str):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ingest_http", kind, cwd=Path(__file__).resolve().parent.parent,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if not line:
                raise RuntimeError(f"the {kind} server exited before it was ready")
            if line.startswith(READY):
                break
        yield orjson.loads(line[len(READY):])
    finally:
        if proc.returncode is None:
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


# ---------------------------------------------------------------------------------------- the client

async def create_batch(session, base: str, headers: dict, agent_id: str) -> str:
    """A fresh batch of the bench's agent on the server at `base`; its id."""
    async with session.post(f"{base}/api/call/createBatch", headers=headers,
                            data=orjson.dumps({"name": "bench", "agentId": agent_id})) as resp:
        doc = await resp.json(loads=orjson.loads)
        if resp.status != 200:
            raise RuntimeError(f"createBatch answered {resp.status}: {doc}")
        return doc["data"]["batchId"]


@dataclass
class Answer:
    label: str
    records: int
    distinct: int
    seconds: float
    status: int
    data: dict

    def failure(self) -> str | None:
        """200, every distinct callee added and inserted once, the rest collapsed."""
        d = self.data
        if (self.status == 200 and d.get("added") == self.distinct and d.get("inserted") == self.distinct
                and d.get("updated") == 0 and d.get("duplicatesCollapsed") == self.records - self.distinct):
            return None
        return (f"{self.label}: status {self.status}, added {d.get('added')}, inserted {d.get('inserted')}, "
                f"updated {d.get('updated')}, collapsed {d.get('duplicatesCollapsed')}; expected 200 and "
                f"{self.distinct} added of {self.records} records ({d.get('message', '')} {d.get('errorMessage', '')})")


async def _post(session, url: str, headers: dict, body: bytes) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    async with session.post(url, headers=headers, data=body) as resp:
        raw = await resp.read()
        status = resp.status
    return time.perf_counter() - started, status, raw


async def _poll_health(url: str, stop: asyncio.Event, times: list[float]) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:  # a second client, its own connection
        while not stop.is_set():
            started = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            times.append(time.perf_counter() - started)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), HEALTH_EVERY)


@dataclass
class HttpResults:
    small: Answer | None = None
    full: Answer | None = None
    floor_seconds: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def report(self, work) -> list:
        from bench.ingest import Row

        small, full = self.small, self.full
        print(f"  {'end to end over HTTP (embedded store)':<46} {'rec/s':>12} {'seconds':>11}")
        for answer in (small, full):
            print(f"  {answer.label:<46} {answer.records / answer.seconds:>12,.0f} {answer.seconds:>11.3f}  "
                  f"status {answer.status}, added {answer.data.get('added')}, collapsed "
                  f"{answer.data.get('duplicatesCollapsed')} [{'ok' if answer.failure() is None else 'UNEXPECTED'}]")
        floor = statistics.median(self.floor_seconds)
        print(f"  {'HTTP floor (orjson.loads only), median of ' + str(len(self.floor_seconds)):<46} "
              f"{full.records / floor:>12,.0f} {floor:>11.3f}  (all: "
              + ", ".join(f"{s:.3f}" for s in self.floor_seconds) + ")")
        growth = full.seconds / small.seconds
        vs_floor = floor / full.seconds
        longest = max(self.health) * 1000 if self.health else float("nan")
        print(f"  /health during the {full.records:,}-record request: {len(self.health)} answers, longest "
              f"{longest:.1f} ms, median {statistics.median(self.health) * 1000 if self.health else float('nan'):.1f} ms")
        return [
            Row(f"HTTP {small.records:,} records: records/s", f"{small.records / small.seconds:,.0f}"),
            Row(f"HTTP {full.records:,} records: records/s", f"{full.records / full.seconds:,.0f}"),
            Row(f"HTTP growth time({full.records:,})/time({small.records:,})", f"{growth:.2f}",
                f"<= {GOAL_GROWTH:g}", growth <= GOAL_GROWTH),
            Row("HTTP floor records/s (median)", f"{full.records / floor:,.0f}"),
            Row("HTTP ours/floor (records/s)", f"{vs_floor:.2f}", f">= {GOAL_FLOOR_RATIO}", vs_floor >= GOAL_FLOOR_RATIO),
            Row("/health longest answer while ingesting", f"{longest:.1f} ms", f"< {GOAL_HEALTH_MS:g} ms",
                longest < GOAL_HEALTH_MS),
            Row("/health answers while ingesting", f"{len(self.health)}"),
        ]


async def measure_http(work) -> HttpResults:
    import aiohttp

    from bench.ingest import _settled

    out = HttpResults()
    n = len(work.records)
    small_n = max(1, n // SMALL_SHARE)
    warm_n = min(WARM_UP_RECORDS, n)
    timeout = aiohttp.ClientTimeout(total=600)
    print(f"end to end over HTTP: warm-up {warm_n:,} records, then {small_n:,}, then {n:,} "
          f"(fresh batches), /health polled during the last", flush=True)
    async with server("app") as info, aiohttp.ClientSession(timeout=timeout) as session:
        base = f"http://127.0.0.1:{info['port']}"
        headers = {"x-api-key": info["key"], "Content-Type": "application/json"}

        async def new_batch() -> str:
            return await create_batch(session, base, headers, info["agentId"])

        async def add(label: str, count: int, health: list[float] | None = None) -> Answer:
            body = work.body(await new_batch(), count)
            _settled()
            stop = asyncio.Event()
            poller = asyncio.create_task(_poll_health(f"{base}/health", stop, health)) if health is not None else None
            if poller is not None:
                await asyncio.sleep(HEALTH_EVERY)  # the poller is running before the request starts
            seconds, status, raw = await _post(session, f"{base}/api/call/addCallsToBatch", headers, body)
            if poller is not None:
                stop.set()
                await poller
            doc = orjson.loads(raw)
            answer = Answer(label, count, work.distinct(count), seconds, status, doc.get("data") or doc)
            print(f"  {label}: {seconds:.3f}s, status {status}", flush=True)
            if (problem := answer.failure()) is not None:
                out.failures.append(problem)
            return answer

        await add("warm-up", warm_n)
        out.small = await add(f"addCallsToBatch, {small_n:,} records", small_n)
        out.full = await add(f"addCallsToBatch, {n:,} records", n, out.health)
    async with server("floor") as info, aiohttp.ClientSession(timeout=timeout) as session:
        url = f"http://127.0.0.1:{info['port']}/api/call/addCallsToBatch"
        headers = {"Content-Type": "application/json"}
        await _post(session, url, headers, work.body("warm-up", warm_n))
        body = work.body("floor")
        for _ in range(FLOOR_REQUESTS):
            _settled()
            seconds, status, raw = await _post(session, url, headers, body)
            records = orjson.loads(raw).get("data", {}).get("records")
            if status != 200 or records != n:
                out.failures.append(f"HTTP floor: status {status}, {records} records parsed of {n}")
            out.floor_seconds.append(seconds)
        print("  HTTP floor: " + ", ".join(f"{s:.3f}s" for s in out.floor_seconds), flush=True)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("app", "floor"):
        raise SystemExit("usage: python -m bench.ingest_http app|floor")
    asyncio.run(serve(sys.argv[1]))
