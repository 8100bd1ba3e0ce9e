"""Workspaces, API keys and agents in SQLite: the TenancyRepo port (see dialer/ports/).

Tables and indexes (schema.py): `api_keys.key_hash` (unique) serves authentication on every request;
`agent_numbers` (number -> agent) serves insert_agent's clash check and `agent_owning`;
`agents_workspace` serves `list_agents`. Lists are ordered by (createdAt, _id). Credits change by
compare-and-set inside one writer transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from bson import ObjectId

from dialer.ports import CREDIT_REFS, CreditReservation, reservation_key
from dialer.store.sqlite.database import Database
from dialer.store.sqlite.documents import docs, encode, marks, ms, one


def _by_created(conn: sqlite3.Connection, sql: str, params: tuple) -> list[dict]:
    return sorted(docs(conn.execute(sql, params)), key=lambda d: (d.get("createdAt") is not None, d.get("createdAt"), d["_id"]))


def _workspace(conn: sqlite3.Connection, workspace_id: Any) -> dict | None:
    if not isinstance(workspace_id, ObjectId):
        return None
    return one(conn, "SELECT doc FROM workspaces WHERE id = ?", (workspace_id.binary,))


def _save_workspace(conn: sqlite3.Connection, doc: dict) -> dict:
    conn.execute("UPDATE workspaces SET doc = ? WHERE id = ?", (encode(doc), doc["_id"].binary))
    return doc


class SqliteTenancy:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- workspaces ------------------------------------------------------------------------------
    async def insert_workspace(self, workspace: dict) -> dict:
        def work(conn: sqlite3.Connection) -> dict:
            there = _workspace(conn, workspace["_id"])
            if there is not None:
                return there
            conn.execute("INSERT INTO workspaces (id, created_at, doc) VALUES (?, ?, ?)",
                         (workspace["_id"].binary, ms(workspace.get("createdAt")), encode(workspace)))
            return dict(workspace)

        return await self.db.write(work)

    async def get_workspace(self, workspace_id: ObjectId) -> dict | None:
        return await self.db.read(_workspace, workspace_id)

    async def list_workspaces(self) -> list[dict]:
        return await self.db.read(_by_created, "SELECT doc FROM workspaces ORDER BY created_at, id", ())

    async def update_workspace(self, workspace_id: ObjectId, set_fields: dict) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            doc = _workspace(conn, workspace_id)
            return None if doc is None else _save_workspace(conn, {**doc, **set_fields})

        return await self.db.write(work)

    async def add_credits(self, workspace_id: ObjectId, amount: int, ref: str | None = None) -> dict | None:
        def work(conn: sqlite3.Connection) -> dict | None:
            doc = _workspace(conn, workspace_id)
            if doc is None or doc.get("credits") is None:
                return None
            if ref is not None and ref in doc.get("creditRefs", []):
                return doc
            if doc["credits"] + amount < 0:
                return None
            doc["credits"] += amount
            if ref is not None:
                doc["creditRefs"] = [*doc.get("creditRefs", []), ref][-CREDIT_REFS:]
            return _save_workspace(conn, doc)

        return await self.db.write(work)

    async def take_credits(self, workspace_id: ObjectId, amount: int, ref: str | None = None,
                           by: str | None = None) -> tuple[bool, int | None]:
        def work(conn: sqlite3.Connection) -> tuple[bool, int | None]:
            doc = _workspace(conn, workspace_id)
            balance = None if doc is None else doc.get("credits")
            if balance is None:
                return True, None
            held = doc.get("reservations", {}).get(reservation_key(ref)) if ref is not None else None
            more = amount - (held["amount"] if held is not None else 0)
            if more <= 0:
                return True, balance
            if balance < more:
                return False, balance
            doc["credits"] = balance - more
            if held is not None:
                held["amount"] = amount  # a retry with more contacts: the note covers them too
            elif ref is not None:
                doc.setdefault("reservations", {})[reservation_key(ref)] = {"amount": amount, "by": by, "ref": ref}
            _save_workspace(conn, doc)
            return True, doc["credits"]

        return await self.db.write(work)

    async def settle_credits(self, workspace_id: ObjectId, ref: str, refund_by: str | None = None,
                             spent: int | None = None, made_by: str | None = None) -> None:
        def work(conn: sqlite3.Connection) -> None:
            doc = _workspace(conn, workspace_id)
            held = (doc or {}).get("reservations", {}).get(reservation_key(ref))
            maker = refund_by if refund_by is not None else made_by
            if held is None or (maker is not None and held["by"] != maker):
                return
            if refund_by is not None:
                doc["credits"] += held["amount"]
            elif spent is not None:
                doc["credits"] += max(0, held["amount"] - spent)
            del doc["reservations"][reservation_key(ref)]
            _save_workspace(conn, doc)

        await self.db.write(work)

    async def reservations(self) -> list[CreditReservation]:
        # Every workspace read (the reaper's, every few minutes): a deployment has few workspaces.
        def work(conn: sqlite3.Connection) -> list[CreditReservation]:
            return [CreditReservation(doc["_id"], held["ref"], held["amount"], held.get("by"))
                    for doc in docs(conn.execute("SELECT doc FROM workspaces"))
                    for held in (doc.get("reservations") or {}).values() if held.get("ref")]

        return await self.db.read(work)

    # ---- API keys --------------------------------------------------------------------------------
    async def insert_key(self, key: dict) -> None:
        def work(conn: sqlite3.Connection) -> None:
            there = one(conn, "SELECT doc FROM api_keys WHERE id = ?", (key["_id"].binary,))
            if there is not None and there["workspaceId"] != key["workspaceId"]:
                raise ValueError("the key exists")
            try:
                conn.execute("INSERT INTO api_keys (id, key_hash, doc) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE "
                             "SET key_hash = excluded.key_hash, doc = excluded.doc",
                             (key["_id"].binary, key["keyHash"], encode(key)))
            except sqlite3.IntegrityError:
                raise ValueError("the key exists") from None

        await self.db.write(work)

    async def revoke_key(self, key_hash: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            doc = one(conn, "SELECT doc FROM api_keys WHERE key_hash = ?", (key_hash,))
            if doc is None or doc.get("revoked") is True:
                return False
            doc["revoked"] = True
            conn.execute("UPDATE api_keys SET doc = ? WHERE key_hash = ?", (encode(doc), key_hash))
            return True

        return await self.db.write(work)

    async def key_by_hash(self, key_hash: str) -> dict | None:
        doc = await self.db.read(one, "SELECT doc FROM api_keys WHERE key_hash = ?", (key_hash,))
        return doc if doc is not None and doc.get("revoked") is False else None

    # ---- agents ----------------------------------------------------------------------------------
    async def insert_agent(self, agent: dict) -> bool:
        numbers = list(agent.get("callingNumbers") or [])

        def work(conn: sqlite3.Connection) -> bool:
            there = one(conn, "SELECT doc FROM agents WHERE id = ?", (agent["_id"].binary,))
            if there is not None:
                if there["workspaceId"] != agent["workspaceId"]:
                    raise ValueError(f"agent {agent['_id']} exists")
                return True
            if numbers and conn.execute(f"SELECT 1 FROM agent_numbers WHERE number IN ({marks(numbers)})",
                                        numbers).fetchone():
                return False
            conn.execute("INSERT INTO agents (id, workspace_id, created_at, doc) VALUES (?, ?, ?, ?)",
                         (agent["_id"].binary, agent["workspaceId"].binary, ms(agent.get("createdAt")), encode(agent)))
            conn.executemany("INSERT OR IGNORE INTO agent_numbers (number, agent_id) VALUES (?, ?)",
                             [(n, agent["_id"].binary) for n in numbers])
            return True

        return await self.db.write(work)

    async def list_agents(self, workspace_id: ObjectId) -> list[dict]:
        return await self.db.read(_by_created, "SELECT doc FROM agents WHERE workspace_id = ?", (workspace_id.binary,))

    async def delete_agent(self, agent_id: ObjectId) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM agent_numbers WHERE agent_id = ?", (agent_id.binary,))
            return conn.execute("DELETE FROM agents WHERE id = ?", (agent_id.binary,)).rowcount == 1

        return await self.db.write(work) if isinstance(agent_id, ObjectId) else False

    async def get_agent(self, agent_id: ObjectId, workspace_id: ObjectId | None = None) -> dict | None:
        if not isinstance(agent_id, ObjectId):
            return None
        doc = await self.db.read(one, "SELECT doc FROM agents WHERE id = ?", (agent_id.binary,))
        if doc is None or (workspace_id is not None and doc["workspaceId"] != workspace_id):
            return None
        return doc

    async def agent_owning(self, workspace_id: ObjectId, numbers: list[str]) -> dict | None:
        if not numbers:
            return None  # as MongoDB's {"$all": []}: matches nothing

        def work(conn: sqlite3.Connection) -> dict | None:
            owners = {r[0] for r in conn.execute(
                f"SELECT agent_id FROM agent_numbers WHERE number IN ({marks(numbers)})", list(numbers))}
            found = conn.execute(f"SELECT count(DISTINCT number) FROM agent_numbers WHERE number IN ({marks(numbers)})",
                                 list(numbers)).fetchone()[0]
            if len(owners) != 1 or found != len(set(numbers)):
                return None
            doc = one(conn, "SELECT doc FROM agents WHERE id = ?", (owners.pop(),))
            return doc if doc is not None and doc["workspaceId"] == workspace_id else None

        return await self.db.read(work)
