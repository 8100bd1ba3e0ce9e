"""Shared fixtures: the API app on an injected clock, against the embedded SQLite store (a file in the
test's temporary folder) and, when DIALER_TEST_MONGODB_URI is set, also against that real MongoDB (a
fresh database per test)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from dialer.api.appkeys import REPOS, TENANCY
from dialer.composition import build_app
from dialer.core.clock import FixedClock
from dialer.settings import Settings

MONGODB_URI = os.environ.get("DIALER_TEST_MONGODB_URI", "")
BACKENDS = ["sqlite"] + ([pytest.param("mongodb", marks=pytest.mark.mongodb)] if MONGODB_URI else [])
# A Monday, 10:00 in New York: the default window is open on the whole US east coast.
T0 = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
async def settings(backend, tmp_path):
    if backend == "sqlite":
        # (warm_body_parser off: a process per test app would cost the suite minutes; the bench measures it)
        yield Settings.load(env={}, data_dir=str(tmp_path / "data"), admin_token="admin-secret",
                            embedded_dispatcher="false", warm_body_parser=False)
        return
    name = f"dialer_test_{uuid.uuid4().hex[:12]}"
    yield Settings.load(env={}, mongodb_uri=MONGODB_URI, database=name, admin_token="admin-secret",
                        embedded_dispatcher="false", warm_body_parser=False)
    client = AsyncMongoClient(MONGODB_URI)
    await client.drop_database(name)
    await client.close()


@pytest.fixture
def engine_settings(settings):
    """Dispatchers on the simulator in simulated seconds, with the rate and the account out of the way."""
    return settings.replace(calls_per_second=1000.0, max_concurrent_calls=1000, lease_seconds=120,
                            provider="simulator", sim_time_scale=1.0)


@dataclass
class Api:
    """An HTTP client bound to a workspace: its key, its agent, and envelope-aware helpers."""

    client: Any
    app: Any
    key: str
    workspace_id: Any
    agent: dict

    def headers(self, key: str | None = None, **extra: str) -> dict:
        return {"x-api-key": key or self.key, **extra}

    async def post(self, path: str, body: Any = None, *, key: str | None = None, raw: bytes | None = None,
                   headers: dict | None = None) -> tuple[int, dict]:
        kwargs = {"data": raw} if raw is not None else {"json": body}
        resp = await self.client.post(path, headers={**self.headers(key), **(headers or {})}, **kwargs)
        return resp.status, await resp.json()

    async def get(self, path: str, *, key: str | None = None) -> tuple[int, dict]:
        resp = await self.client.get(path, headers=self.headers(key))
        return resp.status, await resp.json()

    async def create_batch(self, **settings: Any) -> str:
        body = {"name": "test batch", "agentId": str(self.agent["_id"]), **settings}
        status, doc = await self.post("/api/call/createBatch", body)
        assert status == 200, doc
        return doc["data"]["batchId"]

    async def add_calls(self, batch_id: str, records: list, **kw: Any) -> tuple[int, dict]:
        return await self.post("/api/call/addCallsToBatch", {"batchId": batch_id, "call_data": records}, **kw)

    async def all_calls(self, batch_id: str, status: str = "") -> list[dict]:
        calls, cursor = [], None
        while True:
            query = f"?limit=1000&status={status}" + (f"&cursor={cursor}" if cursor else "")
            code, doc = await self.get(f"/api/call/batches/{batch_id}/calls{query}")
            assert code == 200, doc
            calls += doc["data"]["calls"]
            cursor = doc["data"]["nextCursor"]
            if not cursor:
                return calls

    @property
    def store(self):
        return self.app[REPOS]

    @property
    def tenancy(self):
        return self.app[TENANCY]


async def make_api(client, app, agent_spec: dict | None = None) -> Api:
    tenancy = app[TENANCY]
    workspace, key = await tenancy.create_workspace(f"ws-{uuid.uuid4().hex[:6]}")
    spec = agent_spec or {"name": "agent", "requiredVariables": [], "callingNumbers": [f"+1415555{uuid.uuid4().int % 10000:04d}"],
                          "timezones": ["America/New_York"]}
    agent = await tenancy.create_agent(workspace["_id"], spec)
    return Api(client, app, key, workspace["_id"], agent)


@pytest.fixture
async def app(settings, clock):
    return build_app(settings, clock)


@pytest.fixture
async def client(aiohttp_client, app):
    return await aiohttp_client(app)


@pytest.fixture
async def api(client, app) -> Api:
    return await make_api(client, app)


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI installs its JSON log handler on the root logger: put things back after each test."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
