"""Storage behind the ports of dialer/ports.py: `memory/` (the embedded default) and `mongo/` (PyMongo async).

`open_repositories(settings)` picks the backend: MongoDB when MONGODB_URI is set, else the embedded store.
"""

from __future__ import annotations

import logging

from dialer.ports import Repositories
from dialer.settings import Settings

log = logging.getLogger("dialer.store")


async def open_repositories(settings: Settings) -> Repositories:
    if settings.in_memory:
        from dialer.store.memory import open_memory

        log.warning("using the embedded in-memory store: data does not survive a restart (set MONGODB_URI to keep it)")
        return open_memory()
    from dialer.store.mongo import open_mongo

    log.info("using MongoDB database %r", settings.database)
    # Every operation gives up after a quarter of the lease (client-side operation timeout): a
    # dispatcher's claim must land well within the grace period its slot reservation has.
    return await open_mongo(settings.mongodb_uri, settings.database, timeout_ms=int(settings.lease_seconds * 250))
