"""Contact enrollment as a use case (seeds 000/001): accept a request durably, then schedule it in the
background.

`enroll` order: Idempotency-Key replay -> parse -> agent (404 / 422 when it cannot call) -> judge every
contact (dialer/core/enrollment.py) -> none passed: 400 -> reserve one credit per accepted contact (402
when short) -> write the **intake** (the batch to create, the planned calls with their ids, the answer)
in one document -> 202. A key's intake is its idempotency record: a retry gets the stored answer byte for
byte; of two concurrent requests with one key only one intake is written, the other gives its credits
back and answers the winner's answer.

`process` turns an intake into the batch and its calls: the batch is inserted if absent, each call is
written under the id it was given at acceptance (`CallRepo.insert_new` skips ids already written), the
batch starts, the intake is marked done. A crash anywhere in between loses nothing and writes nothing
twice: `resume` (at start-up and from the reaper) processes every intake whose lease has passed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import bson
import orjson
from bson import ObjectId
from bson.errors import InvalidDocument

from dialer.core.batch_spec import DEFAULT_CONCURRENCY, DEFAULT_RETRY, DEFAULT_RINGING_TIMEOUT, BatchSpec
from dialer.core.clock import Clock
from dialer.core.dnc import rule
from dialer.core.enrollment import ContactPlanner, EnrollmentError, decode_planned, encode_planned, parse_request
from dialer.core.phones import PhoneNormaliser
from dialer.core.records import IngestContext, Planner
from dialer.core.statuses import BatchStatus
from dialer.core.windows import CallingWindow
from dialer.metrics import Metrics
from dialer.ports import BatchRepo, CallRepo, IntakeRepo, StoreUnavailable, TenancyRepo, reservation_key
from dialer.services.batches import Batches
from dialer.services.bodies import BodyReader
from dialer.services.calls import withdraw_all
from dialer.services.dnc import Dnc
from dialer.services.errors import Refused
from dialer.services.idempotency import Idempotency
from dialer.services.ingestion import offload
from dialer.services.tenancy import Principal, Tenancy

log = logging.getLogger("dialer.enrollment")
LEASE_SECONDS = 60.0  # default: how long an intake being processed is left to its process
MAX_INTAKE_BYTES = 15 * 1024 * 1024  # one MongoDB document (16 MiB), less room for our own fields
CHUNK = 500
ABANDONED = dt.timedelta(minutes=10)  # a reservation without its intake for this long: its request died
NORMALIZE_IGNORED = ("normalizeFields was ignored: this workspace is not on the normalization allowlist "
                     "(an administrator can allow it).")


@dataclass(frozen=True)
class Answer:
    code: int
    body: bytes  # exactly what is sent (and replayed)
    replayed: bool = False


class Enrollment:
    def __init__(self, clock: Clock, tenancy: Tenancy, tenancy_repo: TenancyRepo, batches: Batches,
                 batch_repo: BatchRepo, calls: CallRepo, intakes: IntakeRepo, phones: PhoneNormaliser,
                 bodies: BodyReader, ttl_seconds: int, metrics: Metrics | None = None, name: str | None = None,
                 lease_seconds: float = LEASE_SECONDS, dnc: Dnc | None = None) -> None:
        self.clock = clock
        self.tenancy = tenancy
        self.tenancy_repo = tenancy_repo
        self.batches = batches
        self.batch_repo = batch_repo
        self.calls = calls
        self.intakes = intakes
        self.phones = phones
        self.bodies = bodies  # large bodies are parsed aside, as addCallsToBatch's are
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self.lease = dt.timedelta(seconds=lease_seconds)  # its process died: another resumes it after this
        self.metrics = metrics or Metrics()
        self.dnc = dnc  # the workspace's do-not-call list: a listed contact is rejected
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"  # who holds an intake's lease
        self.on_enqueued: Callable[[], None] | None = None  # the embedded dispatcher's wake-up
        self._tasks: set[asyncio.Task] = set()
        self._reservations: dict[tuple, dt.datetime] = {}  # (workspace, ref, by) -> first seen without its intake

    # ---- accepting -----------------------------------------------------------------------------
    async def enroll(self, principal: Principal, agent_id: str, raw: bytes, key: str | None) -> Answer:
        ws = principal.workspace_id
        if key is not None:
            problem = Idempotency.check_key(key)
            if problem:
                raise Refused(400, "Bad Request", problem + ".")
        intake_id = f"{ws}:key:{key}" if key is not None else None
        if intake_id is not None and (stored := await self._stored(intake_id)) is not None:
            return Answer(202, stored, replayed=True)
        try:
            request = parse_request(await self.bodies.json(raw))
        except EnrollmentError as exc:
            raise Refused(400, "Bad Request", str(exc)) from None
        agent = await self.tenancy.get_agent(ws, agent_id)
        if agent is None:
            raise Refused(404, "Not Found", f"Agent {agent_id} not found.")
        if not agent.get("callingNumbers"):
            raise Refused(422, "Unprocessable Entity", f"Agent {agent_id} is misconfigured: it has no phone number "
                                                      "to call from.")
        workspace = await self.tenancy.get_workspace(ws) or {}
        now = self.clock.now()
        allowed = bool(workspace.get("normalizationAllowed"))
        zones = agent.get("timezones") or []
        planner = Planner(self.phones, IngestContext((), CallingWindow.parse(None), None, None, now))
        contacts = ContactPlanner(planner, request, agent.get("requiredVariables", []), zones[0] if zones else None,
                                  allowed, now)
        # A thousand contacts take tens of milliseconds: in a thread, so the loop keeps answering meanwhile.
        plan = await offload(len(request.contacts), contacts.plan)
        if self.dnc is not None and plan.calls:  # numbers on the do-not-call list: rejected, with the rule
            listed = await self.dnc.screen(ws, {c.e164 for c in plan.calls})
            if listed:
                contacts.suppress(plan, {number: rule(entry) for number, entry in listed.items()})
        self.metrics.records.labels("rejected").inc(len(plan.rejected))
        if not plan.calls:
            raise Refused(400, "Bad Request", "No contact passed validation.", data={"rejected": plan.rejected_view()})
        accepted = len(plan.calls)
        public_id = str(uuid.uuid4())
        answer: dict[str, Any] = {"batchId": public_id, "total": plan.total, "accepted": accepted,
                                  "rejected": plan.rejected_view()}
        if request.normalize and not allowed:
            answer["message"] = NORMALIZE_IGNORED
        body = orjson.dumps(answer)
        spec = BatchSpec(name=f"Enrollment {now:%Y-%m-%d %H:%M:%S} ({accepted} contacts)", agent_id=str(agent["_id"]),
                         calling_numbers=agent["callingNumbers"],
                         concurrency_limit=workspace.get("defaultConcurrencyLimit") or DEFAULT_CONCURRENCY,
                         window=CallingWindow.parse(None), timezone=request.timezone or (zones[0] if zones else None),
                         scheduled_at=None, retry=dict(DEFAULT_RETRY), ringing_timeout=DEFAULT_RINGING_TIMEOUT)
        intake_id = intake_id or f"{ws}:id:{public_id}"
        draft = self.batches.draft(ws, agent, spec, extra={"publicId": public_id, "source": "enrollment",
                                                           "intakeId": intake_id})
        intake = {"_id": intake_id, "workspaceId": ws, "publicId": public_id, "batch": draft,
                  "calls": encode_planned(plan.calls), "answer": body.decode(), "credits": 0, "state": "pending",
                  "createdAt": now, "expiresAt": now + self.ttl}
        if len(bson.encode(intake)) > MAX_INTAKE_BYTES:
            raise Refused(413, "Payload Too Large", "The accepted contacts are too large to be stored together "
                                                    f"(at most {MAX_INTAKE_BYTES} bytes); send fewer per request.")
        existing = await self._accept(intake, accepted, key is not None)
        if existing is not None:  # another request with this key was accepted first: its answer is the answer
            return Answer(202, existing, replayed=True)
        try:  # readable by its batchId as soon as the 202 is sent (pending, its calls following)
            await self.batches.insert(draft)
        except StoreUnavailable:
            pass  # the background write creates it
        self.metrics.records.labels("accepted").inc(accepted)
        log.info("contacts accepted", extra={"batchId": public_id, "accepted": accepted,
                                             "rejected": len(plan.rejected)})
        self._background(intake_id)
        return Answer(202, body)

    async def _accept(self, intake: dict, accepted: int, keyed: bool) -> bytes | None:
        """Reserve the credits and write the intake; None when written, else the answer to replay (a
        concurrent request with the same key won). Credits are given back whenever nothing was written.
        A keyed request reserves under its intake's id: the retry of one whose process died between
        the reservation and the intake takes only what its own contacts need beyond that reservation,
        and the intake written under the key, whichever request wrote it, is what is spent, once (_settle)."""
        ws = intake["workspaceId"]
        ref, me = (intake["_id"], uuid.uuid4().hex) if keyed else (None, None)
        ok, balance = await self.tenancy_repo.take_credits(ws, accepted, ref, me)
        if not ok:
            if keyed and (stored := await self._stored(intake["_id"])) is not None:
                return stored  # the first request with this key took the credits: its answer stands
            raise Refused(402, "Payment Required", f"Not enough credits: {accepted} contacts accepted, {balance} "
                                                  "credits available. Nothing was scheduled.",
                          data={"required": accepted, "available": balance})
        intake["credits"] = accepted if balance is not None else 0
        try:
            existing = await self.intakes.insert(intake)
        except BaseException as exc:
            await self._refund(ws, intake["credits"], ref, me)
            if isinstance(exc, StoreUnavailable):
                raise Refused(503, "Service Unavailable", "The database failed; nothing was scheduled. Retry.") from None
            if isinstance(exc, InvalidDocument):  # e.g. DocumentTooLarge: the size check should have caught it
                raise Refused(413, "Payload Too Large", "The accepted contacts cannot be stored together; send "
                                                        "fewer per request.") from None
            raise
        if ref is None:
            if existing is not None:
                await self._refund(ws, intake["credits"], None, None)
        else:  # written by this request or by another with this key first: its credits are settled once
            await self._settle(existing or intake, me)
        return None if existing is None else existing["answer"].encode()

    async def _settle(self, intake: dict, me: str | None) -> None:
        """Spend the credits of an intake written under an Idempotency-Key, once. Whoever marks its
        settlement first (the request that wrote it, one that found it written, or its processing) spends
        the reservation noted under the key at that moment, the reservation it was written on: what it
        holds beyond the intake's credits goes back. A reservation noted after that (a request with the
        key that reserved once the first was spent, then found the intake) paid for nothing: its own
        request gives it back (`me`), or else the reaper does (release_abandoned)."""
        ws, ref = intake["workspaceId"], intake["_id"]
        workspace = await self.tenancy_repo.get_workspace(ws) or {}
        note = (workspace.get("reservations") or {}).get(reservation_key(ref))
        claimed, on = await self.intakes.claim_settlement(ref, note["by"] if note else None)
        if claimed:
            if on is not None:
                await self.tenancy_repo.settle_credits(ws, ref, spent=intake.get("credits", 0), made_by=on)
        elif me is not None and me != on:
            await self.tenancy_repo.settle_credits(ws, ref, refund_by=me)

    async def _stored(self, intake_id: str) -> bytes | None:
        found = await self.intakes.get(intake_id)
        if found is None:
            return None
        if found["state"] == "done" and found["expiresAt"] <= self.clock.now():
            await self.intakes.remove_expired(intake_id, self.clock.now())  # the key is free again
            return None
        return found["answer"].encode()

    async def _refund(self, workspace_id: ObjectId, credits: int, ref: str | None, me: str | None) -> None:
        if ref is not None:  # what this request reserved under the ref, if it did
            await self.tenancy_repo.settle_credits(workspace_id, ref, refund_by=me)
        elif credits:
            await self.tenancy_repo.add_credits(workspace_id, credits)

    # ---- scheduling ----------------------------------------------------------------------------
    def _background(self, intake_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self.process(intake_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def process(self, intake_id: str) -> bool:
        """Create the intake's batch and calls (each once, whatever ran before). False if another process
        holds it, it is done, or it failed (it is tried again once its lease has passed)."""
        now = self.clock.now()
        ids = {"intakeId": intake_id}
        try:
            intake = await self.intakes.take(intake_id, self.name, now + self.lease, now)
            if intake is None:
                return False
            ids["batchId"] = intake["publicId"]
            written, calls = await self._write(intake)
        except Exception as exc:  # one intake's failure must not stop the others
            log.error("intake interrupted; it resumes once its lease has passed",
                      extra={**ids, "error": str(exc) if isinstance(exc, StoreUnavailable) else type(exc).__name__},
                      exc_info=not isinstance(exc, StoreUnavailable))
            return False
        log.info("contacts scheduled", extra={**ids, "written": written, "calls": calls})
        return True

    async def _write(self, intake: dict) -> tuple[int, int]:
        batch = await self.batch_repo.get(intake["batch"]["_id"])
        if batch is None:  # an operator cannot delete it before its intake is done (Lifecycle.delete)
            batch = intake["batch"]
            await self.batches.insert(batch)
        written = 0
        calls = decode_planned(intake["calls"])
        for start in range(0, len(calls), CHUNK):
            written += await self.calls.insert_new(batch, calls[start:start + CHUNK], self.clock.now())
            await asyncio.sleep(0)
        fresh = await self.batch_repo.get(batch["_id"]) or batch
        if fresh["status"] == BatchStatus.CANCELLED.value:
            # Cancelled while its calls were being written: those written after the cancel wait no more.
            await withdraw_all(self.calls, fresh["_id"], self.clock.now())
        else:
            await self.batches.start_after_insert(fresh)  # pending or completed: it runs; paused: it waits
        if self.on_enqueued is not None:
            self.on_enqueued()
        await self.intakes.finish(intake["_id"], self.clock.now())
        # The reservation's note, left by a process that died right after writing the intake.
        await self._settle(intake, None)
        return written, len(calls)

    async def release_abandoned(self) -> int:
        """Credits reserved by a keyed enrollment whose process died before writing its intake, and whose
        partner never retried: given back once the same reservation was seen without its intake for
        ABANDONED (by the injected clock; what a restart forgets is seen again). A retry arriving meanwhile
        finds its reservation gone and reserves again, or, if it reserved just before, is charged again
        here once its intake shows up. How many were given back."""
        now = self.clock.now()
        seen, self._reservations = self._reservations, {}
        released = 0
        for held in await self.tenancy_repo.reservations():
            key = (held.workspace_id, held.ref, held.by)
            first = seen.get(key, now)
            written = await self.intakes.get(held.ref)
            if now - first < ABANDONED or (written is not None and not written.get("creditsSettled")):
                self._reservations[key] = first  # young, or its intake is written (settled when processed)
                continue
            # No intake for ten minutes, or one already settled (this reservation came after: surplus).
            await self.tenancy_repo.settle_credits(held.workspace_id, held.ref, refund_by=held.by)
            if written is None and (written := await self.intakes.get(held.ref)) is not None:
                # Its retry wrote the intake meanwhile, on this reservation: spent after all.
                await self.tenancy_repo.add_credits(held.workspace_id, -written.get("credits", 0))
                continue
            released += 1
            log.warning("credits of an enrollment that died before its intake given back",
                        extra={"workspaceId": str(held.workspace_id), "credits": held.amount})
        return released

    async def resume(self, limit: int = 100) -> int:
        """Process the intakes left pending (a crash, a lost lease). How many were completed."""
        done = 0
        for intake_id in await self.intakes.unfinished(self.clock.now(), limit):
            done += await self.process(intake_id)
        return done

    async def close(self) -> None:
        """Let the background work in hand finish (what is cut short resumes at the next start)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)
