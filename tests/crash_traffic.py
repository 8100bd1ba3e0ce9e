"""A partner's and its operators' traffic for the crash tests, driven through tests/crash_harness.py's
Chaos (every write with an Idempotency-Key, each retried with its key until answered), and the settled
state read back for tests/crash_checks.py.

Rounds: each does one thing, drawn by a seeded random.Random, while a kill -9 is due at a drawn moment
(inside the request, or right after its answer): an addCallsToBatch (one of 1,000-5,000 records early
on, a few hundred after), an enrollment with contact chaining (groups of three) or with duplicates
allowed, a stop or a start of the batch operators cycle, the stop of the batch that is to stay paused,
the cancel of the batch to be cancelled, or nothing at all while calls are in flight.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from dataclasses import dataclass
from typing import Any

from tests.crash_checks import BatchPlan, State, World, counters_differ
from tests.crash_harness import Answer, Chaos

CALLERS = ["+14155550101", "+14155550102"]
ALL_DAY = {"start": "00:00", "end": "24:00"}
CREDITS = 1_000_000
SETTLE_TIMEOUT = 120.0
COUNTERS_GRACE = 20.0


@dataclass(frozen=True)
class Volume:
    """How much traffic a run sends: `kills` rounds (one kill each); record counts per request."""

    kills: int = 20
    big: int = 1_000  # the first addCallsToBatch: 1,000-5,000 records
    add: tuple[int, int] = (50, 250)
    enroll: tuple[int, int] = (12, 60)
    fixed: int = 300  # records of the batches cycled, stopped for good and cancelled (limit 3: never done by then)


def enrollment_zone(now: dt.datetime) -> str:
    """An Etc/GMT zone where it is about 13:00 now: the enrollment batches' default window (08:00-21:00
    local) is open for hours whenever the test runs. (Etc/GMT+5 is five hours behind UTC.)"""
    offset = 13 - now.hour
    offset = (offset + 12) % 24 - 12  # -12 .. 11
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


class Partner:
    def __init__(self, chaos: Chaos, seed: int, volume: Volume) -> None:
        self.chaos = chaos
        self.rng = random.Random(seed)
        self.volume = volume
        self.world = World(answers=chaos.answers, credits_start=CREDITS)
        self.workspace = ""
        self.agent = ""
        self.zone = enrollment_zone(dt.datetime.now(dt.timezone.utc))
        self._numbers = 0
        self._keys = 0
        self.cycled = self.paused = self.cancelled = ""

    # ---- requests ------------------------------------------------------------------------------
    def key(self, what: str) -> str:
        self._keys += 1
        return f"crash-{what}-{self._keys}"

    def numbers(self, n: int) -> list[str]:
        start, self._numbers = self._numbers, self._numbers + n
        return [f"+1202{i:07d}" for i in range(start, start + n)]

    async def ok(self, method: str, path: str, body: Any = None, codes=(200,), **kw: Any) -> Answer:
        answer = await self.chaos.send(method, path, body, label=kw.pop("label", f"{method} {path}"), **kw)
        assert answer.status in codes, f"{method} {path}: {answer.status} {answer.body[:500]!r}"
        return answer

    async def setup(self) -> None:
        ws = (await self.ok("POST", "/api/admin/workspaces", {"name": "crash"}, admin=True,
                            idem=self.key("workspace"))).json()["data"]
        self.workspace, self.chaos.api_key = ws["workspaceId"], ws["apiKey"]
        agent = {"name": "crash agent", "requiredVariables": [], "callingNumbers": CALLERS,
                 "timezones": ["America/New_York"]}
        self.agent = (await self.ok("POST", f"/api/admin/workspaces/{self.workspace}/agents", agent, admin=True,
                                    idem=self.key("agent"))).json()["data"]["agentId"]
        await self.ok("PATCH", f"/api/admin/workspaces/{self.workspace}",
                      {"credits": CREDITS, "defaultConcurrencyLimit": 10}, admin=True, idem=self.key("credits"))

    async def operators_batches(self) -> None:
        """The batches operators act on: one cycled (stop, start), one stopped for good, one cancelled."""
        self.cycled = await self.create_batch("cycled", 20)
        self.paused = await self.create_batch("stays paused", 3)
        self.cancelled = await self.create_batch("cancelled", 3)
        for batch in (self.cycled, self.paused, self.cancelled):
            await self.add_calls(batch, self.volume.fixed)

    async def create_batch(self, name: str, limit: int) -> str:
        body = {"name": name, "agentId": self.agent, "concurrencyLimit": limit, "callingWindow": ALL_DAY}
        batch = (await self.ok("POST", "/api/call/createBatch", body, idem=self.key("batch"))).json()["data"]["batchId"]
        self.world.batches[batch] = BatchPlan(batch)
        return batch

    async def new_batch_with(self, records: int, limit: int) -> None:
        """createBatch, then addCallsToBatch (both may be cut short by the kill)."""
        await self.add_calls(await self.create_batch(f"{records} records", limit), records)

    async def add_calls(self, batch: str, n: int) -> None:
        numbers = self.numbers(n)
        records = [{"phoneNumber": number, "name": f"Contact {number[-7:]}", "account_id": number[-7:]}
                   for number in numbers]
        answer = await self.ok("POST", "/api/call/addCallsToBatch", {"batchId": batch, "call_data": records},
                               idem=self.key("add"), label=f"addCallsToBatch of {n} records")
        self.world.acks.append((batch, numbers, answer.json()["data"]))
        self.world.batches[batch].numbers.update(numbers)

    async def enroll(self, n: int, chained: bool) -> None:
        if chained:
            numbers = self.numbers(n)
            contacts = [{"phoneNumber": num, "name": f"Contact {num[-7:]}", "account_id": f"acc-{i // 3}"}
                        for i, num in enumerate(numbers)]
            body = {"groupByField": "account_id", "timezone": self.zone, "contacts": contacts}
        else:  # every fifth contact calls a number already in the request: scheduled one after the other
            numbers = self.numbers(n - n // 5)
            numbers += self.rng.sample(numbers, n // 5)
            body = {"allowDuplicates": True, "timezone": self.zone,
                    "contacts": [{"phoneNumber": num, "name": "Dup"} for num in numbers]}
        key = self.key("enroll")
        answer = (await self.ok("POST", f"/api/v1/agents/{self.agent}/schedule/sequences", body, codes=(202,),
                                idem=key, label=f"enrollment of {n} contacts")).json()
        self.world.enrolled.append((key, numbers, answer))
        plan = self.world.batches.setdefault(answer["batchId"], BatchPlan(answer["batchId"]))
        plan.numbers.update(numbers)

    async def operate(self, batch: str, verb: str, body: Any = None) -> None:
        """stop / start / cancel, retried until answered. A stop of a batch that is not running (nothing
        to run yet, or done) is a 409; so is a cancel retried after its first try went through."""
        plan = self.world.batches[batch]
        if verb == "start":
            plan.quiet[-1][1] = time.time()  # from the moment it is asked, placing is allowed again
        answer = await self.ok("POST", f"/api/call/batches/{batch}/{verb}", body, codes=(200, 409),
                               label=f"{verb} of batch {batch}")
        status = answer.json()["data"].get("status")
        if verb == "cancel":
            assert status == "cancelled", f"cancel answered {answer.status} {answer.body[:300]!r}"
            plan.expect = "cancelled"
        if verb in ("stop", "cancel") and status in ("paused", "cancelled"):
            plan.quiet.append([answer.at, None])
        if verb == "stop" and batch == self.paused:
            assert status == "paused", f"stop answered {answer.status} {answer.body[:300]!r}"
            plan.expect = "paused"

    # ---- the rounds ----------------------------------------------------------------------------
    async def rounds(self) -> None:
        """`kills` rounds, one kill -9 of the server in each, at a drawn moment."""
        rng, v = self.rng, self.volume
        stop_at, cancel_at = rng.sample(range(2, max(4, v.kills // 2)), 2)
        for n in range(v.kills):
            if n == 0:
                await self.during(self.new_batch_with(v.big, 50), self.add_delay(v.big), f"addCallsToBatch of {v.big}")
            elif n == stop_at:
                await self.right_after(self.operate(self.paused, "stop"), "right after a stop")
            elif n == cancel_at:
                body = {"hangUp": rng.random() < 0.5}
                await self.during(self.operate(self.cancelled, "cancel", body), rng.uniform(0.0, 0.5),
                                  "during a cancel")
            else:
                await self.random_round(n)

    async def random_round(self, n: int) -> None:
        rng, v = self.rng, self.volume
        kind = rng.choices(["add", "chain", "dupes", "cycle", "flight"], [3, 2, 1, 2, 2])[0]
        if kind == "add":
            size = rng.randint(*v.add)
            if rng.random() < 0.3:
                work = self.add_calls(self.cycled, size)
            else:
                work = self.new_batch_with(size, rng.choice([10, 30]))
            await self.during(work, self.add_delay(size), f"addCallsToBatch of {size}")
        elif kind in ("chain", "dupes"):
            size = rng.randint(*v.enroll)
            # Answered within ~10 ms, its batch and calls written in the background within as much again.
            await self.during(self.enroll(size, kind == "chain"), rng.uniform(0.0, 0.03), f"enrollment of {size}")
        elif kind == "cycle":
            quiet = self.world.batches[self.cycled].quiet
            verb = "start" if quiet and quiet[-1][1] is None else "stop"
            if rng.random() < 0.5:
                await self.right_after(self.operate(self.cycled, verb), f"right after a {verb}")
            else:
                # A stop answers once the batch's claims are placed or handed back (up to ~0.5 s here).
                await self.during(self.operate(self.cycled, verb), rng.uniform(0.0, 0.5 if verb == "stop" else 0.01),
                                  f"during a {verb}")
        else:
            await self.chaos.kill_after(rng.uniform(0.1, 0.8), "while calls are in flight")

    def add_delay(self, records: int) -> float:
        """A moment inside a createBatch and addCallsToBatch (here: ~0.15 s for 1,000 records, 0.6 s for
        5,000), or just after its answer."""
        return self.rng.uniform(0.0, 1.5 * (0.02 + records * 0.00013))

    async def during(self, work, delay: float, label: str) -> None:
        await asyncio.gather(work, self.chaos.kill_after(delay, label))

    async def right_after(self, work, label: str) -> None:
        await work
        await self.chaos.kill_server(label)

    async def finish(self) -> None:
        """The cycled batch runs to its end (it is not meant to stay stopped)."""
        quiet = self.world.batches[self.cycled].quiet if self.cycled else []
        if quiet and quiet[-1][1] is None:
            await self.operate(self.cycled, "start")

    # ---- the settled state ---------------------------------------------------------------------
    async def settled(self, record) -> State:
        """Wait (bounded) until nothing moves: every batch final (the paused one without calls in
        flight), the provider quiet with every call ended; then read the state. Counters written
        behind (MongoDB: within half a second, drift repaired by the reaper's recount) get
        COUNTERS_GRACE more to agree with the calls."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while waiting := self._unsettled(state := await self.read_state(), record()):
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled after {SETTLE_TIMEOUT:.0f} s: {waiting}")
            await asyncio.sleep(0.5)
        deadline = time.monotonic() + COUNTERS_GRACE
        while counters_differ(state) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            state = await self.read_state()
        return state

    def _unsettled(self, state: State, record: list[dict]) -> list[str]:
        out = [f"batch {b} {v['status']} (inFlight {v['counters']['inFlight']}, waiting {v['counters']['waiting']})"
               for b, v in state.views.items()
               if v["status"] not in ("completed", "cancelled")
               and not (v["status"] == "paused" and v["counters"]["inFlight"] == 0)]
        creates = sum(r["event"] == "create" for r in record)
        ends = sum(r["event"] == "end" for r in record)
        if creates != ends or (record and record[-1]["event"] != "quiet"):
            out.append(f"provider: {creates} calls created, {ends} ended, callbacks still going")
        return out

    async def read_state(self) -> State:
        views, calls = {}, {}
        for batch in self.world.batches:
            views[batch] = (await self.ok("GET", f"/api/call/batches/{batch}")).json()["data"]
            calls[batch] = await self.all_calls(batch)
        ws = (await self.ok("GET", f"/api/admin/workspaces/{self.workspace}", admin=True)).json()["data"]
        return State(views, calls, ws["credits"], await self.listed())

    async def listed(self) -> set[str]:
        """Every batch of the workspace, as GET /api/call/batches lists them."""
        out, cursor = set(), None
        while True:
            query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
            page = (await self.ok("GET", f"/api/call/batches{query}")).json()
            out |= {b["batchId"] for b in page["data"]["batches"]}
            if not (cursor := page["data"]["nextCursor"]):
                return out

    async def all_calls(self, batch: str) -> list[dict]:
        out, cursor = [], None
        while True:
            page = (await self.ok("GET", f"/api/call/batches/{batch}/calls?limit=1000"
                                  + (f"&cursor={cursor}" if cursor else ""))).json()["data"]
            out += page["calls"]
            cursor = page["nextCursor"]
            if not cursor:
                return out
