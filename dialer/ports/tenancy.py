"""TenancyRepo: workspaces, API keys, agents and their calling numbers, credits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from bson import ObjectId


class TenancyRepo(Protocol):
    async def insert_workspace(self, workspace: dict) -> dict:
        """The workspace stored under its _id: this one, or the one already there (written under the same
        id by a request whose process died, which its retry takes over: see Claim in
        dialer/services/idempotency.py)."""

    async def get_workspace(self, workspace_id: ObjectId) -> dict | None: ...

    async def list_workspaces(self) -> list[dict]:
        """By createdAt."""

    async def insert_key(self, key: dict) -> None:
        """`{_id, workspaceId, keyHash, hint, createdAt, revoked}`. A key already stored under its _id for
        the same workspace is replaced by this one: it was written under the same id by a request whose
        process died before showing it (its retry shows this one); for another workspace, ValueError."""

    async def revoke_key(self, key_hash: str) -> bool: ...

    async def key_by_hash(self, key_hash: str) -> dict | None:
        """The key document if it exists and is not revoked."""

    async def insert_agent(self, agent: dict) -> bool:
        """False (and nothing written) when one of its callingNumbers is owned by another agent. True
        (nothing written) when an agent of its workspace is already stored under its _id: written under the
        same id by a request whose process died, which its retry takes over; of another workspace, ValueError."""

    async def list_agents(self, workspace_id: ObjectId) -> list[dict]:
        """By createdAt."""

    async def delete_agent(self, agent_id: ObjectId) -> bool:
        """Remove the agent (its calling numbers become free); batches that used it can no longer run."""

    async def get_agent(self, agent_id: ObjectId, workspace_id: ObjectId | None = None) -> dict | None:
        """The agent; with `workspace_id`, only if it belongs to that workspace."""

    async def agent_owning(self, workspace_id: ObjectId, numbers: list[str]) -> dict | None:
        """The workspace's agent that owns every one of these calling numbers."""

    async def update_workspace(self, workspace_id: ObjectId, set_fields: dict[str, Any]) -> dict | None:
        """Set these fields of the workspace (settings: `credits`, `normalizationAllowed`,
        `defaultConcurrencyLimit`); the workspace after, or None if unknown."""

    async def add_credits(self, workspace_id: ObjectId, amount: int, ref: str | None = None) -> dict | None:
        """credits += amount (negative takes away, never below zero) when the workspace has a balance
        (credits set); the workspace after, or None when unknown, unlimited or the balance is too small.
        With `ref` (a keyed request's claim) the change is noted with the workspace under it in the same
        write (`creditRefs`, its last CREDIT_REFS kept): another under a noted ref changes nothing and
        answers the workspace as it is (the retry of a request whose process died after adding)."""

    async def take_credits(self, workspace_id: ObjectId, amount: int, ref: str | None = None,
                           by: str | None = None) -> tuple[bool, int | None]:
        """Reserve `amount` credits atomically: (True, balance after) when the balance covers it, (True,
        None) when the workspace is unlimited (no balance set), (False, balance) when it does not.
        With `ref` (an enrollment intake's id) the reservation is noted with the workspace under it (by
        the request `by`) until `settle_credits`: another under a noted ref takes only what the noted
        amount lacks (nothing for the retry of a request whose process died after reserving; the
        difference, and the note raised to `amount`, for a retry with more contacts) and answers
        (True, balance), or (False, balance) when the balance does not cover the difference."""

    async def settle_credits(self, workspace_id: ObjectId, ref: str, refund_by: str | None = None,
                             spent: int | None = None, made_by: str | None = None) -> None:
        """Forget the reservation noted under `ref`: spent (its intake is written); with `spent` (the
        credits of the intake written under `ref`, whichever request wrote it) and `made_by` (the
        reservation's maker the intake was settled on), what that reservation holds beyond them is given
        back first, and another's is left alone; with `refund_by`, all of it is given back first, if that
        request made it (it died, or its write failed, before any intake; or it reserved after the
        intake was settled)."""

    async def reservations(self) -> list[CreditReservation]:
        """Every reservation still noted (each workspace's, by `take_credits` under a ref): the reaper gives
        back those whose request died before writing its intake and was never retried."""


CREDIT_REFS = 100  # the refs of a workspace's last credit changes it keeps (add_credits)


@dataclass(frozen=True)
class CreditReservation:
    workspace_id: ObjectId
    ref: str  # the enrollment intake's id
    amount: int
    by: str | None  # the request that made it


def reservation_key(ref: str) -> str:
    """Where a workspace notes the reservation made under `ref`: a field name any store accepts."""
    return hashlib.sha256(ref.encode()).hexdigest()[:32]
