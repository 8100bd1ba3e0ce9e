"""Workspaces, API keys and agents in memory: the TenancyRepo port (see dialer/ports.py).

Documents live in dicts by _id. Indexes: keyHash -> key _id (authentication on every request);
calling number -> owning agent _id (the clash check of `insert_agent` and `agent_owning`);
workspace _id -> its agents' ids (`list_agents`). Lists are sorted by (createdAt, _id) when read
(workspaces and agents are few). Every method is synchronous inside, hence atomic on the event loop.
"""

from __future__ import annotations

from bson import ObjectId

from dialer.ports import reservation_key
from dialer.store.memory._common import clone, normalised


def _by_created(docs: list[dict]) -> list[dict]:
    return [clone(d) for d in sorted(docs, key=lambda d: (d.get("createdAt") is not None, d.get("createdAt"), d["_id"]))]


class MemoryTenancy:
    def __init__(self) -> None:
        self._workspaces: dict[ObjectId, dict] = {}
        self._keys: dict[ObjectId, dict] = {}
        self._key_by_hash: dict[str, ObjectId] = {}
        self._agents: dict[ObjectId, dict] = {}
        self._number_owner: dict[str, ObjectId] = {}
        self._agents_of: dict[ObjectId, set[ObjectId]] = {}

    # ---- workspaces ------------------------------------------------------------------------------
    async def insert_workspace(self, workspace: dict) -> None:
        if workspace["_id"] in self._workspaces:
            raise ValueError(f"workspace {workspace['_id']} exists")
        self._workspaces[workspace["_id"]] = normalised(workspace)

    async def get_workspace(self, workspace_id: ObjectId) -> dict | None:
        doc = self._workspaces.get(workspace_id)
        return None if doc is None else clone(doc)

    async def list_workspaces(self) -> list[dict]:
        return _by_created(list(self._workspaces.values()))

    async def update_workspace(self, workspace_id: ObjectId, set_fields: dict) -> dict | None:
        doc = self._workspaces.get(workspace_id)
        if doc is None:
            return None
        doc.update(normalised(set_fields))
        return clone(doc)

    async def add_credits(self, workspace_id: ObjectId, amount: int) -> dict | None:
        doc = self._workspaces.get(workspace_id)
        if doc is None or doc.get("credits") is None or doc["credits"] + amount < 0:
            return None
        doc["credits"] += amount
        return clone(doc)

    async def take_credits(self, workspace_id: ObjectId, amount: int, ref: str | None = None,
                           by: str | None = None) -> tuple[bool, int | None]:
        doc = self._workspaces.get(workspace_id)
        balance = None if doc is None else doc.get("credits")
        if balance is None:
            return True, None
        if ref is not None and reservation_key(ref) in doc.get("reservations", {}):
            return True, balance
        if balance < amount:
            return False, balance
        doc["credits"] = balance - amount
        if ref is not None:
            doc.setdefault("reservations", {})[reservation_key(ref)] = {"amount": amount, "by": by}
        return True, doc["credits"]

    async def settle_credits(self, workspace_id: ObjectId, ref: str, refund_by: str | None = None) -> None:
        doc = self._workspaces.get(workspace_id) or {}
        held = doc.get("reservations", {}).get(reservation_key(ref))
        if held is None or (refund_by is not None and held["by"] != refund_by):
            return
        if refund_by is not None:
            doc["credits"] += held["amount"]
        del doc["reservations"][reservation_key(ref)]

    # ---- API keys --------------------------------------------------------------------------------
    async def insert_key(self, key: dict) -> None:
        if key["_id"] in self._keys or key["keyHash"] in self._key_by_hash:
            raise ValueError("the key exists")
        doc = normalised(key)
        self._keys[doc["_id"]] = doc
        self._key_by_hash[doc["keyHash"]] = doc["_id"]

    async def revoke_key(self, key_hash: str) -> bool:
        key_id = self._key_by_hash.get(key_hash)
        if key_id is None or self._keys[key_id].get("revoked") is True:
            return False
        self._keys[key_id]["revoked"] = True
        return True

    async def key_by_hash(self, key_hash: str) -> dict | None:
        key_id = self._key_by_hash.get(key_hash)
        if key_id is None or self._keys[key_id].get("revoked") is not False:
            return None
        return clone(self._keys[key_id])

    # ---- agents ----------------------------------------------------------------------------------
    async def insert_agent(self, agent: dict) -> bool:
        if agent["_id"] in self._agents:
            raise ValueError(f"agent {agent['_id']} exists")
        numbers = list(agent.get("callingNumbers") or [])
        if any(n in self._number_owner for n in numbers):
            return False
        doc = normalised(agent)
        self._agents[doc["_id"]] = doc
        self._agents_of.setdefault(doc["workspaceId"], set()).add(doc["_id"])
        for number in numbers:
            self._number_owner[number] = doc["_id"]
        return True

    async def list_agents(self, workspace_id: ObjectId) -> list[dict]:
        return _by_created([self._agents[i] for i in self._agents_of.get(workspace_id, ())])

    async def delete_agent(self, agent_id: ObjectId) -> bool:
        doc = self._agents.pop(agent_id, None)
        if doc is None:
            return False
        self._agents_of.get(doc["workspaceId"], set()).discard(agent_id)
        for number in doc.get("callingNumbers", ()):
            if self._number_owner.get(number) == agent_id:
                del self._number_owner[number]
        return True

    async def get_agent(self, agent_id: ObjectId, workspace_id: ObjectId | None = None) -> dict | None:
        doc = self._agents.get(agent_id)
        if doc is None or (workspace_id is not None and doc["workspaceId"] != workspace_id):
            return None
        return clone(doc)

    async def agent_owning(self, workspace_id: ObjectId, numbers: list[str]) -> dict | None:
        if not numbers:
            return None  # as MongoDB's {"$all": []}: matches nothing
        owner = self._number_owner.get(numbers[0])
        if owner is None or any(self._number_owner.get(n) != owner for n in numbers[1:]):
            return None
        doc = self._agents[owner]
        return clone(doc) if doc["workspaceId"] == workspace_id else None
