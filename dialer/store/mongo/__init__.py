"""The MongoDB backend: the repositories of dialer/ports/ on PyMongo's async driver.

`open_mongo(uri, database)` opens a client inside the running event loop (tz-aware, every operation
bounded by a client-side timeout) and creates the declared indexes. The same repositories run on
mongomock-motor in tests (testing.py).
"""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from dialer.ports import Repositories
from dialer.store.mongo.batches import MongoBatches
from dialer.store.mongo.calls import MongoCalls
from dialer.store.mongo.counters import CounterBuffer
from dialer.store.mongo.dnc import MongoDnc
from dialer.store.mongo.idempotency import MongoIdempotency
from dialer.store.mongo.indexes import ensure_indexes
from dialer.store.mongo.intakes import MongoIntakes
from dialer.store.mongo.caps import MongoCaps
from dialer.store.mongo.ledger import MongoLedger
from dialer.store.mongo.tenancy import MongoTenancy
from dialer.store.mongo.webhooks import MongoWebhooks


async def mongo_repositories(client: Any, db: Any, kind: str = "mongodb") -> Repositories:
    await ensure_indexes(db)
    counters = CounterBuffer(db["batches"])

    async def close() -> None:
        await counters.close()
        result = client.close()
        if hasattr(result, "__await__"):
            await result

    batches, dnc, ledger = MongoBatches(db["batches"]), MongoDnc(db["dnc"]), MongoLedger(db["dispatch"], db["calls"])
    return Repositories(kind=kind, calls=MongoCalls(db["calls"], counters, batches, dnc, ledger), batches=batches,
                        tenancy=MongoTenancy(db), idempotency=MongoIdempotency(db["idempotency"]),
                        ledger=ledger, intakes=MongoIntakes(db["intakes"]),
                        webhooks=MongoWebhooks(db), dnc=dnc, caps=MongoCaps(db["caps"]),
                        closer=close)


async def open_mongo(uri: str, database: str, timeout_ms: int | None = None) -> Repositories:
    client = AsyncMongoClient(uri, tz_aware=True, **({"timeoutMS": timeout_ms} if timeout_ms else {}))
    return await mongo_repositories(client, client[database])
