"""The addCallsToBatch use case: from a request body to a written, started batch and an exact answer.

Order: parse -> validate the whole request (nothing written on any error) -> write chunk by chunk (a
failed chunk does not stop the others; each chunk's numbers on the workspace's do-not-call list, found by
one batched look-up, are left out and named in `suppressed`) -> start the batch -> answer. An
Idempotency-Key is the route's
(dialer/api/idempotent.py). CPU-heavy steps (JSON parsing, phone normalisation) run in a worker thread
for large requests so the event loop keeps answering other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from bson import ObjectId

from dialer.services.batches import BatchForbidden, BatchNotFound, Batches
from dialer.core.clock import Clock, as_utc
from dialer.ports import CallRepo, StoreUnavailable
from dialer.services.bodies import BodyReader
from dialer.services.calls import withdraw_unless_open
from dialer.metrics import Metrics
from dialer.services.errors import Refused
from dialer.services.idempotency import Claim
from dialer.core.records import (MAX_RECORD_BYTES, IngestContext, Plan, PlannedCall, Planner, oversized_records,
                                 validate_envelope)
from dialer.core.phones import PhoneNormaliser
from dialer.settings import Settings
from dialer.services.tenancy import Principal, Tenancy
from dialer.core.windows import CallingWindow
from dialer.core.dnc import rule, suppression
from dialer.core.statuses import BatchStatus

if TYPE_CHECKING:
    from dialer.services.dnc import Dnc

log = logging.getLogger("dialer.ingestion")
ENDED = (BatchStatus.CANCELLED.value, BatchStatus.FAILED.value)  # final: a batch that takes no more calls
INLINE_LIMIT = 500  # records (or ~bytes/200) below which work is done inline


@dataclass
class Outcome:
    code: int
    message: str
    data: dict = field(default_factory=dict)
    error: str = ""

    @property
    def body(self) -> dict:
        return {"message": self.message, "status": self.code == 200, "code": self.code,
                "errorMessage": self.error, "data": self.data}


async def offload(size: int, fn: Callable, *args: Any) -> Any:
    if size < INLINE_LIMIT:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def free_in_steps(lists: list[list], step: int = 1000) -> None:
    for items in lists:
        while items:
            del items[-step:]


class Ingestion:
    def __init__(self, settings: Settings, clock: Clock, tenancy: Tenancy, batches: Batches,
                 calls: CallRepo, phones: PhoneNormaliser, metrics: Metrics | None = None,
                 dnc: Dnc | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.tenancy = tenancy
        self.batches = batches
        self.calls = calls
        self.phones = phones
        self.on_enqueued: Callable[[], None] | None = None  # the embedded dispatcher's wake-up
        self.bodies = BodyReader()
        self.metrics = metrics or Metrics()
        self.dnc = dnc  # the workspace's do-not-call list, screened chunk by chunk

    async def add_calls(self, principal: Principal, raw: bytes, claim: Claim | None = None) -> Outcome:
        """`claim`: the request's Idempotency-Key claim. Its records' new calls then take its ids, so a
        retry that takes the key over after this process died finds what it wrote and writes it once."""
        body = await self.bodies.json(raw)
        try:
            batch_id, call_data = validate_envelope(body, self.settings.max_records_per_request)
        except ValueError as exc:
            raise Refused(400, "Bad Request", str(exc)) from None
        try:
            batch = await self.batches.get_owned(principal.workspace_id, batch_id)
        except BatchNotFound:
            raise Refused(404, "Not Found", "batch not found") from None
        except BatchForbidden:
            raise Refused(403, "Forbidden", "this API key does not own the batch") from None
        agent = await self.tenancy.get_agent(principal.workspace_id, batch["agentId"])
        if agent is None:
            raise Refused(404, "Not Found", "no agent found for the batch's calling numbers")
        plan = await self.plan_records(batch, agent, call_data, check_sizes=len(raw) > MAX_RECORD_BYTES)
        if plan.errors:
            self.metrics.records.labels("rejected").inc(len(plan.errors))
            raise Refused(400, "Bad Request",
                           f"{len(plan.errors)} of {plan.records} records are invalid; nothing was written",
                           data=plan.error_view())
        self.name_calls(plan, claim)
        outcome = await self.write_plan(batch, plan)
        self.metrics.records.labels("accepted").inc(plan.records)
        # A large request leaves millions of objects behind. Freed in one go (one C call, holding the
        # GIL) they stop the event loop ~110 ms for 100,000 records, wherever that happens: a worker
        # thread frees them a thousand records at a time, letting the loop in between.
        await offload(len(call_data), free_in_steps, [call_data, plan.calls])
        return outcome

    async def plan_records(self, batch: dict, agent: dict, records: list, check_sizes: bool = False) -> Plan:
        """Validate records for a batch (stored or about to be) and its agent: the plan, errors included.
        An enrollment's batch takes contacts from the enrollment face only: its duplicates wait their turn
        under keys of their own, which records added here would not see (a number dialled twice at once)."""
        if batch["status"] in ENDED:
            raise Refused(409, "Conflict", f"the batch is {batch['status']}: it takes no more calls (create a new batch)",
                          data={"status": batch["status"]})
        if batch.get("source") == "enrollment":
            raise Refused(409, "Conflict", "this batch was created by the enrollment face and takes no other contacts; "
                                           "enroll more with POST /api/v1/agents/{agentId}/schedule/sequences "
                                           "(each request makes a batch of its own)")
        plan: Plan = await offload(len(records), Planner(self.phones, self._context(batch, agent)).plan, records)
        if check_sizes:  # only a body over the document limit can hold a record too large to store
            plan.errors += await offload(len(records), oversized_records, records)
            plan.errors.sort(key=lambda e: e.index)
        return plan

    @staticmethod
    def name_calls(plan: Plan, claim: Claim | None) -> None:
        """Under an Idempotency-Key, the plan's new calls take the claim's ids (see write_plan)."""
        if claim is not None:
            for n, call in enumerate(plan.calls):
                call.call_id = claim.object_id(n)

    def _context(self, batch: dict, agent: dict) -> IngestContext:
        now = self.clock.now()
        scheduled = batch.get("scheduledAt")
        not_before = max(now, as_utc(scheduled)) if scheduled is not None else now
        zones = agent.get("timezones") or []
        return IngestContext(
            required_variables=agent.get("requiredVariables", []),
            window=CallingWindow.parse(batch["callingWindow"]),
            batch_zone=batch.get("timezone"),
            agent_zone=zones[0] if zones else None,
            not_before=not_before,
        )

    async def write_plan(self, batch: dict, plan: Plan, suppressed_as_calls: bool = False) -> Outcome:
        """Write a valid plan chunk by chunk (a failed chunk does not stop the others), start the batch.
        Numbers on the workspace's do-not-call list are not enqueued: named in `suppressed`, and with
        `suppressed_as_calls` (a face that shows them as calls) written as skipped calls saying why."""
        call_ids: list[str] = []
        failed: list[dict] = []
        in_flight: list[dict] = []
        suppressed: list[dict] = []
        inserted = updated = 0
        chunks = list(plan.chunks(self.settings.chunk_size))
        ahead = self._look_up(batch, chunks, 0)
        try:
            for number, chunk in enumerate(chunks, start=1):
                # The next chunk's do-not-call look-up runs (a read) while this chunk is written.
                looked_up, ahead = ahead, self._look_up(batch, chunks, number)
                if number > 1:
                    # The embedded store's writes never suspend: let other requests in between chunks.
                    await asyncio.sleep(0)
                try:
                    listed = await looked_up if looked_up is not None else {}
                    # Calls a request with this Idempotency-Key wrote before its process died are not written
                    # again (such a call may have been placed and ended since): they count as inserted.
                    earlier = await self.calls.holders([c.call_id for c in chunk]) if chunk[0].call_id else {}
                    if earlier:
                        call_ids += [str(c.call_id) for c in chunk if c.call_id in earlier]
                        inserted += len(earlier)
                        chunk = [c for c in chunk if c.call_id not in earlier]
                        if not chunk:
                            continue
                    chunk = await self._screen(batch, chunk, listed, suppressed, suppressed_as_calls)
                    if not chunk:
                        continue
                    result = await self.calls.enqueue(batch, chunk, self.clock.now())
                except StoreUnavailable as exc:
                    log.error("chunk write failed", extra={"batchId": str(batch["_id"]), "chunk": number,
                                                           "error": str(exc)})
                    failed.append({"chunkNum": number, "error": str(exc)})
                    continue
                call_ids += result.call_ids
                in_flight += result.in_flight
                inserted += result.inserted
                updated += result.updated
                if result.error:
                    log.error("chunk write failed", extra={"batchId": str(batch["_id"]), "chunk": number,
                                                           "error": result.error})
                    failed.append({"chunkNum": number, "error": result.error})
        finally:
            if ahead is not None:
                ahead.cancel()
        status = batch["status"]
        if call_ids or (suppressed and suppressed_as_calls):  # a batch of suppressed calls only completes
            status = await self.batches.start_after_insert(batch)
            if await withdraw_unless_open(self.calls, batch["_id"], status, self.clock.now()):
                status = status or BatchStatus.CANCELLED.value  # cancelled (deleted) while they were written
            if self.on_enqueued is not None:
                self.on_enqueued()
        data = {"added": len(call_ids), "callIds": call_ids, "inserted": inserted, "updated": updated,
                "duplicatesCollapsed": plan.collapsed, "inFlight": in_flight, "suppressed": suppressed,
                "batchStatus": status}
        log.info("calls enqueued", extra={"batchId": str(batch["_id"]), "added": len(call_ids),
                                          "failedChunks": len(failed), "records": plan.records})
        if not failed:
            message = "Calls enqueued successfully"
            if in_flight:
                message += f"; {len(in_flight)} numbers already in a call were not re-enqueued"
            if suppressed:
                message += f"; {len(suppressed)} numbers on the do-not-call list were not enqueued"
            return Outcome(200, message, data)
        data["failedChunks"] = failed
        if not call_ids and not in_flight:
            return Outcome(503, "Service Unavailable", data, "the database failed; nothing was written, retry")
        return Outcome(207, "Some calls failed to enqueue", data, "Partial content, check failedChunks for details")

    def _look_up(self, batch: dict, chunks: list[list[PlannedCall]], n: int) -> asyncio.Future | None:
        """The listed numbers of chunk `n` (number -> its listing), looked up in the background."""
        if self.dnc is None or n >= len(chunks):
            return None
        task = asyncio.ensure_future(self.dnc.screen(batch["workspaceId"], {c.e164 for c in chunks[n]}))
        # Awaited by its chunk, or cancelled when the write stops early: never an unretrieved failure.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return task

    async def _screen(self, batch: dict, chunk: list[PlannedCall], listed: dict[str, dict], suppressed: list[dict],
                      as_calls: bool) -> list[PlannedCall]:
        """The chunk without its listed numbers, which join `suppressed`."""
        if not listed:
            return chunk
        stopped = [c for c in chunk if c.e164 in listed]
        suppressed += [{"index": c.index, "phoneNumber": c.raw_phone, "reason": rule(listed[c.e164])} for c in stopped]
        if as_calls:
            now = self.clock.now()
            for call in stopped:
                call.suppressed = suppression(now, listed[call.e164])
                call.call_id = call.call_id or ObjectId()
            await self.calls.insert_new(batch, stopped, now)
        return [c for c in chunk if c.e164 not in listed]
