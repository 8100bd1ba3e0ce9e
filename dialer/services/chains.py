"""Contact chaining as a use case: a group's next step after one of its calls ends, the reaper's sweep of
groups left without one, and the agent's verdict on a call. The rule itself is dialer/core/chains.py.

`advance(batch_id, key)` reads the group, decides, and writes at most one activation (a compare-and-set
on one held call) or the skipping of the group's held calls; it is safe to run any number of times from
any process. It runs right after a chained call becomes final (CallEvents), after a verdict, and from the
reaper's `sweep` (a crash between a call's end and its group's step, a tentative success whose verdict
window has passed): a group never has two calls at once and never loses its next contact.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from bson import ObjectId

from dialer.core.chains import ChainRule, next_step
from dialer.core.clock import Clock
from dialer.core.statuses import WAITING_VALUES
from dialer.ports import BatchRepo, CallRepo, StoreUnavailable
from dialer.services.errors import Refused

log = logging.getLogger("dialer.chains")
SWEEP_GROUPS = 1000


class Chains:
    def __init__(self, calls: CallRepo, batches: BatchRepo, clock: Clock, rule: ChainRule) -> None:
        self.calls = calls
        self.batches = batches
        self.clock = clock
        self.rule = rule
        self.on_activated: Callable[[], None] | None = None  # the embedded dispatcher's wake-up

    async def advance(self, batch_id: ObjectId, key: str) -> str:
        """The group's next step: "activated", "skipped", "waiting" (a tentative success) or "none"."""
        try:
            return await self._advance(batch_id, key)
        except StoreUnavailable as exc:  # the reaper's sweep takes the step later
            log.warning("chain step deferred", extra={"batchId": str(batch_id), "group": key, "error": str(exc)})
            return "none"

    async def _advance(self, batch_id: ObjectId, key: str) -> str:
        now = self.clock.now()
        step = next_step(await self.calls.group(batch_id, key), now, self.rule)
        ids = {"batchId": str(batch_id), "group": key}
        if step.skip:
            skipped = await self.calls.skip_held(batch_id, key, now, {"at": now, "event": "group_succeeded"})
            log.info("group succeeded: held contacts skipped", extra={**ids, "skipped": skipped})
            return "skipped"
        if step.activate is not None:
            if not await self.calls.activate(step.activate, now, {"at": now, "event": "activated_by_group"}):
                return "none"  # another process took this step first
            await self.batches.note_enqueued(batch_id, now)
            if self.on_activated is not None:
                self.on_activated()
            log.info("group's next contact activated", extra={**ids, "callId": str(step.activate)})
            return "activated"
        return "waiting" if step.recheck_at is not None else "none"

    async def sweep(self, batches: list[dict]) -> int:
        """Take the next step of every group with held calls in these batches (the reaper gives the running
        ones: a paused batch's groups move on when it runs again)."""
        steps = 0
        for batch in batches:
            for key in await self.calls.held_groups(batch["_id"], SWEEP_GROUPS):
                steps += await self.advance(batch["_id"], key) in ("activated", "skipped")
        return steps

    @staticmethod
    def ensure_placed(call: dict) -> None:
        """A call not placed yet has no conversation to judge (Refused 409)."""
        if call["status"] in WAITING_VALUES:
            raise Refused(409, "Conflict", f"the call is {call['status']}: it has not been placed yet")

    async def record_verdict(self, call: dict, successful: bool | None, reason: Any,
                             opted_out: bool = False) -> dict | None:
        """The agent's verdict on one of its calls (`successful`, and whether the callee opted out); a
        chained call's group takes its step with it. A call not placed yet is refused (409)."""
        self.ensure_placed(call)
        now = self.clock.now()
        verdict = {**({"successful": successful} if successful is not None else {}), "at": now,
                   **({"optOut": True} if opted_out else {}), **({"reason": reason} if reason else {})}
        after = await self.calls.record_verdict(call["_id"], verdict, now)
        if after is not None and after.get("group"):
            await self.advance(after["batchId"], after["group"]["key"])
        return after
