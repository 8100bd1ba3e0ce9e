"""The partners and operators of a run, through the same use cases the HTTP handlers call.

Partners create batches and send their records in chunks (addCallsToBatch: a few records repeat a
number the batch already has) and enroll contacts (chained by a group field, or duplicates called in
turn); operators start, stop, patch, cancel and retry batches and give verdicts on chained calls. Stop
and cancel are requests in progress until they have settled (Lifecycle waits for the batch's claims to
be placed or handed back); their answer is when the checks start to forbid placements of the batch.
Once every record is sent, operators start what is paused and leave the batches to finish.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson
from bson import ObjectId

from dialer.core.batch_spec import parse_batch_spec, parse_batch_update
from dialer.core.statuses import ACTIVE_VALUES, BatchStatus
from dialer.ports import StoreUnavailable
from dialer.services.errors import Refused

from sim import workload as wl

if TYPE_CHECKING:
    from sim.run import World

PAUSED = BatchStatus.PAUSED.value
FINAL_BATCH = (BatchStatus.CANCELLED.value, BatchStatus.FAILED.value)


class Operators:
    def __init__(self, world: "World") -> None:
        self.w = world
        self.rng = world.act_rng
        self.sent = 0  # records sent
        self.open: list[ObjectId] = []  # batches still taking records
        self.made = 0
        self.enrolled: list[ObjectId] = []

    @property
    def sending(self) -> bool:
        return self.sent < self.w.config.calls

    # ---- each step ----------------------------------------------------------------------------
    async def act(self) -> None:
        w, rng = self.w, self.rng
        if self.sending:
            if w.step % 10 == 1:  # the calls waiting or in flight, from the kept counters (one read)
                tallies = await w.raw.calls.tallies_many(list(w.batches)) if w.batches else {}
                w.waiting = sum(t.calls for ts in tallies.values() for t in ts if t.status in ACTIVE_VALUES)
            if w.waiting < w.config.backlog:
                await self._send()
        elif not w.ending:
            w.ending = True
        if w.ending:
            if w.step % 200 == 0:
                await self._start_paused()
            return
        pick = rng.random()
        if pick < 0.02:
            w.next_due = None  # what an operator does may make calls due sooner
        if pick < 0.004:
            await self._stop()
        elif pick < 0.012:
            await self._start()
        elif pick < 0.016:
            await self._patch()
        elif pick < 0.0165:
            await self._cancel()
        elif pick < 0.019:
            await self._retry()
        elif pick < 0.020:
            await self._verdicts()

    # ---- partners -----------------------------------------------------------------------------
    async def _send(self) -> None:
        """One request: a new batch's first chunk, a chunk for an open batch, or an enrollment."""
        w, rng = self.w, self.rng
        if rng.random() < 0.03:
            await self._enroll()
            return
        while len(self.open) < w.config.open_batches and self.made * w.config.batch_calls[0] < w.config.calls * 2:
            await self._new_batch()
        if not self.open:
            await self._new_batch()
        batch_id = rng.choice(self.open)
        mine = w.batches[batch_id]
        n = min(w.config.chunk, mine["planned"] - mine["sent"], w.config.calls - self.sent)
        records = []
        for _ in range(max(1, n)):
            if mine["records"] and rng.random() < 0.03:
                records.append(rng.choice(mine["records"]))  # a number the batch already has, as sent then
                continue
            number = self.w.numbers.fresh(mine["numbers"])
            mine["numbers"].add(number)
            record: dict = {"phoneNumber": number, "name": "sim"}
            if rng.random() < 0.1:
                record["timezone"] = rng.choice(wl.ZONE_CHOICES)
            zones = wl.expected_zones(record.get("timezone"), number, mine["timezone"], mine["agent_zone"])
            w.checker.callee(str(batch_id), number, zones)
            mine["records"].append(record)
            records.append(record)
        w.next_due = None
        body = orjson.dumps({"batchId": str(batch_id), "call_data": records})
        try:
            outcome = await w.intake.ingestion.add_calls(w.principal, body)
        except Refused as exc:  # 409: the batch was cancelled meanwhile (a partner told so sends no more)
            w.result.counts[f"ingestion_{exc.code}"] += 1
            if exc.code == 409 and batch_id in self.open:
                self.open.remove(batch_id)
                return
        else:
            w.accepted += outcome.data.get("inserted", 0)
            w.result.counts[f"ingestion_{outcome.code}"] += 1
        self.sent += len(records)
        mine["sent"] += len(records)
        if mine["sent"] >= mine["planned"]:
            self.open.remove(batch_id)

    async def _new_batch(self) -> None:
        w, rng = self.w, self.rng
        agent = rng.choice(w.agents)
        self.made += 1
        body = wl.batch_body(rng, self.made, str(agent["_id"]), w.clock.now(), w.config.limit_scale,
                             w.config.wide_windows)
        spec = parse_batch_spec(body, w.intake.phones)
        batch = await w.intake.batches.create(w.principal.workspace_id, agent, spec)
        zones = agent.get("timezones") or []
        w.batches[batch["_id"]] = {"planned": rng.randrange(*w.config.batch_calls), "sent": 0, "records": [], "numbers": set(),
                                   "timezone": body.get("timezone"), "agent_zone": zones[0] if zones else None}
        w.checker.new_batch(str(batch["_id"]), batch["concurrencyLimit"], batch["callingWindow"], w.clock.now())
        self.open.append(batch["_id"])

    async def _enroll(self) -> None:
        """5-40 contacts, each with its own zone: chained by household, or duplicates called in turn."""
        w, rng = self.w, self.rng
        contacts = []
        chained = rng.random() < 0.6
        for i in range(rng.randrange(5, 41)):
            if contacts and not chained and rng.random() < 0.3:
                contacts.append(dict(rng.choice(contacts)))
                continue
            number = w.numbers.fresh({c["phoneNumber"] for c in contacts})
            zones = wl.number_zones(number)
            contact = {"phoneNumber": number, "timezone": rng.choice(zones), "household": f"h{i // rng.randrange(1, 4)}"}
            contacts.append(contact)
        body = {"contacts": contacts, **({"groupByField": "household"} if chained else {"allowDuplicates": True})}
        try:
            answer = await w.intake.enrollment.enroll(w.principal, str(w.agents[0]["_id"]), orjson.dumps(body), None)
        except Refused as exc:
            w.result.counts[f"enrollment_{exc.code}"] += 1
            return
        await w.intake.enrollment.close()  # its calls are written in the background: let that finish now
        data = orjson.loads(answer.body)
        batch = await w.raw.batches.by_public_id(data["batchId"])
        w.accepted += data["accepted"]
        self.sent += len(contacts)
        w.batches[batch["_id"]] = {"planned": 0, "sent": len(contacts), "records": [], "numbers": set(), "timezone": None,
                                   "agent_zone": None}
        w.checker.new_batch(str(batch["_id"]), batch["concurrencyLimit"], batch["callingWindow"], w.clock.now())
        for c in contacts:
            w.checker.callee(str(batch["_id"]), c["phoneNumber"], (c["timezone"],))
        self.enrolled.append(batch["_id"])
        w.result.counts["enrollments"] += 1

    # ---- operators ----------------------------------------------------------------------------
    async def _pick(self) -> dict | None:
        w = self.w
        candidates = [b for b in w.batches if b not in w.busy]
        if not candidates:
            return None
        return await w.raw.batches.get(self.rng.choice(candidates))

    async def _start(self, batch: dict | None = None) -> None:
        w = self.w
        stopped = [b for b in w.batches if w.checker.batches[str(b)].halted == "stopped" and b not in w.busy]
        if batch is None and stopped and self.rng.random() < 0.8:  # operators resume what they stopped
            batch = await w.raw.batches.get(self.rng.choice(stopped))
        batch = batch or await self._pick()
        if batch is None:
            return
        try:
            await w.api.lifecycle.start(batch)
        except (Refused, StoreUnavailable) as exc:
            w.result.counts[f"start_{getattr(exc, 'status', 503)}"] += 1
            return
        w.checker.resumed(str(batch["_id"]))
        w.result.counts["starts"] += 1

    async def _start_paused(self) -> None:
        for batch_id in list(self.w.batches):
            if batch_id in self.w.busy:
                continue
            batch = await self.w.raw.batches.get(batch_id)
            if batch is not None and batch["status"] == PAUSED:
                await self._start(batch)

    async def _stop(self) -> None:
        batch = await self._pick()
        if batch is not None:
            self._in_progress(batch, "stopped", self.w.api.lifecycle.stop(batch))

    async def _cancel(self) -> None:
        batch = await self._pick()
        if batch is not None:
            hang_up = self.rng.random() < 0.5
            self._in_progress(batch, "cancelled", self.w.api.lifecycle.cancel(batch, hang_up=hang_up))

    def _in_progress(self, batch: dict, how: str, request) -> None:
        """A stop or cancel, answered when it has settled: from then on no call of the batch may be placed."""
        w = self.w
        batch_id = batch["_id"]
        w.busy.add(batch_id)

        async def run() -> None:
            try:
                await request
            except (Refused, StoreUnavailable) as exc:
                w.result.counts[f"{how}_{getattr(exc, 'status', 503)}"] += 1
            else:
                w.checker.halted(str(batch_id), how)
                w.result.counts[how] += 1
            finally:
                w.busy.discard(batch_id)

        task = asyncio.get_running_loop().create_task(run())
        w.tasks.add(task)
        task.add_done_callback(w.tasks.discard)

    async def _patch(self) -> None:
        w = self.w
        batch = await self._pick()
        if batch is None or batch["status"] in FINAL_BATCH:
            return
        body = wl.patch_body(self.rng, w.config.limit_scale, w.config.wide_windows)
        before = w.clock.now()
        try:
            updated = await w.api.lifecycle.update(batch, parse_batch_update(body))
        except (Refused, StoreUnavailable) as exc:
            # Failed part way, it may have changed the batch: the checks accept the new values from now.
            if "concurrencyLimit" in body or "callingWindow" in body:
                w.checker.patched(str(batch["_id"]), before, body.get("concurrencyLimit"),
                                  parse_batch_update(body).get("callingWindow"))
            w.result.counts[f"patch_{getattr(exc, 'status', 503)}"] += 1
            return
        w.checker.patched(str(batch["_id"]), before, limit=updated["concurrencyLimit"] if "concurrencyLimit" in body
                          else None, window=updated["callingWindow"] if "callingWindow" in body else None)
        w.result.counts["patches"] += 1

    async def _retry(self) -> None:
        w = self.w
        batch = await self._pick()
        if batch is None:
            return
        outcomes = sorted(self.rng.sample(wl.OUTCOMES, self.rng.randrange(1, 5)))
        try:
            await w.api.lifecycle.retry(batch, outcomes)
        except (Refused, StoreUnavailable) as exc:
            w.result.counts[f"retry_{getattr(exc, 'status', 503)}"] += 1
            return
        w.checker.resumed(str(batch["_id"]))
        w.result.counts["retries"] += 1

    async def _verdicts(self) -> None:
        """The agent judges a few calls of an enrollment batch (placed ones: in flight or final)."""
        w = self.w
        if not self.enrolled:
            return
        batch_id = self.rng.choice(self.enrolled)
        calls = await w.raw.calls.page(batch_id, ["in_progress", "completed"], None, 20)
        for call in self.rng.sample(calls, min(3, len(calls))):
            try:
                await w.api.chains.record_verdict(call, self.rng.random() < 0.5, "sim")
            except (Refused, StoreUnavailable):
                continue
            w.result.counts["verdicts"] += 1
