"""Tenancy: workspaces, their API keys (stored as SHA-256 hashes, never logged) and their agents."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from dialer.core.clock import Clock
from dialer.core.compliance import PROFILES
from dialer.core.phones import PhoneError, PhoneNormaliser
from dialer.core.records import bad_variable_name, variable_name_problem
from dialer.ports import TenancyRepo
from dialer.services.idempotency import Claim
from dialer.core.windows import valid_zone

KEY_PREFIX = "dk_"
WORKSPACE_SETTINGS = frozenset({"credits", "addCredits", "normalizationAllowed", "defaultConcurrencyLimit",
                                "compliance", "maxAttemptsPerNumberPerDay"})
MAX_ATTEMPTS_PER_DAY = 100
MAX_CREDITS = 10**12


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class TenancyError(ValueError):
    """Bad input to a tenancy operation; the message is safe to show."""


def hash_key(key: str) -> str:
    # A header value may hold any bytes (aiohttp hands non-UTF-8 ones over surrogate-escaped): hash
    # them as they came, so such a key is simply not found, never an error.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_id(value: Any) -> ObjectId | None:
    if isinstance(value, ObjectId):
        return value
    if not isinstance(value, str):
        return None
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


@dataclass(frozen=True)
class Principal:
    """Who is calling: the workspace a valid key belongs to."""

    workspace_id: ObjectId
    key_id: ObjectId


class Tenancy:
    def __init__(self, repo: TenancyRepo, clock: Clock, phones: PhoneNormaliser) -> None:
        self.repo = repo
        self.clock = clock
        self.phones = phones

    async def create_workspace(self, name: str, claim: Claim | None = None) -> tuple[dict, str]:
        """`claim`: the request's Idempotency-Key claim. The workspace and its key then take its ids, so
        the retry that takes over the key of a request whose process died finds the workspace it wrote,
        and its key replaces the one never shown."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise TenancyError("name must be a non-empty string of at most 200 characters")
        doc = {"_id": claim.object_id(0) if claim else ObjectId(), "name": name.strip(), "createdAt": self.clock.now()}
        doc = await self.repo.insert_workspace(doc)
        key = await self.create_key(doc["_id"], key_id=claim and claim.object_id(1))
        return doc, key

    async def get_workspace(self, workspace_id: Any) -> dict | None:
        oid = parse_id(workspace_id)
        return None if oid is None else await self.repo.get_workspace(oid)

    async def list_workspaces(self) -> list[dict]:
        return await self.repo.list_workspaces()

    async def update_settings(self, workspace_id: ObjectId, body: Any, ref: str | None = None) -> dict:
        """The workspace's settings: `credits` (an integer >= 0 sets the balance, null makes it unlimited),
        `addCredits` (added to a set balance, atomically; negative takes away), `normalizationAllowed`
        (the enrollment face's normalizeFields allowlist), `defaultConcurrencyLimit` (enrollment batches),
        `compliance` (the profile of its batches without their own; null: none) and
        `maxAttemptsPerNumberPerDay` (attempts per number per rolling 24 h across its batches; null: no cap).
        `ref`: the request's Idempotency-Key claim, noted with the credits added (a retry that takes over
        the key of a request whose process died after adding adds nothing)."""
        if not isinstance(body, dict) or not body:
            raise TenancyError("body must be an object with credits, addCredits, normalizationAllowed, "
                               "defaultConcurrencyLimit, compliance or maxAttemptsPerNumberPerDay")
        unknown = set(body) - WORKSPACE_SETTINGS
        if unknown:
            raise TenancyError(f"unknown fields: {sorted(unknown)}")
        fields: dict[str, Any] = {}
        if "credits" in body:
            credits = body["credits"]
            if credits is not None and (not _is_int(credits) or not 0 <= credits <= MAX_CREDITS):
                raise TenancyError(f"credits must be null (unlimited) or an integer from 0 to {MAX_CREDITS}")
            fields["credits"] = credits
        if "normalizationAllowed" in body:
            if not isinstance(body["normalizationAllowed"], bool):
                raise TenancyError("normalizationAllowed must be true or false")
            fields["normalizationAllowed"] = body["normalizationAllowed"]
        if "defaultConcurrencyLimit" in body:
            limit = body["defaultConcurrencyLimit"]
            if limit is not None and (not _is_int(limit) or not 1 <= limit <= 1000):
                raise TenancyError("defaultConcurrencyLimit must be null or an integer from 1 to 1000")
            fields["defaultConcurrencyLimit"] = limit
        if "compliance" in body:
            if body["compliance"] is not None and body["compliance"] not in PROFILES:
                raise TenancyError(f"compliance must be one of {', '.join(PROFILES)} (or null: none)")
            fields["compliance"] = body["compliance"]
        if "maxAttemptsPerNumberPerDay" in body:
            cap = body["maxAttemptsPerNumberPerDay"]
            if cap is not None and (not _is_int(cap) or not 1 <= cap <= MAX_ATTEMPTS_PER_DAY):
                raise TenancyError(f"maxAttemptsPerNumberPerDay must be null or an integer from 1 to "
                                   f"{MAX_ATTEMPTS_PER_DAY}")
            fields["maxAttemptsPerNumberPerDay"] = cap
        add = body.get("addCredits")
        if add is not None and (not _is_int(add) or not -MAX_CREDITS <= add <= MAX_CREDITS):
            raise TenancyError(f"addCredits must be an integer from {-MAX_CREDITS} to {MAX_CREDITS}")
        if add is not None and "credits" in body:
            raise TenancyError("give credits or addCredits, not both")
        after = await self.repo.update_workspace(workspace_id, fields) if fields else \
            await self.repo.get_workspace(workspace_id)
        if after is None:
            raise TenancyError("workspace not found")
        if add:
            if after.get("credits") is None:
                raise TenancyError("the workspace has unlimited credits: set a balance with credits first")
            added = await self.repo.add_credits(workspace_id, add, ref)
            if added is None:
                raise TenancyError(f"the workspace's balance is smaller than {-add}")
            after = added
        return after

    async def create_key(self, workspace_id: ObjectId, key: str | None = None, key_id: ObjectId | None = None) -> str:
        """`key_id`: chosen by a keyed request's claim; a key the request's dead predecessor wrote under it
        (never shown) is replaced by this one."""
        key = key or new_key()
        await self.repo.insert_key(
            {"_id": key_id or ObjectId(), "workspaceId": workspace_id, "keyHash": hash_key(key),
             "hint": key[:6] + "…", "createdAt": self.clock.now(), "revoked": False}
        )
        return key

    async def revoke_key(self, key: str, workspace_id: ObjectId | None = None) -> bool:
        """Revoke a live key (of `workspace_id` only, when given: one workspace's admin call never touches
        another's keys); whether it was one."""
        if workspace_id is not None:
            principal = await self.authenticate(key)
            if principal is None or principal.workspace_id != workspace_id:
                return False
        return await self.repo.revoke_key(hash_key(key))

    async def authenticate(self, key: str | None) -> Principal | None:
        if not key:
            return None
        doc = await self.repo.key_by_hash(hash_key(key))
        return None if doc is None else Principal(workspace_id=doc["workspaceId"], key_id=doc["_id"])

    async def create_agent(self, workspace_id: ObjectId, spec: dict, agent_id: ObjectId | None = None) -> dict:
        """`agent_id`: chosen by a keyed request's claim; the agent its dead predecessor wrote under it is
        found again (it owns the numbers: not a clash)."""
        agent = self._agent_doc(workspace_id, spec)
        if agent_id is not None:
            agent["_id"] = agent_id
        if not await self.repo.insert_agent(agent):
            raise TenancyError("a calling number is already owned by another agent")
        return agent if agent_id is None else (await self.repo.get_agent(agent_id, workspace_id) or agent)

    async def list_agents(self, workspace_id: ObjectId) -> list[dict]:
        return await self.repo.list_agents(workspace_id)

    async def get_agent(self, workspace_id: ObjectId, agent_id: Any) -> dict | None:
        oid = parse_id(agent_id)
        if oid is None:
            return None
        return await self.repo.get_agent(oid, workspace_id)

    async def agent_for_numbers(self, workspace_id: ObjectId, numbers: list[str]) -> dict | None:
        """The workspace's agent that owns all of these calling numbers."""
        return await self.repo.agent_owning(workspace_id, numbers)

    def _agent_doc(self, workspace_id: ObjectId, spec: dict) -> dict:
        if not isinstance(spec, dict):
            raise TenancyError("agent must be an object")
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise TenancyError("agent name must be a non-empty string")
        required = spec.get("requiredVariables", [])
        if not isinstance(required, list) or not all(isinstance(v, str) and v for v in required):
            raise TenancyError("requiredVariables must be a list of non-empty strings")
        for variable in required:  # a name no record could carry would refuse every record of the agent's batches
            if bad_variable_name(variable):
                raise TenancyError(f"requiredVariables: {variable_name_problem(variable)}")
        numbers = spec.get("callingNumbers", [])
        if not isinstance(numbers, list):
            raise TenancyError("callingNumbers must be a list of phone numbers")
        try:
            e164 = self.phones.e164_each(numbers)
        except PhoneError as exc:
            raise TenancyError(f"calling number {exc}") from None
        zones = spec.get("timezones", [])
        if isinstance(zones, str):
            zones = [zones]
        if not isinstance(zones, list) or not all(valid_zone(z) for z in zones):
            raise TenancyError("timezones must be a list of IANA time zone names")
        for url_field in ("twimlUrl", "streamUrl"):
            url = spec.get(url_field)
            if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://", "wss://", "ws://"))):
                raise TenancyError(f"{url_field} must be an http(s) or ws(s) URL")
        return {
            "_id": ObjectId(),
            "workspaceId": workspace_id,
            "name": name.strip(),
            "requiredVariables": sorted(set(required)),
            "callingNumbers": sorted(set(e164)),
            "timezones": zones,
            "twimlUrl": spec.get("twimlUrl"),
            "streamUrl": spec.get("streamUrl"),
            "createdAt": self.clock.now(),
        }


def workspace_view(workspace: dict) -> dict:
    return {
        "workspaceId": str(workspace["_id"]),
        "name": workspace["name"],
        "credits": workspace.get("credits"),  # null: unlimited
        "normalizationAllowed": bool(workspace.get("normalizationAllowed")),
        "defaultConcurrencyLimit": workspace.get("defaultConcurrencyLimit"),
        "compliance": workspace.get("compliance"),
        "maxAttemptsPerNumberPerDay": workspace.get("maxAttemptsPerNumberPerDay"),
    }


def agent_view(agent: dict) -> dict:
    return {
        "agentId": str(agent["_id"]),
        "name": agent["name"],
        "requiredVariables": agent["requiredVariables"],
        "callingNumbers": agent["callingNumbers"],
        "timezones": agent["timezones"],
        "twimlUrl": agent.get("twimlUrl"),
        "streamUrl": agent.get("streamUrl"),
    }
