"""The durable store's cost: the SQLite file against SQLite's :memory: (no file), side by side in one run.

Run with `python -m bench.store` (part of `make bench`). Each figure is measured on both stores in the
same run, alternating, so the machine's drift touches both alike; the goals are ratios, plus the
absolute bounds the product promises.

  ingest 100k     real `dialer serve` processes (one per store, started side by side), the bench as the
                  partner: POST addCallsToBatch with 100,000 realistic records (bench/ingest.py's
                  generator: US and foreign numbers in many formats, 2% duplicates) into a fresh batch,
                  timed from the first byte sent to the answer. The first request is "cold" (the first
                  large body of the process), the next ones "warm"; reported per store, and the ratio
                  file / :memory: of the warm median. Goal: <= 1.5, and cold within 1.25x of warm.
  /health         polled every 20 ms during every 100k request; the longest answer. Goal < 100 ms.
  dispatch CPU    bench/dispatch.py's cpu_per_placed (one batch, limit 50, 10,000 calls queued, virtual
                  clock, simulator), process CPU (the store's threads included) per placed call, and the
                  database transactions per placed call. Goals: file / :memory: <= 1.5; transactions <= 4.
  1M calls        the file store's server after 1,000,000 calls are stored (ten 100k requests): its RSS
                  (goal < 400 MB); then SIGTERM, a start on the same file, and the time until it answers
                  /health and a batch list (goal < 5 s).

Options: --records N (per request; 100,000), --rounds N (warm requests per store; 3), --million N (calls
stored before the restart; 1,000,000; 0 skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench.ingest import generate
from bench.load import free_port

KEY = "bench-store-key-0123456789"
HEALTH_EVERY = 0.020
GOAL_RATIO = 1.5
GOAL_COLD = 1.25
GOAL_HEALTH_MS = 100.0
GOAL_RSS_MB = 400.0
GOAL_START_S = 5.0
GOAL_OPS = 4.0


@dataclass
class Server:
    name: str
    data_dir: str
    port: int = 0
    process: subprocess.Popen | None = None
    agent: str = ""
    cold: float = 0.0
    warm: list[float] = field(default_factory=list)
    health_ms: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


async def start(server: Server, session: aiohttp.ClientSession) -> float:
    """Start `dialer serve` on the server's data folder; seconds until it answers /health and a batch list."""
    server.port = server.port or free_port()
    env = {**os.environ, "DIALER_DATA_DIR": server.data_dir, "DIALER_PORT": str(server.port),
           "DIALER_DEMO_API_KEY": KEY, "DIALER_EMBEDDED_DISPATCHER": "false", "DIALER_LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    server.process = subprocess.Popen([sys.executable, "-m", "dialer.cli", "serve"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name}: the server exited with {server.process.returncode}")
        try:
            async with session.get(f"{server.base}/health") as resp:
                if resp.status == 200:
                    async with session.get(f"{server.base}/api/call/batches?limit=1", headers={"x-api-key": KEY}) as b:
                        if b.status == 200:
                            break
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    async with session.get(f"{server.base}/api/agents", headers={"x-api-key": KEY}) as resp:
        server.agent = (await resp.json())["data"]["agents"][0]["agentId"]
    return elapsed


def stop(server: Server) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(60)


async def poll_health(session: aiohttp.ClientSession, url: str, done: asyncio.Event, worst: list[float]) -> None:
    while not done.is_set():
        began = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
        worst[0] = max(worst[0], time.perf_counter() - began)
        await asyncio.sleep(HEALTH_EVERY)


async def ingest(server: Server, session: aiohttp.ClientSession, records: list[dict]) -> float:
    """One addCallsToBatch of these records into a fresh batch; its seconds (and the worst /health)."""
    headers = {"x-api-key": KEY, "Content-Type": "application/json"}
    async with session.post(f"{server.base}/api/call/createBatch", headers=headers,
                            data=orjson.dumps({"name": "bench", "agentId": server.agent})) as resp:
        batch = (await resp.json())["data"]["batchId"]
    body = orjson.dumps({"batchId": batch, "call_data": records})
    done, worst = asyncio.Event(), [0.0]
    poller = asyncio.create_task(poll_health(session, f"{server.base}/health", done, worst))
    began = time.perf_counter()
    async with session.post(f"{server.base}/api/call/addCallsToBatch", headers=headers, data=body) as resp:
        answer = await resp.json()
    elapsed = time.perf_counter() - began
    done.set()
    await poller
    if resp.status != 200 or answer["data"]["added"] <= 0:
        raise SystemExit(f"{server.name}: addCallsToBatch answered {resp.status}: {str(answer)[:300]}")
    server.health_ms = max(server.health_ms, worst[0] * 1000)
    return elapsed


def renumbered(records: list[dict], round_: int) -> list[dict]:
    """The same realistic records with other subscribers: the area code 2xx -> 3xx... per round, so each
    request writes new calls (foreign numbers are kept; their batch is fresh anyway)."""
    return [{**r, "account_id": f"{r['account_id']}-{round_}"} for r in records]


