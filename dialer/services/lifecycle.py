"""The batch lifecycle for operators: list, start, stop, cancel, retry, delete (DESIGN.md "Batch lifecycle").

Every status change is a move of core/machine.py. Operators double-click: start on a running batch
and stop on a paused one change nothing and succeed; a transition the status forbids is refused
(409) naming the status. Stop means stop: once `stop` or `cancel` has answered, no call of the batch
is placed by any dispatcher (the placer re-reads the running batches before it places a claim, and
these wait until the batch has no claim left unplaced); calls already in flight end normally, or are
hung up through the provider when `cancel` is asked to.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Mapping

from bson import ObjectId

from dialer.core import machine
from dialer.core.clock import Clock
from dialer.core.statuses import RETRYABLE_OUTCOMES, BatchStatus
from dialer.ports import BatchRepo, CallRepo, IntakeRepo, StoreUnavailable
from dialer.services.batches import Batches, batch_view, counters_view
from dialer.services.calls import withdraw_all
from dialer.services.errors import Refused
from dialer.services.paging import page_query
from dialer.services.tenancy import parse_id

RUN_AGAIN_PAUSES = (0.05, 0.25, 1.0, None)  # a retried batch's move: tried again after each, then a 503
log = logging.getLogger("dialer.lifecycle")
CHUNK = 1000
MAX_PAGE = 100
DEFAULT_PAGE = 20
DEFAULT_RETRY_OUTCOMES = ["busy", "failed", "machine", "no_answer"]
BATCH_STATUSES = {s.value for s in BatchStatus}
UPDATABLE_STATUSES = [s.value for s in (BatchStatus.PENDING, BatchStatus.RUNNING, BatchStatus.PAUSED, BatchStatus.COMPLETED)]


def conflict(batch: dict, verb: str) -> Refused:
    return Refused(409, "Conflict", f"the batch is {batch['status']}: it cannot be {verb}", {"status": batch["status"]})


class Lifecycle:
    def __init__(self, batches: Batches, repo: BatchRepo, calls: CallRepo, clock: Clock,
                 hang_up: Callable[[str], Awaitable[None]] | None = None, settle_seconds: float = 15.0,
                 poll_seconds: float = 0.05, intakes: IntakeRepo | None = None) -> None:
        self.batches = batches
        self.repo = repo
        self.calls = calls
        self.clock = clock
        self.hang_up = hang_up  # the provider's hangup, when this process has one
        self.settle_seconds = settle_seconds  # the rate horizon plus the provider's timeout, and some
        self.poll_seconds = poll_seconds
        self.on_change: Callable[[], None] | None = None  # the embedded dispatcher's wake-up
        self.intakes = intakes  # an enrollment batch is not deleted while its calls are being written

    async def view(self, batch: dict) -> dict:
        return batch_view(batch, await self.batches.counters(batch["_id"]))

    async def list(self, workspace_id: ObjectId, query: Mapping[str, str]) -> dict:
        """A page of the workspace's batches, newest first, each with its counters (one read for all)."""
        docs, counters, cursor = await self.page(workspace_id, query)
        return {"batches": [batch_view(d, counters[d["_id"]]) for d in docs], "count": len(docs), "nextCursor": cursor}

    async def page(self, workspace_id: ObjectId, query: Mapping[str, str]) -> tuple[list[dict], dict, str | None]:
        """(batches, their counters by id, the next page's cursor) for query `status`, `agentId`, `limit`, `cursor`."""
        asked = page_query(query, BATCH_STATUSES, DEFAULT_PAGE, MAX_PAGE, "batchId")
        agent_id = None
        if query.get("agentId"):
            agent_id = parse_id(query["agentId"])
            if agent_id is None:
                raise Refused(400, "Bad Request", "agentId must be an agent's id")
        docs = await self.repo.list(workspace_id, asked.statuses, agent_id, asked.cursor, asked.limit + 1)
        more, docs = len(docs) > asked.limit, docs[:asked.limit]
        tallies = await self.calls.tallies_many([d["_id"] for d in docs])
        return docs, {i: counters_view(t) for i, t in tallies.items()}, str(docs[-1]["_id"]) if more else None

    async def start(self, batch: dict) -> dict:
        """pending | paused -> running now (a batch scheduled for later starts early); a running one is answered
        as it is. By the batch's status at the move, not as `batch` (read earlier) shows it."""
        now = self.clock.now()
        scheduled = batch.get("scheduledAt")
        early = scheduled is not None and scheduled > now  # its calls wait for the scheduled start
        if early:
            # Before the move: a start cut short here (a batch of millions of calls can take long) leaves
            # the batch as it was, and asking again completes it.
            await self.calls.bring_forward(batch["_id"], now)
        if not await self.repo.move(batch["_id"], machine.START, now,
                                    {"scheduledAt": None, "startedAt": now, "enqueuedAt": now}):
            current = await self._reread(batch)
            if current["status"] == BatchStatus.RUNNING.value:
                return current  # started already (a double click): nothing changes
            raise conflict(current, "started")
        if early:  # calls written meanwhile by a request that read the old schedule
            await self.calls.bring_forward(batch["_id"], now)
        self._changed()  # the dispatcher of this process looks at once (else at its recheck: a minute)
        log.info("batch started", extra={"batchId": str(batch["_id"])})
        return await self._reread(batch)

    async def stop(self, batch: dict) -> dict:
        """running -> paused; answers once no claim of the batch is left unplaced. By the batch's status at the
        move, not as `batch` (read earlier) shows it: a batch read paused and started since is stopped."""
        if not await self.repo.move(batch["_id"], machine.STOP, self.clock.now()):
            current = await self._reread(batch)
            if current["status"] != BatchStatus.PAUSED.value:
                raise conflict(current, "stopped")
            # Stopped already (a double click, or another stop still waiting): nothing changes, and this answer
            # too waits for the batch's claims, so no call is placed after it either.
            await self._settle(batch["_id"])
            return await self._reread(batch)
        self._changed()
        await self._settle(batch["_id"])
        log.info("batch stopped", extra={"batchId": str(batch["_id"])})
        return await self._reread(batch)

    async def cancel(self, batch: dict, hang_up: bool = False) -> dict:
        """-> cancelled (final): waiting calls cancelled; calls in flight end normally, or are hung up."""
        now = self.clock.now()
        if not await self.repo.move(batch["_id"], machine.CANCEL, now):
            current = await self._reread(batch)
            if current["status"] == BatchStatus.CANCELLED.value:
                # A cancel cut short after its move (its process died) left calls waiting: its retry
                # withdraws them, then answers as a repeated cancel does.
                await withdraw_all(self.calls, batch["_id"], now, chunk=CHUNK)
            raise conflict(current, "cancelled")
        self._changed()
        await self._settle(batch["_id"])
        await withdraw_all(self.calls, batch["_id"], now, chunk=CHUNK)
        if hang_up:
            await self._hang_up(batch["_id"])
        log.info("batch cancelled", extra={"batchId": str(batch["_id"]), "hangUp": hang_up})
        return await self._reread(batch)

    async def retry(self, batch: dict, outcomes: Any = None) -> dict:
        """Final calls whose outcome is in `outcomes` go back to the queue; the batch runs again."""
        if outcomes is None:
            outcomes = DEFAULT_RETRY_OUTCOMES
        if not isinstance(outcomes, list) or not outcomes or not all(o in RETRYABLE_OUTCOMES for o in outcomes):
            raise Refused(400, "Bad Request", f"outcomes must be a non-empty list of {sorted(RETRYABLE_OUTCOMES)}")
        if batch["status"] not in machine.RETRY_BATCH.source_values:
            raise conflict(batch, "retried")
        now = self.clock.now()
        entry = {"at": now, "event": "retry_asked"}
        retried = skipped = 0
        while True:
            done, busy = await self.calls.retry_finished(batch["_id"], sorted(set(outcomes)), now, entry, CHUNK)
            if not done and not busy:
                break
            retried, skipped = retried + done, skipped + busy
            await asyncio.sleep(0)
        # A completed batch with calls waiting was retried before, and cut short (a crash, a timeout)
        # once they were back in its queue: it runs now.
        if not retried and not (batch["status"] == BatchStatus.COMPLETED.value
                                and await self.calls.has_waiting(batch["_id"])):
            raise Refused(409, "Conflict", f"nothing to retry: no final call has an outcome in {sorted(set(outcomes))}",
                          {"status": batch["status"], "skipped": skipped})
        if not await self._run_again(batch, now):
            # Cancelled meanwhile: the calls just put back in its queue are withdrawn with the rest.
            current = await self._reread(batch)
            if current["status"] == BatchStatus.CANCELLED.value:
                await withdraw_all(self.calls, batch["_id"], now, chunk=CHUNK)
            raise conflict(current, "retried")
        self._changed()
        log.info("batch retried", extra={"batchId": str(batch["_id"]), "calls": retried, "skipped": skipped})
        return await self._reread(batch)

    async def _run_again(self, batch: dict, now) -> bool:
        """The retried batch to running, its calls being back in its queue. A store failure here would leave
        them waiting in a completed batch no dispatcher serves until the request is sent again (found by the
        million-call simulation: 910 calls, after a 503 never re-sent): the move is tried again first."""
        for pause in RUN_AGAIN_PAUSES:
            try:
                return await self.repo.move(batch["_id"], machine.RETRY_BATCH, now,
                                            {"retryCount": batch.get("retryCount", 0) + 1, "enqueuedAt": now},
                                            unset=("completedAt",))
            except StoreUnavailable:
                if pause is None:
                    raise  # a 503: the partner's retry of the request runs it (a completed batch with calls waiting)
                log.warning("a retried batch's move failed: tried again", extra={"batchId": str(batch["_id"])})
                await asyncio.sleep(pause)
        return False

    async def update(self, batch: dict, changes: dict[str, Any]) -> dict:
        """Name, limit, window, retry policy, ringing timeout of a batch that is not final. Dispatchers
        see the change the next time they read the running batches (at once in this process)."""
        if batch["status"] in (BatchStatus.CANCELLED.value, BatchStatus.FAILED.value):
            raise conflict(batch, "changed")
        now = self.clock.now()
        updated = await self.repo.update(batch["_id"], UPDATABLE_STATUSES, changes, now)
        if updated is None:
            raise conflict(await self._reread(batch), "changed")
        if changes.keys() & {"callingWindow", "compliance", "stateField"}:
            # Calls waiting for the old window's (or profile's) opening may be due under the new one: the
            # dispatcher looks at them now and defers those still outside it to their next opening.
            await self.calls.bring_forward(batch["_id"], now)
            await self.repo.note_enqueued(batch["_id"], now)
        self._changed()
        log.info("batch updated", extra={"batchId": str(batch["_id"]), "fields": sorted(changes)})
        return updated

    async def delete(self, batch: dict) -> str:
        """The batch and its calls are removed; refused while calls are in flight, or while an enrollment's
        calls are still being written into it (they would outlive it)."""
        if batch.get("intakeId") and self.intakes is not None:
            intake = await self.intakes.get(batch["intakeId"])
            if intake is not None and intake["state"] == "pending":
                raise Refused(409, "Conflict", "the batch's contacts are still being scheduled; delete it in a moment")
        await self._refuse_if_in_flight(batch)
        if batch["status"] == BatchStatus.RUNNING.value:  # no dispatcher may claim while calls go
            await self.repo.move(batch["_id"], machine.STOP, self.clock.now())
            self._changed()
            await self._settle(batch["_id"])
            await self._refuse_if_in_flight(await self._reread(batch), "calls were placed meanwhile; it is paused: ")
        while await self.calls.delete_calls(batch["_id"], CHUNK):
            await asyncio.sleep(0)
        await self.repo.delete(batch["_id"])
        log.info("batch deleted", extra={"batchId": str(batch["_id"])})
        return batch.get("publicId") or str(batch["_id"])

    async def _refuse_if_in_flight(self, batch: dict, why: str = "") -> None:
        flying = counters_view(await self.calls.tallies(batch["_id"]))["inFlight"]
        if flying or await self.calls.unplaced(batch["_id"]):
            raise Refused(409, "Conflict", f"{why}{flying} calls of the batch are in flight: stop or cancel it, then "
                                           "delete it once they have ended", {"status": batch["status"]})

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def _settle(self, batch_id: ObjectId) -> None:
        """Wait until no claim of the batch is left unplaced (placed, or handed back by the placer)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle_seconds
        while await self.calls.unplaced(batch_id):
            if loop.time() >= deadline:
                # A dispatcher died holding claims: they are not placed (the reaper requeues them).
                log.warning("claims still unplaced after the stop; a dispatcher may have died",
                            extra={"batchId": str(batch_id)})
                return
            await asyncio.sleep(self.poll_seconds)

    async def _hang_up(self, batch_id: ObjectId) -> None:
        if self.hang_up is None:
            log.warning("hangUp asked, but this process has no telephony provider", extra={"batchId": str(batch_id)})
            return
        for call in await self.calls.in_flight(batch_id):
            sid = call.get("providerCallId")
            if not sid:
                continue
            try:
                await self.hang_up(sid)
            except Exception as exc:  # one failed hangup must not stop the others
                log.warning("hangup failed", extra={"callId": str(call["_id"]), "error": str(exc)})

    async def _reread(self, batch: dict) -> dict:
        return await self.repo.get(batch["_id"]) or batch
