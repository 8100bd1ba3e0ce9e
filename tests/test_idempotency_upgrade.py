"""Idempotency records written before answers were sealed, read after the upgrade: a retry with their key still
gets the first answer byte for byte, a request cut short still holds its key, expiry is kept, and no key or
secret is left readable in the store.

The old records are real: tests/data/dialer-v10-idempotency.db was written through the API by the dialer of
schema version 10 (tests/data/make_v10_idempotency.py), at 2026-12-06 09:00 UTC: a workspace created, a second
API key, a webhook endpoint and its rotation, each under an Idempotency-Key (one with a colon in it), and one
request whose process died unanswered (its record left running). SQLite upgrades the file (schema version 11);
MongoDB, given the same documents, rewrites them at start-up (dialer/store/mongo/idempotency.py)."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sqlite3
from pathlib import Path

import bson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from dialer import composition
from dialer.core.clock import FixedClock
from dialer.core.sealed_answers import unseal
from dialer.settings import Settings
from dialer.store.mongo import mongo_repositories
from dialer.store.mongo.idempotency import convert_legacy_records
from dialer.store.mongo.testing import mongomock_client
from dialer.store.sqlite.schema import migrate
from tests.test_idempotency_at_rest import AtRest, file_bytes, on_mongomock

OLD_FILE = Path(__file__).parent / "data" / "dialer-v10-idempotency.db"
WRITTEN = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.timezone.utc)
ADMIN = {"Authorization": "Bearer admin-secret"}
TABLES = ("workspaces", "api_keys", "agents", "webhook_endpoints", "idempotency")  # what MongoDB is given


class Old:
    """What the old file holds: its idempotency records by key, and the secrets their answers carry."""

    def __init__(self) -> None:
        conn = sqlite3.connect(OLD_FILE)
        try:
            self.docs = {table: [bson.decode(doc) for doc, in conn.execute(f"SELECT doc FROM {table}")]
                         for table in TABLES}
        finally:
            conn.close()
        self.records = {doc["_id"].partition(":")[2]: doc for doc in self.docs["idempotency"]}
        self.answers = {key: json.loads(doc["body"]["text"])["data"] for key, doc in self.records.items()
                        if doc["state"] == "done"}
        self.workspace = self.answers["onboard-acme"]
        self.api_keys = [self.answers["onboard-acme"]["apiKey"], self.answers["second-key:2026-12-06"]["apiKey"]]
        self.secrets = [self.answers["hook-acme"]["secret"], self.answers["rotate-acme"]["secret"]]


OLD = Old()


def retries() -> list[tuple[str, str, bytes, dict]]:
    """(key, path, body, headers) of each request the old records answered."""
    workspace, endpoint = OLD.workspace["workspaceId"], OLD.answers["hook-acme"]["endpointId"]
    mine = {"x-api-key": OLD.workspace["apiKey"]}
    return [("onboard-acme", "/api/admin/workspaces", b'{"name": "Acme"}', ADMIN),
            ("second-key:2026-12-06", f"/api/admin/workspaces/{workspace}/keys", b"", ADMIN),
            ("hook-acme", "/api/webhooks/endpoints", b'{"url": "http://127.0.0.1:9/hooks"}', mine),
            ("rotate-acme", f"/api/webhooks/endpoints/{endpoint}/rotate-secret", b"", mine)]


async def post(client: TestClient, key: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes, dict]:
    resp = await client.post(path, data=body, headers={**headers, "Idempotency-Key": key})
    return resp.status, await resp.read(), resp.headers


@pytest.fixture(params=["sqlite", "mongomock"])
async def upgraded(request, tmp_path, monkeypatch):
    """(the API app's client on the old records after the upgrade, its clock, the store as read at rest)."""
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings.load(env={}, data_dir=str(data), admin_token="admin-secret", embedded_dispatcher="false",
                             warm_body_parser=False, webhooks_allow_insecure=True)
    if request.param == "sqlite":
        shutil.copy(OLD_FILE, settings.sqlite_path)
        assert all(key.encode() in file_bytes(settings.sqlite_path) for key in OLD.api_keys)  # there before
        at_rest = AtRest("sqlite", settings.sqlite_path)
    else:
        mongo = mongomock_client()
        for table, docs in OLD.docs.items():
            await mongo["dialer"][table].insert_many(docs)
        on_mongomock(monkeypatch, mongo)
        at_rest = AtRest("mongomock", mongo=mongo["dialer"])
    clock = FixedClock(WRITTEN + dt.timedelta(seconds=10))
    client = TestClient(TestServer(composition.build_app(settings, clock)))
    await client.start_server()
    yield client, clock, at_rest
    await client.close()


async def test_old_records_still_answer_their_retries_and_hold_their_keys(upgraded):
    client, clock, _ = upgraded
    for key, path, body, headers in retries():
        code, answer, replayed = await post(client, key, path, body, headers)
        assert (code, replayed.get("Idempotent-Replay")) == (200, "true"), (key, answer)
        assert answer == OLD.records[key]["body"]["text"].encode(), key  # byte for byte
    cut_short = ("onboard-beta", "/api/admin/workspaces", b'{"name": "Beta"}', ADMIN)
    code, answer, _ = await post(client, *cut_short)
    assert code == 409 and b"still being processed" in answer  # its claim (30 s) still runs: found, renamed
    clock.advance(21)
    code, answer, replayed = await post(client, *cut_short)
    assert code == 200 and "Idempotent-Replay" not in replayed and json.loads(answer)["data"]["name"] == "Beta"
    code, again, replayed = await post(client, *cut_short)
    assert (code, again, replayed["Idempotent-Replay"]) == (200, answer, "true")


async def test_old_records_expire_when_they_did(upgraded):
    client, clock, _ = upgraded
    key, path, body, headers = retries()[2]
    clock.set(WRITTEN + dt.timedelta(hours=24) - dt.timedelta(seconds=1))
    code, _, replayed = await post(client, key, path, body, headers)
    assert (code, replayed.get("Idempotent-Replay")) == (200, "true")
    clock.advance(1)
    code, answer, replayed = await post(client, key, path, body, headers)
    assert code == 200 and "Idempotent-Replay" not in replayed
    assert json.loads(answer)["data"]["endpointId"] != OLD.answers[key]["endpointId"]  # a new endpoint


async def test_nothing_of_the_old_records_is_readable_after_the_upgrade(upgraded):
    client, _, at_rest = upgraded
    records = await at_rest.idempotency()
    assert len(records) == len(OLD.records)
    assert all(re.fullmatch(r"(admin|[0-9a-f]{24}):[0-9a-f]{64}", r["_id"]) and r["format"] == 2 for r in records)
    assert {r["state"] for r in records} == {"done", "running"}
    assert all(set(r["body"]) == {"alg", "nonce", "sealed"} for r in records if r["state"] == "done")
    everything = await at_rest.everything()
    for plain in OLD.api_keys + list(OLD.records):
        assert plain.encode() not in everything, plain
    elsewhere = await at_rest.rows(skip=("webhook_endpoints",))  # the endpoint signs with its secrets
    assert not [secret for secret in OLD.secrets if secret.encode() in elsewhere]
    if at_rest.store == "sqlite":
        conn = sqlite3.connect(at_rest.path)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] >= 11
            assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'idempotency%'").fetchone() == (2,)
        finally:
            conn.close()


