"""How tests/data/dialer-v10-idempotency.db was made: run with the dialer of schema version 10 (commit 5fecc12,
before idempotency answers were sealed) on PYTHONPATH: `python make_v10_idempotency.py OUT.db`. Its idempotency
records are in the first format: named by their Idempotency-Key, the answers (API keys, webhook secrets) in plain."""
import asyncio, datetime as dt, json, os, shutil, sqlite3, sys
from aiohttp.test_utils import TestClient, TestServer
from dialer.composition import build_app
from dialer.core.clock import FixedClock
from dialer.settings import Settings
from dialer.store.sqlite.schema import SCHEMA_VERSION

T = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.timezone.utc)
ADMIN = {"Authorization": "Bearer admin-secret"}

async def main(out):
    data = "/tmp/gen/data"
    shutil.rmtree(data, ignore_errors=True)
    settings = Settings.load(env={}, data_dir=data, admin_token="admin-secret", embedded_dispatcher="false",
                             warm_body_parser=False, webhooks_allow_insecure=True)
    app = build_app(settings, FixedClock(T))
    async with TestClient(TestServer(app)) as client:
        r = await client.post("/api/admin/workspaces", json={"name": "Acme"}, headers={**ADMIN, "Idempotency-Key": "onboard-acme"})
        ws = (await r.json())["data"]; print("workspace", r.status, ws)
        r = await client.post(f"/api/admin/workspaces/{ws['workspaceId']}/keys", data=b"",
                              headers={**ADMIN, "Idempotency-Key": "second-key:2026-12-06"})
        key2 = (await r.json())["data"]; print("key", r.status, key2)
        wk = {"x-api-key": ws["apiKey"]}
        r = await client.post("/api/webhooks/endpoints", json={"url": "http://127.0.0.1:9/hooks"},
                              headers={**wk, "Idempotency-Key": "hook-acme"})
        ep = (await r.json())["data"]; print("endpoint", r.status, ep)
        r = await client.post(f"/api/webhooks/endpoints/{ep['endpointId']}/rotate-secret", data=b"",
                              headers={**wk, "Idempotency-Key": "rotate-acme"})
        rot = (await r.json())["data"]; print("rotate", r.status, rot)
        # A request whose process died before it answered: its record left running by the old code.
        from dialer.api.appkeys import IDEMPOTENCY
        from dialer.services.idempotency import fingerprint_of
        claim = await app[IDEMPOTENCY].claim("admin", "onboard-beta", "POST /api/admin/workspaces",
                                             await fingerprint_of(b'{"name": "Beta"}'))
        print("running", claim)
    print("version", SCHEMA_VERSION)
    src = sqlite3.connect(os.path.join(data, "dialer.db"))
    if os.path.exists(out): os.remove(out)
    dst = sqlite3.connect(out)
    src.backup(dst); dst.execute("PRAGMA journal_mode = DELETE"); dst.commit(); dst.execute("VACUUM"); dst.close()
    for row in sqlite3.connect(out).execute("SELECT id, state FROM idempotency"): print(row)
    print(os.path.getsize(out))

asyncio.run(main(sys.argv[1]))
