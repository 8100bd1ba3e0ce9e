"""The storage contract: one suite, run against every backend of dialer/ports/ through the ports only.

`repos` is parametrised over the backends: "sqlite" (dialer.store.sqlite, on a file in the test's
temporary folder), "mongomock" (the MongoDB
repositories on mongomock-motor) and, when DIALER_TEST_MONGODB_URI is set, "mongodb" (a real server,
a fresh database per test). A backend whose module does not import is skipped, not failed.

Datetimes are whole seconds: MongoDB keeps milliseconds, so compare-and-set on a datetime read back
must not depend on microseconds.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Any

import pytest
from bson import ObjectId

from dialer.core.records import PlannedCall
from dialer.ports import Claim, Repositories, line_key

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
MONGODB_URI = os.environ.get("DIALER_TEST_MONGODB_URI", "")
BACKENDS = ["sqlite", "mongomock"] + ([pytest.param("mongodb", marks=pytest.mark.mongodb)] if MONGODB_URI else [])


def at(seconds: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture(params=BACKENDS)
async def repos(request, tmp_path) -> Repositories:
    kind = request.param
    if kind == "sqlite":
        from dialer.store.sqlite import open_sqlite

        repositories = await open_sqlite(str(tmp_path / "dialer.db"))
        yield repositories
        await repositories.close()
        return
    if kind == "mongomock":
        try:
            from dialer.store.mongo.testing import mongomock_repositories
        except ImportError as exc:
            pytest.skip(f"mongomock backend not importable: {exc}")
        repositories = await mongomock_repositories()
        yield repositories
        await repositories.close()
        return
    try:
        from dialer.store.mongo import open_mongo
    except ImportError as exc:
        pytest.skip(f"MongoDB backend not importable: {exc}")
    name = f"dialer_contract_{uuid.uuid4().hex[:12]}"
    repositories = await open_mongo(MONGODB_URI, name)
    yield repositories
    await repositories.close()
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(MONGODB_URI)
    try:
        await client.drop_database(name)
    finally:
        await client.close()


def planned(e164: str, earliest: dt.datetime | None = T0, *, extension: str | None = None,
            variables: dict | None = None, raw: str | None = None, zones: tuple[str, ...] = ("America/New_York",),
            zone_source: str = "number", index: int = 0) -> PlannedCall:
    return PlannedCall(index=index, e164=e164, raw_phone=raw or e164, extension=extension,
                       variables={} if variables is None else variables, zones=zones, zone_source=zone_source,
                       earliest=earliest)


def batch_doc(status: str = "running", scheduled_at: dt.datetime | None = None, **extra: Any) -> dict:
    return {
        "_id": ObjectId(),
        "workspaceId": ObjectId(),
        "agentId": ObjectId(),
        "name": "contract batch",
        "callingNumbers": ["+14155550100"],
        "concurrencyLimit": 10,
        "callingWindow": {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"},
        "timezone": None,
        "scheduledAt": scheduled_at,
        "retry": {"maxAttempts": 1, "delaySeconds": 0, "on": []},
        "ringingTimeoutSeconds": 60,
        "status": status,
        "createdAt": T0,
        "updatedAt": T0,
        **extra,
    }


async def enqueue(repos: Repositories, batch: dict, *calls: PlannedCall, now: dt.datetime = T0) -> list[ObjectId]:
    result = await repos.calls.enqueue(batch, list(calls), now)
    assert result.error is None
    return [ObjectId(i) for i in result.call_ids]


async def claim(repos: Repositories, call_id: ObjectId, token: str = "tok-1", *, now: dt.datetime = T0,
                lease_until: dt.datetime | None = None, by: str = "dispatcher-a") -> bool:
    lease = lease_until or now + dt.timedelta(seconds=120)
    call = await repos.calls.get(call_id)  # its callee, as the dispatcher's claims name it
    batch = await repos.batches.get(call["batchId"]) if call else None
    line = line_key(batch["workspaceId"], call["phoneNumber"], call.get("extension")) if batch else None
    won = await repos.calls.claim([Claim(call_id, token, by, now, lease, line)], [], [], now)
    return call_id in won.won


@pytest.fixture
async def batch(repos) -> dict:
    """A stored batch: calls belong to one (MongoDB keeps their counters on its document)."""
    doc = batch_doc()
    await repos.batches.insert(doc)
    return doc
