"""What an idempotency record leaves at rest: an API key or a webhook signing secret answered under an
Idempotency-Key is replayed to a retry with that key, but the store holds neither the secret nor the key in
a readable form (the SQLite file read byte for byte, the MongoDB documents on mongomock). A record that
does not open under the key asking (moved from another key's, or altered) is refused with a 422, never
replayed, never run again, never a 500; expiry still follows the injected clock."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from pathlib import Path

import bson
import pytest

from dialer import composition
from dialer.store.mongo import mongo_repositories
from dialer.store.mongo.testing import mongomock_client

ADMIN = {"Authorization": "Bearer admin-secret"}
ENDPOINTS = "/api/webhooks/endpoints"
HOOK = {"url": "http://127.0.0.1:9/hooks"}


@pytest.fixture(params=["sqlite", "mongomock"])
def store(request, settings) -> str:
    if request.param == "sqlite" and settings.backend != "sqlite":
        pytest.skip("reads the SQLite file")
    return request.param


@pytest.fixture
async def settings(settings):
    return settings.replace(webhooks_allow_insecure=True)


class AtRest:
    """The store as someone who copied it would read it."""

    def __init__(self, store: str, sqlite_path: str | None = None, mongo=None) -> None:
        self.store, self.path, self.db = store, sqlite_path, mongo

    async def rows(self, skip: tuple[str, ...] = ()) -> bytes:
        """Every value of every table (document) but those of the `skip` tables (collections)."""
        if self.store == "mongomock":
            docs = [doc for name in await self.db.list_collection_names() if name not in skip
                    for doc in await self.db[name].find({}).to_list(None)]
            return b"".join(bson.encode(doc) for doc in docs)
        conn = sqlite3.connect(self.path)
        try:
            tables = [t for t, in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") if t not in skip]
            return b"".join(v if isinstance(v, bytes) else str(v).encode()
                            for t in tables for row in conn.execute(f'SELECT * FROM "{t}"') for v in row)
        finally:
            conn.close()

    async def everything(self) -> bytes:
        """SQLite: the file's bytes, free pages included, after a checkpoint of its WAL (and what the WAL still
        holds); MongoDB: every document."""
        if self.store == "mongomock":
            return await self.rows()
        return file_bytes(self.path)

    async def idempotency(self) -> list[dict]:
        if self.store == "mongomock":
            return await self.db["idempotency"].find({}).to_list(None)
        conn = sqlite3.connect(self.path)
        try:
            return [bson.decode(doc) for doc, in conn.execute("SELECT doc FROM idempotency")]
        finally:
            conn.close()

    async def put(self, doc: dict) -> None:
        """Write an idempotency record as someone with write access to the store would."""
        if self.store == "mongomock":
            await self.db["idempotency"].replace_one({"_id": doc["_id"]}, doc, upsert=True)
            return
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("INSERT OR REPLACE INTO idempotency (id, state, expires_at, doc) VALUES (?, ?, ?, ?)",
                         (doc["_id"], doc["state"], int(doc["expiresAt"].timestamp() * 1000), bson.encode(doc)))
        finally:
            conn.close()


def file_bytes(path: str) -> bytes:
    conn = sqlite3.connect(path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()
    wal = Path(path + "-wal")
    return Path(path).read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.fixture
def mongo(store):
    return mongomock_client() if store == "mongomock" else None


def on_mongomock(monkeypatch, client) -> None:
    """The app's repositories: the MongoDB ones over this mongomock client's `dialer` database."""

    async def repositories(_settings):
        return await mongo_repositories(client, client["dialer"], kind="mongomock")

    monkeypatch.setattr(composition, "open_repositories", repositories)


@pytest.fixture
async def app(settings, clock, mongo, monkeypatch):
    """The API app on the store under test."""
    if mongo is not None:
        on_mongomock(monkeypatch, mongo)
    return composition.build_app(settings, clock)


@pytest.fixture
def at_rest(store, settings, mongo) -> AtRest:
    return AtRest(store, settings.sqlite_path, mongo["dialer"] if mongo is not None else None)


async def send(api, path: str, body, key: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await api.client.post(path, data=data, headers={**(headers or api.headers()), "Idempotency-Key": key})
    return resp.status, await resp.read(), resp.headers


async def twice(api, path: str, body, key: str, headers: dict | None = None) -> dict:
    """The answer's data, after checking that a retry with the key gets it again, byte for byte."""
    code, first, _ = await send(api, path, body, key, headers)
    assert code == 200, first
    code, again, replayed = await send(api, path, body, key, headers)
    assert (code, again, replayed.get("Idempotent-Replay")) == (200, first, "true")
    return json.loads(first)["data"]


async def endpoint_count(api) -> int:
    code, doc = await api.get(ENDPOINTS)
    assert code == 200, doc
    return len(doc["data"]["endpoints"])


