"""Submitting a batch with its calls in one request (a vendor face's submit): all or nothing.

The batch is drafted, every record validated against it, and only then is the batch stored and its
calls written: a refused submission leaves nothing behind.
"""

from __future__ import annotations

import logging
from typing import Callable

from bson import ObjectId

from dialer.core.batch_spec import BatchSpec
from dialer.core.phones import PhoneError, PhoneNormaliser
from dialer.core.records import RecordError
from dialer.ports import BatchRepo
from dialer.services.batches import Batches
from dialer.services.errors import Refused
from dialer.services.idempotency import Claim
from dialer.services.ingestion import Ingestion
from dialer.services.tenancy import Tenancy

log = logging.getLogger("dialer.submissions")


class RecordsRefused(Exception):
    """Some records are invalid: nothing was written."""

    def __init__(self, errors: list[RecordError]) -> None:
        super().__init__(f"{len(errors)} invalid records")
        self.errors = errors


class CallingNumberRefused(Exception):
    """The calling number asked for is not the agent's, or the agent has none."""


class Submissions:
    def __init__(self, tenancy: Tenancy, batches: Batches, repo: BatchRepo, ingestion: Ingestion,
                 phones: PhoneNormaliser) -> None:
        self.tenancy = tenancy
        self.batches = batches
        self.repo = repo
        self.ingestion = ingestion
        self.phones = phones

    async def submit(self, workspace_id: ObjectId, agent_id: str, calling_number: str | None,
                     spec_for: Callable[[list[str]], BatchSpec], extra: dict, records: list[dict],
                     meta: list[dict | None], claim: Claim | None = None) -> dict:
        """The stored, started batch. Refused(404) for an unknown agent (another workspace's too).
        `claim`: the submit's Idempotency-Key claim. The batch and its calls then take its ids, so the
        retry of a submit whose process died writes each once (the batch is found, its calls too)."""
        agent = await self.tenancy.get_agent(workspace_id, agent_id)
        if agent is None:
            raise Refused(404, "Not Found", f"agent {agent_id!r} not found")
        calling = agent["callingNumbers"]
        if calling_number is not None:
            try:
                wanted = self.phones.normalise(calling_number).e164
            except PhoneError:
                wanted = calling_number
            if wanted not in calling:
                raise CallingNumberRefused("not one of the agent's phone numbers")
            calling = [wanted]
        if not calling:
            raise CallingNumberRefused("the agent has no phone number to call from")
        draft = self.batches.draft(workspace_id, agent, spec_for(calling), extra=extra)
        if claim is not None:
            draft["_id"] = claim.object_id(0)
        plan = await self.ingestion.plan_records(draft, agent, records)
        if plan.errors:
            raise RecordsRefused(plan.errors)
        for n, call in enumerate(plan.calls):
            call.meta = meta[call.index]
            call.call_id = claim and claim.object_id(n + 1)
        if claim is None or await self.repo.get(draft["_id"]) is None:
            await self.batches.insert(draft)
        # Numbers on the do-not-call list are written as calls that ended suppressed: the face shows them.
        outcome = await self.ingestion.write_plan(draft, plan, suppressed_as_calls=True)
        if outcome.code >= 500 or outcome.data.get("failedChunks"):
            # Some calls were written: the batch exists and says so; resubmitting would double them.
            log.error("batch submitted in part", extra={"batchId": str(draft["_id"]),
                                                        "failedChunks": outcome.data.get("failedChunks")})
            raise Refused(503, "Service Unavailable", f"the database failed while writing the calls; batch "
                                                      f"{draft['_id']} holds {outcome.data['added']} of them")
        return await self.repo.get(draft["_id"]) or draft
