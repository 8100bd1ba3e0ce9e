"""The Store: one database handle with named collections; opened inside the running event loop."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient

from dialer.settings import Settings
from dialer.store.indexes import ensure_indexes
from dialer.store.memory import memory_client

log = logging.getLogger("dialer.store")


@dataclass
class Store:
    client: Any
    db: Any
    in_memory: bool

    def __getattr__(self, name: str) -> Any:
        # store.calls, store.batches, ...: the collection of that name.
        if name.startswith("_"):
            raise AttributeError(name)
        return self.db[name]

    async def close(self) -> None:
        result = self.client.close()
        if hasattr(result, "__await__"):
            await result


async def open_store(settings: Settings, database: str | None = None) -> Store:
    name = database or settings.database
    if settings.in_memory:
        client = memory_client()
        log.warning("using the in-memory MongoDB: data does not survive a restart (set MONGODB_URI to keep it)")
    else:
        # Every operation gives up after a quarter of the lease (client-side operation timeout): a
        # dispatcher's claim must land well within the grace period its slot reservation has.
        client = AsyncMongoClient(settings.mongodb_uri, tz_aware=True, timeoutMS=int(settings.lease_seconds * 250))
        log.info("using MongoDB database %r", name)
    store = Store(client=client, db=client[name], in_memory=settings.in_memory)
    await ensure_indexes(store.db, settings.in_memory)
    return store


async def aggregate(collection: Any, pipeline: list[dict]) -> list[dict]:
    """Run a pipeline on either driver: PyMongo's async aggregate() is a coroutine, mongomock-motor's is not."""
    cursor = collection.aggregate(pipeline)
    if inspect.isawaitable(cursor):
        cursor = await cursor
    return await cursor.to_list(None)
