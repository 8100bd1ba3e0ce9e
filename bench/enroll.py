"""The contact-enrollment face against addCallsToBatch, side by side in one run, over HTTP.

`python -m bench.enroll [--requests N]` starts the real app in a subprocess (bench/ingest_http.py's
server: embedded store, real aiohttp on 127.0.0.1) and sends, alternately, N requests of 1,000 records
each way, every request into a fresh batch: the records are bench/ingest.py's realistic traffic (foreign
numbers, odd formats, extensions, 3% duplicates in other renderings, which enrollment rejects and
addCallsToBatch collapses). Enrollment requests alternate between plain and chained (`groupByField`,
about 3 contacts per group). It prints the median latency of each kind, the ratio to addCallsToBatch,
the time until an enrollment's calls are all written (its 202 comes first), and the longest /health
answer while enrollments were running. Every answer's numbers are checked.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp
import orjson

from bench.ingest import generate
from bench.ingest_http import HEALTH_EVERY, _poll_health, _post, create_batch, server

CONTACTS = 1000


def contacts(records: list[dict], grouped: bool) -> list[dict]:
    out = []
    for i, record in enumerate(records):
        contact = {k: v for k, v in record.items() if k != "account_id"}
        contact["account_id"] = f"G{i // 3}" if grouped else record["account_id"]
        out.append(contact)
    return out


async def run(requests: int) -> None:
    work = generate(CONTACTS * requests)
    timeout = aiohttp.ClientTimeout(total=600)
    latencies: dict[str, list[float]] = {"addCallsToBatch": [], "enroll": [], "enroll grouped": []}
    written: list[float] = []
    health: list[float] = []
    async with server("app") as info, aiohttp.ClientSession(timeout=timeout) as session:
        base = f"http://127.0.0.1:{info['port']}"
        headers = {"x-api-key": info["key"], "Content-Type": "application/json"}

        async def new_batch() -> str:
            return await create_batch(session, base, headers, info["agentId"])

        stop = asyncio.Event()
        poller = asyncio.create_task(_poll_health(f"{base}/health", stop, health))
        await asyncio.sleep(HEALTH_EVERY)
        for n in range(requests + 1):  # the first round warms up and is not counted
            part = work.records[n % requests * CONTACTS:(n % requests + 1) * CONTACTS]
            distinct = len(set(work.callees[n % requests * CONTACTS:(n % requests + 1) * CONTACTS]))
            body = orjson.dumps({"batchId": await new_batch(), "call_data": part})
            seconds, status, raw = await _post(session, f"{base}/api/call/addCallsToBatch", headers, body)
            added = orjson.loads(raw)["data"].get("added")
            assert status == 200 and added == distinct, (status, raw[:300])
            if n:
                latencies["addCallsToBatch"].append(seconds)
            grouped = n % 2 == 1
            body = orjson.dumps({"contacts": contacts(part, grouped), **({"groupByField": "account_id"} if grouped else {})})
            started = time.perf_counter()
            seconds, status, raw = await _post(session, f"{base}/api/v1/agents/{info['agentId']}/schedule/sequences",
                                               headers, body)
            answer = orjson.loads(raw)
            assert status == 202 and answer["accepted"] == distinct, (status, raw[:300])
            assert answer["accepted"] + len(answer["rejected"]) == answer["total"] == len(part)
            while True:  # the 202 comes first; the calls are written in the background
                async with session.get(f"{base}/api/call/batches/{answer['batchId']}", headers=headers) as resp:
                    doc = await resp.json(loads=orjson.loads)
                if resp.status == 200 and doc["data"]["counters"]["scheduled"] == distinct:
                    break
                await asyncio.sleep(0.005)
            if n:
                latencies["enroll grouped" if grouped else "enroll"].append(seconds)
                written.append(time.perf_counter() - started)
        stop.set()
        await poller
    base_median = statistics.median(latencies["addCallsToBatch"])
    print(f"{requests} requests of {CONTACTS:,} realistic records each way (fresh batches, one server process)")
    print(f"  {'request':<32} {'median s':>9} {'vs addCallsToBatch':>19}")
    for label, values in latencies.items():
        if values:
            median = statistics.median(values)
            print(f"  {label:<32} {median:>9.4f} {median / base_median:>19.2f}")
    print(f"  enrollment 202 to every call written (median): {statistics.median(written):.4f} s")
    print(f"  /health while this ran: {len(health)} answers, longest {max(health) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10)
    asyncio.run(run(parser.parse_args().requests))


if __name__ == "__main__":
    main()
