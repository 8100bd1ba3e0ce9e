"""The dispatcher's compliance: for each due call, its batch's window narrowed by its compliance profile
(dialer/core/compliance.py), and the frequency caps reserved beside the slots (the CapLedger port).

A batch's profile is its own `compliance`, else its workspace's `compliance`, else `none`; the
workspace's `maxAttemptsPerNumberPerDay` caps every number. Workspaces are read with the running
batches' cache lifetime (one `list_workspaces` per refresh, not one per claim).

Caps are in force for a workspace when it has `maxAttemptsPerNumberPerDay`, `us-states` as its default
profile or a running batch under `us-states`; then every attempt of its calls is counted (an uncapped call's too,
so a later capped call sees it) in one `reserve` per claim, before the slots. An entry is stamped with
the latest instant its call may be placed (the claim's time + the rate horizon + PLACE_SLACK): the
placer hands back a claim it could not place by then, and the next attempt is claimed only 24 hours
after that stamp, so two placed attempts are never closer than the rolling window. Attempts made while caps
were not in force are not counted; a dispatcher that dies between the reservation and the claim
leaves an entry that counts (the safe side).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Container

from bson import ObjectId

from dialer.core.compliance import HORIZON, Decision, Profile
from dialer.core.compliance_table import RulesTable, parse_table
from dialer.core.windows import CallingWindow
from dialer.ports import CapLedger, CapRequest, TenancyRepo

TABLE_PATH = Path(__file__).resolve().parents[1] / "config" / "compliance" / "us.yaml"
DAY = dt.timedelta(hours=24)
PLACE_SLACK = dt.timedelta(seconds=30)


@lru_cache(maxsize=1)
def us_table() -> RulesTable:
    return parse_table(TABLE_PATH.read_text(encoding="utf-8"))


NEVER_OPEN = "calling window: never open in every time zone of the number at once (give the record a timezone)"


class ComplianceGate:
    def __init__(self, tenancy: TenancyRepo, caps: CapLedger | None, ttl: dt.timedelta,
                 rate_horizon: dt.timedelta) -> None:
        us_table()  # read (and validated) at start: a malformed table stops the dispatcher here, not mid-run
        self.tenancy = tenancy
        self.caps = caps
        self.ttl = ttl
        self.ahead = rate_horizon + PLACE_SLACK
        self._workspaces: tuple[dt.datetime, dict[ObjectId, dict]] | None = None
        self._profiles: dict[str, Profile] = {}
        self._windows: dict[str, CallingWindow] = {}
        self._capped: set[ObjectId] = set()  # workspaces whose caps are in force (as of the last refresh)
        self._us_states: dict[ObjectId, ObjectId] = {}  # batch under us-states by its own setting -> workspace
        self._decided: dict[tuple, Decision] = {}
        self._decided_at: dt.datetime | None = None

    def saw(self, batch: dict) -> None:
        """A running batch as the dispatcher read it: noted if it is under us-states by its own setting."""
        if batch.get("compliance") == "us-states":
            self._us_states[batch["_id"]] = batch["workspaceId"]
        else:
            self._us_states.pop(batch["_id"], None)

    async def refresh(self, now: dt.datetime, running: Container[ObjectId]) -> None:
        """Read the workspaces again when stale, and note then which have caps in force (every few seconds, not
        every claim: a us-states batch is capped itself at once, the other batches of its workspace from the next
        refresh). `running`: the batches the dispatcher runs (those seen under us-states and no longer running
        are forgotten)."""
        if self._workspaces is not None and now < self._workspaces[0]:
            return
        self._workspaces = (now + self.ttl, {w["_id"]: w for w in await self.tenancy.list_workspaces()})
        workspaces = self._workspaces[1]
        self._capped = {w for w, doc in workspaces.items()
                        if doc.get("maxAttemptsPerNumberPerDay") or doc.get("compliance") == "us-states"}
        # A batch under us-states by its own setting (one under its workspace's default is counted above).
        for gone in [b for b in self._us_states if b not in running]:
            del self._us_states[gone]
        self._capped.update(self._us_states.values())

    def capped(self, batch: dict) -> bool:
        """Are the batch's attempts counted against caps?"""
        return batch["workspaceId"] in self._capped or self.profile(batch).name == "us-states"

    def profile(self, batch: dict) -> Profile:
        name = batch.get("compliance")
        if name is None and self._workspaces is not None:
            name = (self._workspaces[1].get(batch["workspaceId"]) or {}).get("compliance")
        name = name or "none"
        if name not in self._profiles:
            self._profiles[name] = Profile(name, None if name == "none" else us_table())
        return self._profiles[name]

    def window(self, batch: dict) -> CallingWindow:
        key = str(batch["callingWindow"])
        if key not in self._windows:
            self._windows[key] = CallingWindow.parse(batch["callingWindow"])
        return self._windows[key]

    def states(self, batch: dict, call: dict) -> frozenset[str]:
        return self.profile(batch).states(call["phoneNumber"], call.get("variables"), batch.get("stateField"))

    def decide(self, batch: dict, call: dict, now: dt.datetime) -> Decision:
        """May the call start now (its zones, its batch's window, its profile)? Else when, and why."""
        zones = call.get("timezones") or []
        if not zones:
            return Decision(now + HORIZON, None)
        profile, states = self.profile(batch), self.states(batch, call)
        if now != self._decided_at:  # calls alike (window, zones, states) get one answer per instant
            self._decided, self._decided_at = {}, now
        key = (profile.name, str(batch["callingWindow"]), tuple(zones), states)
        if key not in self._decided:
            decision = profile.decide(self.window(batch), zones, states, now)
            if decision.at is None and decision.rule is None and self.window(batch).never_open_together(zones):
                # Its zones never share an open moment of the window (narrowed after the call was accepted): it
                # would wait for ever, 15 days at a time. Ended (suppressed) saying why, as enqueue refuses it.
                decision = Decision(None, NEVER_OPEN)
            self._decided[key] = decision
        return self._decided[key]

    def decide_placing(self, batch: dict, call: dict, dial_at: dt.datetime, now: dt.datetime) -> Decision:
        """The placer's check just before it places: the rules again, and a capped call's stamp."""
        if self.capped(batch) and now > dial_at + PLACE_SLACK:
            return Decision(now, "cap: claim placed too late")  # back to the queue: reserved afresh
        return self.decide(batch, call, now)

    def _limit(self, batch: dict, call: dict) -> tuple[int | None, str | None]:
        limits = [self.profile(batch).cap(self.states(batch, call))]
        workspace = (self._workspaces[1] if self._workspaces else {}).get(batch["workspaceId"]) or {}
        limits.append(workspace.get("maxAttemptsPerNumberPerDay"))
        limit = min((n for n in limits if n), default=None)
        return limit, None if limit is None else f"cap: {limit} per 24 h"

    async def reserve(self, grants: dict[ObjectId, list[dict]], by_id: dict[ObjectId, dict], token: str,
                      now: dt.datetime) -> tuple[dict[ObjectId, list[dict]], list[tuple]]:
        """Reserve the capped workspaces' attempts (one port call): the grants left, and the calls the
        caps refused as deferrals `(callId, when, entry)` to when the cap allows them."""
        requests, rules = [], {}
        for batch_id, calls in grants.items():
            batch = by_id[batch_id]
            if self.caps is None or not self.capped(batch):
                continue
            for call in calls:
                limit, rules[call["_id"]] = self._limit(batch, call)
                requests.append(CapRequest(batch["workspaceId"], call["phoneNumber"], call["_id"], limit))
        if not requests:
            return grants, []
        # Stamped at the latest placing instant; counted over the stamps after now - 24 h.
        refused = await self.caps.reserve(requests, token, now + self.ahead, DAY + self.ahead)
        if not refused:
            return grants, []
        deferrals = [(cid, when - self.ahead, {"at": now, "event": "deferred", "rule": rules[cid]})
                     for cid, when in refused.items()]
        kept = {b: [c for c in calls if c["_id"] not in refused] for b, calls in grants.items()}
        return {b: calls for b, calls in kept.items() if calls}, deferrals

    async def release(self, call_ids: list[ObjectId], token: str) -> None:
        """Give back the attempts of calls reserved under `token` that were not placed (whether or not the
        workspace still counts as capped: it may have stopped since the reservation; nothing reserved, nothing
        removed)."""
        if call_ids and self.caps is not None:
            await self.caps.release(call_ids, token)