async def dispatch_figures(queued: int) -> dict[str, tuple[float, float]]:
    from bench.dispatch import cpu_per_placed

    await cpu_per_placed(1000, 1, "sqlite-memory")  # warm-up, not reported
    out: dict[str, list] = {"sqlite-memory": [], "sqlite": []}
    for _ in range(2):
        for backend in ("sqlite-memory", "sqlite"):
            per, _, _, ops = await cpu_per_placed(queued, 1, backend)
            out[backend].append((per, ops))
    return {b: (statistics.median(p for p, _ in v), statistics.median(o for _, o in v)) for b, v in out.items()}


def row(rows: list, name: str, value: str, goal: str, met: bool | None) -> None:
    rows.append((name, value, goal, "" if met is None else ("MET" if met else "MISSED")))


async def main_async(args: argparse.Namespace) -> int:
    work = generate(args.records)
    folder = tempfile.mkdtemp(prefix="dialer-bench-store-")
    memory, disk = Server(":memory:", ":memory:"), Server("file", folder)
    rows: list[tuple[str, str, str, str]] = []
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            for server in (memory, disk):
                await start(server, session)
            print(f"store bench: {args.records:,} records per request, {args.rounds} warm requests per store")
            for i in range(args.rounds + 1):
                for server in ((memory, disk) if i % 2 == 0 else (disk, memory)):
                    seconds = await ingest(server, session, renumbered(work.records, i))
                    if i == 0:
                        server.cold = seconds
                    else:
                        server.warm.append(seconds)
                    print(f"  {server.name:>8} request {i + 1} ({'cold' if i == 0 else 'warm'}): {seconds:.2f} s")
            for server in (memory, disk):
                warm = statistics.median(server.warm)
                row(rows, f"ingest {args.records:,}, {server.name}: warm median / cold", f"{warm:.2f} / {server.cold:.2f} s",
                    "", None)
                row(rows, f"ingest, {server.name}: cold / warm", f"{server.cold / warm:.2f}", f"<= {GOAL_COLD}",
                    server.cold / warm <= GOAL_COLD)
                row(rows, f"longest /health during ingest, {server.name}", f"{server.health_ms:.0f} ms",
                    f"< {GOAL_HEALTH_MS:.0f} ms", server.health_ms < GOAL_HEALTH_MS)
            ratio = statistics.median(disk.warm) / statistics.median(memory.warm)
            row(rows, "ingest, file / :memory: (warm medians)", f"{ratio:.2f}", f"<= {GOAL_RATIO}", ratio <= GOAL_RATIO)
            row(rows, "server RSS after the requests, :memory: / file", f"{memory.rss_mb():.0f} / {disk.rss_mb():.0f} MB",
                "", None)
            stop(memory)
            if args.million:
                stored = args.records * (args.rounds + 1)
                i = args.rounds + 1
                while stored < args.million:
                    await ingest(disk, session, renumbered(work.records, i))
                    stored += args.records
                    i += 1
                rss = disk.rss_mb()
                row(rows, f"server RSS, file store, {stored:,} calls stored", f"{rss:.0f} MB", f"< {GOAL_RSS_MB:.0f} MB",
                    rss < GOAL_RSS_MB)
                stop(disk)
                size = sum(p.stat().st_size for p in Path(folder).iterdir()) / 1e6
                seconds = await start(disk, session)
                row(rows, f"start-up on the file ({stored:,} calls, {size:.0f} MB) until it serves",
                    f"{seconds:.2f} s", f"< {GOAL_START_S:.0f} s", seconds < GOAL_START_S)
        finally:
            stop(memory)
            stop(disk)
    figures = await dispatch_figures(args.queued)
    (mem_cpu, mem_ops), (file_cpu, file_ops) = figures["sqlite-memory"], figures["sqlite"]
    row(rows, f"dispatch CPU per placed call, {args.queued:,} queued, :memory: / file",
        f"{mem_cpu * 1e3:.2f} / {file_cpu * 1e3:.2f} ms", "", None)
    row(rows, "dispatch CPU per placed call, file / :memory:", f"{file_cpu / mem_cpu:.2f}", f"<= {GOAL_RATIO}",
        file_cpu / mem_cpu <= GOAL_RATIO)
    row(rows, "database transactions per placed call, :memory: / file", f"{mem_ops:.2f} / {file_ops:.2f}", f"<= {GOAL_OPS:g}",
        file_ops <= GOAL_OPS)
    width = max(len(r[0]) for r in rows)
    print(f"\n  {'figure':<{width}}  {'value':>22}  {'goal':>10}")
    for name, value, goal, verdict in rows:
        print(f"  {name:<{width}}  {value:>22}  {goal:>10}  {verdict}")
    missed = [r[0] for r in rows if r[3] == "MISSED"]
    print(f"\n  goals missed: {len(missed)} of {sum(1 for r in rows if r[3])}" + (f" ({'; '.join(missed)})" if missed else ""))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--queued", type=int, default=10_000)
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
