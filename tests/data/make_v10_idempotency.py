"""How tests/data/dialer-v10-idempotency.db was made: run with the dialer of schema version 10 (commit 5fecc12,
before idempotency answers were sealed) on PYTHONPATH: `python make_v10_idempotency.py OUT.db`. Its idempotency
records are in the first format: named by their Idempotency-Key, the answers (API keys, webhook secrets) in
plain. Not a test (pytest collects test_*.py only); kept to say what the file holds and to make another."""

import asyncio
import datetime as dt
import os
import shutil
import sqlite3
import sys

from aiohttp.test_utils import TestClient, TestServer

from dialer.api.appkeys import IDEMPOTENCY
from dialer.composition import build_app
from dialer.core.clock import FixedClock
from dialer.services.idempotency import fingerprint_of
from dialer.settings import Settings
from dialer.store.sqlite.schema import SCHEMA_VERSION

T = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.timezone.utc)
ADMIN = {"Authorization": "Bearer admin-secret"}


async def post(client: TestClient, path: str, body: bytes, key: str, headers: dict) -> dict:
    resp = await client.post(path, data=body, headers={**headers, "Idempotency-Key": key})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def main(out: str, data: str = "/tmp/make-v10-idempotency") -> None:
    assert SCHEMA_VERSION == 10, "run with the dialer of schema version 10"
    shutil.rmtree(data, ignore_errors=True)
    settings = Settings.load(env={}, data_dir=data, admin_token="admin-secret", embedded_dispatcher="false",
                             warm_body_parser=False, webhooks_allow_insecure=True)
    app = build_app(settings, FixedClock(T))
    async with TestClient(TestServer(app)) as client:
        workspace = await post(client, "/api/admin/workspaces", b'{"name": "Acme"}', "onboard-acme", ADMIN)
        await post(client, f"/api/admin/workspaces/{workspace['workspaceId']}/keys", b"", "second-key:2026-12-06",
                   ADMIN)
        mine = {"x-api-key": workspace["apiKey"]}
        endpoint = await post(client, "/api/webhooks/endpoints", b'{"url": "http://127.0.0.1:9/hooks"}', "hook-acme",
                              mine)
        await post(client, f"/api/webhooks/endpoints/{endpoint['endpointId']}/rotate-secret", b"", "rotate-acme", mine)
        # A request whose process died before it answered: its record left running.
        await app[IDEMPOTENCY].claim("admin", "onboard-beta", "POST /api/admin/workspaces",
                                     await fingerprint_of(b'{"name": "Beta"}'))
    if os.path.exists(out):
        os.remove(out)
    source, copy = sqlite3.connect(os.path.join(data, "dialer.db")), sqlite3.connect(out)
    source.backup(copy)
    copy.execute("PRAGMA journal_mode = DELETE")
    copy.execute("VACUUM")
    copy.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