async def test_secrets_answered_under_a_key_are_replayed_but_not_readable_at_rest(api, at_rest):
    keys = {name: str(uuid.uuid4()) for name in ("workspace", "api-key", "endpoint", "rotation")}
    workspace = await twice(api, "/api/admin/workspaces", {"name": "Acme"}, keys["workspace"], ADMIN)
    second = await twice(api, f"/api/admin/workspaces/{api.workspace_id}/keys", b"", keys["api-key"], ADMIN)
    endpoint = await twice(api, ENDPOINTS, HOOK, keys["endpoint"])
    rotated = await twice(api, f"{ENDPOINTS}/{endpoint['endpointId']}/rotate-secret", b"", keys["rotation"])
    code, _ = await api.get("/api/agents", key=second["apiKey"])
    assert code == 200  # the key shown works
    api_keys = [workspace["apiKey"].encode(), second["apiKey"].encode()]
    secrets = [endpoint["secret"].encode(), rotated["secret"].encode()]
    assert len(await at_rest.idempotency()) == 4

    everything = await at_rest.everything()
    for plain in api_keys + [key.encode() for key in keys.values()]:
        assert plain not in everything
    # The endpoint itself keeps its secrets (it signs with them): nothing else does.
    rows = await at_rest.rows()
    assert all(secret in rows for secret in secrets)  # (the reading sees them where they are)
    elsewhere = await at_rest.rows(skip=("webhook_endpoints",))
    assert not [secret for secret in secrets if secret in elsewhere]


async def test_records_are_named_by_the_keys_hash(api, at_rest):
    key = str(uuid.uuid4())
    await twice(api, ENDPOINTS, HOOK, key)
    [record] = await at_rest.idempotency()
    assert record["_id"] == f"{api.workspace_id}:{hashlib.sha256(key.encode()).hexdigest()}"
    assert (record["state"], record["code"], record["scope"]) == ("done", 200, f"POST {ENDPOINTS}")
    assert set(record["body"]) == {"alg", "nonce", "sealed"}


def moved_to(record: dict, owner: str, other_key: str) -> dict:
    return {**record, "_id": f"{owner}:{hashlib.sha256(other_key.encode()).hexdigest()}"}


def bit_flipped(record: dict) -> dict:
    sealed = bytearray(record["body"]["sealed"])
    sealed[len(sealed) // 2] ^= 1
    return {**record, "body": {**record["body"], "sealed": bytes(sealed)}}


TAMPERED = {
    "a bit of the sealed answer": lambda record, owner, key: bit_flipped(record),
    "its code": lambda record, owner, key: {**record, "code": 201},
    "its scope": lambda record, owner, key: {**record, "scope": f"POST {ENDPOINTS}?again"},
    "an answer in plain": lambda record, owner, key: {**record, "body": {"text": '{"forged": true}', "headers": {}}},
    "its nonce cut": lambda record, owner, key: {**record, "body": {**record["body"], "nonce": b"short"}},
}


@pytest.mark.parametrize("change", sorted(TAMPERED))
async def test_an_altered_record_is_refused_cleanly_and_nothing_is_done_again(api, at_rest, change):
    key = str(uuid.uuid4())
    await twice(api, ENDPOINTS, HOOK, key)
    [record] = await at_rest.idempotency()
    await at_rest.put(TAMPERED[change](record, str(api.workspace_id), key))
    path = ENDPOINTS + ("?again" if change == "its scope" else "")
    code, body, headers = await send(api, path, HOOK, key)
    doc = json.loads(body)
    assert code == 422 and "Idempotent-Replay" not in headers, body
    assert "stored answer cannot be read: use a new key" in doc["errorMessage"]
    assert doc["data"] == {"header": "Idempotency-Key"} and "whsec_" not in body.decode()
    assert await endpoint_count(api) == 1  # not created again


async def test_another_keys_record_does_not_open_under_this_key(api, at_rest):
    """Someone who can write the store copies a record under the name of a key they can send (its hash): the
    answer, sealed under the first key, stays closed."""
    key, other = str(uuid.uuid4()), str(uuid.uuid4())
    await twice(api, ENDPOINTS, HOOK, key)
    [record] = await at_rest.idempotency()
    await at_rest.put(moved_to(record, str(api.workspace_id), other))
    code, body, _ = await send(api, ENDPOINTS, HOOK, other)
    assert code == 422 and "stored answer cannot be read" in json.loads(body)["errorMessage"]
    assert await endpoint_count(api) == 1
    code, _, replayed = await send(api, ENDPOINTS, HOOK, key)  # the first key's own record still opens
    assert code == 200 and replayed["Idempotent-Replay"] == "true"


async def test_a_sealed_answer_expires_by_the_injected_clock(api, clock, settings):
    key = str(uuid.uuid4())
    first = await twice(api, ENDPOINTS, HOOK, key)
    clock.advance(settings.idempotency_ttl_seconds - 1)
    code, body, replayed = await send(api, ENDPOINTS, HOOK, key)
    assert (code, replayed.get("Idempotent-Replay"), json.loads(body)["data"]) == (200, "true", first)
    clock.advance(1)
    code, body, replayed = await send(api, ENDPOINTS, HOOK, key)
    assert code == 200 and "Idempotent-Replay" not in replayed
    assert json.loads(body)["data"]["endpointId"] != first["endpointId"] and await endpoint_count(api) == 2
