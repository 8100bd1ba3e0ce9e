"""The `workspaces`, `api_keys` and `agents` collections, for the TenancyRepo port. Indexes: api_keys
(keyHash, unique); agents (workspaceId, createdAt), (callingNumbers). A calling number belongs to one
agent: checked before the insert (an admin operation; two concurrent creations of agents sharing a
number could both pass, which a unique multikey index would refuse but would also refuse two agents
without numbers)."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from dialer.ports import CREDIT_REFS, CreditReservation, reservation_key
from dialer.store.mongo.documents import normalise, unavailable

TOP_UP_TRIES = 3  # a retry topping up a reservation another request is changing at the same moment


class MongoTenancy:
    def __init__(self, db: Any) -> None:
        self.workspaces = db["workspaces"]
        self.keys = db["api_keys"]
        self.agents = db["agents"]

    @unavailable
    async def insert_workspace(self, workspace: dict) -> dict:
        try:
            await self.workspaces.insert_one(dict(workspace))
        except DuplicateKeyError:  # written under this id by a request whose process died
            there = normalise(await self.workspaces.find_one({"_id": workspace["_id"]}))
            if there is not None:
                return there
            raise
        return dict(workspace)

    @unavailable
    async def get_workspace(self, workspace_id: ObjectId) -> dict | None:
        return normalise(await self.workspaces.find_one({"_id": workspace_id}))

    @unavailable
    async def list_workspaces(self) -> list[dict]:
        return [normalise(d) for d in await self.workspaces.find({}).sort([("createdAt", 1), ("_id", 1)]).to_list(None)]

    @unavailable
    async def update_workspace(self, workspace_id: ObjectId, set_fields: dict) -> dict | None:
        return normalise(await self.workspaces.find_one_and_update(
            {"_id": workspace_id}, {"$set": set_fields}, return_document=ReturnDocument.AFTER))

    @unavailable
    async def add_credits(self, workspace_id: ObjectId, amount: int, ref: str | None = None) -> dict | None:
        flt: dict[str, Any] = {"_id": workspace_id, "credits": {"$type": "number", "$gte": max(0, -amount)}}
        change: dict[str, Any] = {"$inc": {"credits": amount}}
        if ref is not None:  # noted in the same write: a rerun under ref adds nothing
            flt["creditRefs"] = {"$ne": ref}
            change["$push"] = {"creditRefs": {"$each": [ref], "$slice": -CREDIT_REFS}}
        after = await self.workspaces.find_one_and_update(flt, change, return_document=ReturnDocument.AFTER)
        if after is None and ref is not None:
            after = await self.workspaces.find_one({"_id": workspace_id, "credits": {"$type": "number"}, "creditRefs": ref})
        return normalise(after)

    @unavailable
    async def take_credits(self, workspace_id: ObjectId, amount: int, ref: str | None = None,
                           by: str | None = None) -> tuple[bool, int | None]:
        # One conditional decrement: concurrent reservations never take more than the balance; the
        # reservation's note under `ref` is part of the same write.
        flt: dict[str, Any] = {"_id": workspace_id, "credits": {"$gte": amount}}
        change: dict[str, Any] = {"$inc": {"credits": -amount}}
        noted = f"reservations.{reservation_key(ref)}" if ref is not None else None
        if noted is not None:
            flt[noted] = {"$exists": False}
            change["$set"] = {noted: {"amount": amount, "by": by, "ref": ref}}
        taken = await self.workspaces.find_one_and_update(flt, change, projection={"credits": 1},
                                                          return_document=ReturnDocument.AFTER)
        if taken is not None:
            return True, taken["credits"]
        for _ in range(TOP_UP_TRIES):
            doc = await self.workspaces.find_one({"_id": workspace_id}, {"credits": 1, "reservations": 1})
            balance = None if doc is None else doc.get("credits")
            if balance is None:
                return True, None
            held = (doc.get("reservations") or {}).get(reservation_key(ref)) if ref is not None else None
            if held is None:
                return False, balance
            more = amount - held["amount"]
            if more <= 0:
                return True, balance
            # A retry with more contacts: the difference, and the note raised, if the note is as read.
            topped = await self.workspaces.find_one_and_update(
                {"_id": workspace_id, "credits": {"$gte": more}, f"{noted}.amount": held["amount"],
                 f"{noted}.by": held.get("by")},
                {"$inc": {"credits": -more}, "$set": {f"{noted}.amount": amount}},
                projection={"credits": 1}, return_document=ReturnDocument.AFTER)
            if topped is not None:
                return True, topped["credits"]
            if balance < more:
                return False, balance
        return False, balance

    @unavailable
    async def settle_credits(self, workspace_id: ObjectId, ref: str, refund_by: str | None = None,
                             spent: int | None = None, made_by: str | None = None) -> None:
        noted = f"reservations.{reservation_key(ref)}"
        maker = refund_by if refund_by is not None else made_by
        if refund_by is None and spent is None:
            await self.workspaces.update_one({"_id": workspace_id, **({f"{noted}.by": maker} if maker else {})},
                                             {"$unset": {noted: ""}})
            return
        flt = {"_id": workspace_id, **({f"{noted}.by": maker} if maker is not None else {})}
        doc = await self.workspaces.find_one({**flt, noted: {"$exists": True}}, {noted: 1})
        if doc is not None:  # removed by the same write that gives back, the note as read: once
            held = doc["reservations"][reservation_key(ref)]
            back = held["amount"] if refund_by is not None else max(0, held["amount"] - spent)
            await self.workspaces.update_one({**flt, f"{noted}.amount": held["amount"]},
                                             {"$inc": {"credits": back}, "$unset": {noted: ""}})

    @unavailable
    async def reservations(self) -> list[CreditReservation]:
        found = await self.workspaces.find({"reservations": {"$exists": True, "$ne": {}}},
                                           {"reservations": 1}).to_list(None)
        return [CreditReservation(doc["_id"], held["ref"], held["amount"], held.get("by"))
                for doc in found for held in (doc.get("reservations") or {}).values() if held.get("ref")]

    @unavailable
    async def insert_key(self, key: dict) -> None:
        try:  # a key of this workspace under this id: the dead request's, never shown, replaced
            await self.keys.replace_one({"_id": key["_id"], "workspaceId": key["workspaceId"]}, dict(key), upsert=True)
        except DuplicateKeyError:
            raise ValueError("the key exists") from None

    @unavailable
    async def revoke_key(self, key_hash: str) -> bool:
        return (await self.keys.update_one({"keyHash": key_hash}, {"$set": {"revoked": True}})).modified_count == 1

    @unavailable
    async def key_by_hash(self, key_hash: str) -> dict | None:
        return normalise(await self.keys.find_one({"keyHash": key_hash, "revoked": False}))

    @unavailable
    async def insert_agent(self, agent: dict) -> bool:
        if await self._there(agent):
            return True
        if agent["callingNumbers"] and await self.agents.find_one(
                {"callingNumbers": {"$in": agent["callingNumbers"]}}, {"_id": 1}) is not None:
            return False
        try:
            await self.agents.insert_one(dict(agent))
        except DuplicateKeyError:
            if not await self._there(agent):
                raise
        return True

    async def _there(self, agent: dict) -> bool:
        """Whether this agent's workspace has an agent under its _id (a dead request's, the same)."""
        there = await self.agents.find_one({"_id": agent["_id"]}, {"workspaceId": 1})
        if there is not None and there["workspaceId"] != agent["workspaceId"]:
            raise ValueError(f"agent {agent['_id']} exists")
        return there is not None

    @unavailable
    async def list_agents(self, workspace_id: ObjectId) -> list[dict]:
        docs = await self.agents.find({"workspaceId": workspace_id}).sort([("createdAt", 1), ("_id", 1)]).to_list(None)
        return [normalise(d) for d in docs]

    @unavailable
    async def get_agent(self, agent_id: ObjectId, workspace_id: ObjectId | None = None) -> dict | None:
        flt = {"_id": agent_id, **({"workspaceId": workspace_id} if workspace_id is not None else {})}
        return normalise(await self.agents.find_one(flt))

    @unavailable
    async def agent_owning(self, workspace_id: ObjectId, numbers: list[str]) -> dict | None:
        return normalise(await self.agents.find_one({"workspaceId": workspace_id, "callingNumbers": {"$all": numbers}}))

    @unavailable
    async def delete_agent(self, agent_id: ObjectId) -> bool:
        return (await self.agents.delete_one({"_id": agent_id})).deleted_count == 1
