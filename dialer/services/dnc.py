"""Each workspace's do-not-call list as a use case: listing numbers (the API, the CLI's import, the console),
reading and removing them, the batched look-up every enqueue face makes, and the agent's opt-out.

An opt-out lists the callee's number at once (source `opt-out`, the call kept), then withdraws its waiting
calls in every batch of the workspace that can still run (skipped / suppressed, the rule in their history)
and lets each contact chain they belonged to take its next step. Calls already claimed are the placer's
to stop (workers/placer.py reads the list just before each placement round). A listing or an opt-out
answers once no claim of its numbers is left between such a read and the provider (placed, or stopped by
the next round's read), as a stop waits for its batch's claims: once answered, no call to them is placed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Iterable

from bson import ObjectId

from dialer.core.clock import Clock, iso
from dialer.core.dnc import MAX_NUMBERS, OPT_OUT, SUPPRESSED, read_numbers, rule, suppression
from dialer.core.phones import PhoneError, PhoneNormaliser
from dialer.core.statuses import BatchStatus
from dialer.ports import BatchRepo, CallRepo, DncRepo
from dialer.services.errors import Refused
from dialer.services.ingestion import offload

log = logging.getLogger("dialer.dnc")
DEFAULT_PAGE, MAX_PAGE = 100, 1000
OPEN_BATCHES = [BatchStatus.PENDING.value, BatchStatus.RUNNING.value, BatchStatus.PAUSED.value]


def entry_view(entry: dict) -> dict:
    return {"number": entry["number"], "source": entry["source"], "reason": entry.get("reason"),
            "callId": str(entry["callId"]) if entry.get("callId") else None, "listedAt": iso(entry["listedAt"]),
            "rule": rule(entry)}


class Dnc:
    def __init__(self, repo: DncRepo, calls: CallRepo, batches: BatchRepo, clock: Clock,
                 phones: PhoneNormaliser, settle_seconds: float = 15.0) -> None:
        self.repo = repo
        self.settle_seconds = settle_seconds  # as a stop's: the rate horizon, the provider's timeout, some more
        self.calls = calls
        self.batches = batches
        self.clock = clock
        self.phones = phones
        # Contact chaining's next step for a group whose waiting call an opt-out withdrew (Chains.advance).
        self.on_group_call_final: Callable[[ObjectId, str], Awaitable[Any]] | None = None

    async def add(self, workspace_id: ObjectId, raws: list, reason: str | None, source: str,
                  call_id: ObjectId | None = None) -> dict:
        """List these numbers. What the answer says adds up: received = added + alreadyListed + repeated +
        invalid; every impossible number is named with its index and reason."""
        if len(raws) > MAX_NUMBERS:
            raise Refused(400, "Bad Request", f"numbers has {len(raws)} entries; at most {MAX_NUMBERS} per request")
        numbers = await offload(len(raws), read_numbers, self.phones, raws)
        now = self.clock.now()
        more = {**({"reason": reason} if reason else {}), **({"callId": call_id} if call_id else {})}
        added = await self.repo.add([{"workspaceId": workspace_id, "number": n, "source": source, "listedAt": now,
                                      **more} for n in numbers.valid])
        log.info("numbers listed", extra={"workspaceId": str(workspace_id), "added": added, "source": source,
                                          "invalid": len(numbers.invalid)})
        await self._settle(workspace_id, set(numbers.valid))
        return {"received": len(raws), "added": added, "alreadyListed": len(numbers.valid) - added,
                "repeated": numbers.repeated, "invalid": len(numbers.invalid), "invalidEntries": numbers.invalid}

    def _number(self, raw: str) -> str:
        try:
            return self.phones.normalise(raw).e164
        except PhoneError as exc:
            raise Refused(400, "Bad Request", f"{raw!r} is not a phone number: {exc}") from None

    async def get(self, workspace_id: ObjectId, raw: str) -> dict:
        number = self._number(raw)
        entry = await self.repo.get(workspace_id, number)
        if entry is None:
            raise Refused(404, "Not Found", f"{number} is not on the do-not-call list")
        return entry_view(entry)

    async def remove(self, workspace_id: ObjectId, raw: str) -> str:
        number = self._number(raw)
        if not await self.repo.remove(workspace_id, number):
            raise Refused(404, "Not Found", f"{number} is not on the do-not-call list")
        log.info("number unlisted", extra={"workspaceId": str(workspace_id)})
        return number

    async def page(self, workspace_id: ObjectId, prefix: str | None, cursor: str | None, limit: int) -> dict:
        """Entries by number, after `cursor` (a previous page's nextCursor), starting with `prefix` (digits)."""
        prefix = "+" + prefix.lstrip("+ ") if prefix else None  # " 1212": a `+` sent unencoded
        cursor = "+" + cursor.lstrip("+ ") if cursor else None
        entries = await self.repo.page(workspace_id, prefix, cursor, limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        return {"entries": [entry_view(e) for e in entries], "count": len(entries),
                "total": await self.repo.count(workspace_id),
                "nextCursor": entries[-1]["number"] if more else None}

    async def screen(self, workspace_id: ObjectId, numbers: Iterable[str]) -> dict[str, dict]:
        """The listed ones among these E.164 numbers (number -> its listing): one batched look-up."""
        found = await self.repo.listed((workspace_id, n) for n in numbers)
        return {number: entry for (_, number), entry in found.items()}

    async def opt_out(self, call: dict, reason: str | None = None) -> str:
        """The callee of this call asked not to be called again (the verdict's reason, if any, is the
        listing's); the rule its waiting calls now show."""
        workspace_id, number, now = call["workspaceId"], call["phoneNumber"], self.clock.now()
        await self.repo.add([{"workspaceId": workspace_id, "number": number, "source": OPT_OUT, "callId": call["_id"],
                              "listedAt": now, **({"reason": reason} if reason else {})}])
        listing = await self.repo.get(workspace_id, number) or {"source": OPT_OUT, "listedAt": now}
        batch_ids = await self._open_batches(workspace_id)
        await self._settle(workspace_id, {number}, batch_ids)
        withdrawn = await self.calls.suppress_waiting(batch_ids, number, now, suppression(now, listing))
        groups = {(d["batchId"], d["group"]["key"]) for d in withdrawn if d.get("group")}
        if self.on_group_call_final is not None:
            for batch_id, key in groups:
                await self.on_group_call_final(batch_id, key)
        log.info("opt-out: number listed, its waiting calls withdrawn",
                 extra={"callId": str(call["_id"]), "withdrawn": len(withdrawn), "outcome": SUPPRESSED})
        return rule(listing)

    async def _settle(self, workspace_id: ObjectId, numbers: set[str], batch_ids: list[ObjectId] | None = None) -> None:
        """Wait until no claim of these numbers is left unplaced: a placement round that read the list before
        this listing was written places them now or never (bounded: a dispatcher may have died holding one,
        and the reaper settles its claims)."""
        if not numbers:
            return
        batch_ids = await self._open_batches(workspace_id) if batch_ids is None else batch_ids
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle_seconds
        while numbers & await self.calls.unplaced_numbers(batch_ids):
            if loop.time() >= deadline:
                log.warning("claims of listed numbers still unplaced; a dispatcher may have died",
                            extra={"workspaceId": str(workspace_id)})
                return
            await asyncio.sleep(0.05)

    async def _open_batches(self, workspace_id: ObjectId) -> list[ObjectId]:
        ids: list[ObjectId] = []
        before = None
        while True:
            page = await self.batches.list(workspace_id, OPEN_BATCHES, None, before, 1000)
            ids += [b["_id"] for b in page]
            if len(page) < 1000:
                return ids
            before = page[-1]["_id"]