async def test_the_mongodb_upgrade_runs_at_every_start_and_converts_only_old_records():
    """A second start converts nothing more; an old record written meanwhile (a process of the old version still
    running in a rolling upgrade) is converted by the next start."""
    mongo = mongomock_client()
    collection = mongo["dialer"]["idempotency"]
    first, *later = OLD.docs["idempotency"]
    await collection.insert_one(first)
    await (await mongo_repositories(mongo, mongo["dialer"], kind="mongomock")).close()
    converted = await collection.find({}).to_list(None)
    assert await convert_legacy_records(collection) == 0
    assert await collection.find({}).to_list(None) == converted
    await collection.insert_many(later)
    assert await convert_legacy_records(collection) == len(later)
    assert await collection.count_documents({"format": 2}) == len(OLD.records)
    assert await collection.count_documents({}) == len(OLD.records)


def test_the_sqlite_upgrade_overwrites_the_old_records_even_where_deletes_do_not(tmp_path):
    """The plain records' pages are freed by the upgrade; SQLite keeps a freed page's bytes unless secure_delete
    is on (this machine's build turns it on by default, others do not): the upgrade turns it on for itself."""
    path = str(tmp_path / "dialer.db")
    shutil.copy(OLD_FILE, path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA secure_delete = OFF")
        migrate(conn, path)
        assert conn.execute("PRAGMA secure_delete").fetchone() == (0,)  # the connection's own setting given back
    finally:
        conn.close()
    everything = file_bytes(path)
    assert not [plain for plain in OLD.api_keys + list(OLD.records) if plain.encode() in everything]


async def test_a_record_an_old_process_finishes_during_the_mongodb_upgrade_is_converted_as_finished():
    """A process of the old version still running stores its answer while a new one converts the record: the
    conversion of the running record is undone and done again on the finished one, not the answer lost."""
    mongo = mongomock_client()
    collection = mongo["dialer"]["idempotency"]
    running, finished = OLD.records["onboard-beta"], OLD.records["onboard-acme"]
    await collection.insert_one(running)

    class OldProcessFinishing:
        """The collection, with the old process's finish landing between the upgrade's read and its delete."""

        def __getattr__(self, name):
            return getattr(collection, name)

        async def insert_one(self, doc):
            if doc["state"] == "running":
                await collection.update_one({"_id": running["_id"]}, {"$set": {
                    "state": "done", "code": finished["code"], "body": finished["body"]}})
            return await collection.insert_one(doc)

    assert await convert_legacy_records(OldProcessFinishing()) == 1
    [record] = await collection.find({}).to_list(None)
    assert (record["state"], record["code"], set(record["body"])) == ("done", 200, {"alg", "nonce", "sealed"})
    assert unseal("admin", "onboard-beta", running["scope"], running["fingerprint"], 200, record["body"]) == (
        finished["body"]["text"], finished["body"]["headers"])
