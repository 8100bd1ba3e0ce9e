"""Storage behind the ports of dialer/ports/: `sqlite/` (the embedded default, a file that survives a
restart) and `mongo/` (PyMongo async: the scale-out path).

`open_repositories(settings)` picks the backend: MongoDB when MONGODB_URI is set, else the SQLite file in
DIALER_DATA_DIR (`:memory:` for a private in-memory database that keeps nothing).
"""

from __future__ import annotations

import logging

from dialer.ports import Repositories, StoreOpenFailed
from dialer.settings import Settings

log = logging.getLogger("dialer.store")


async def open_repositories(settings: Settings) -> Repositories:
    if settings.backend == "sqlite":
        from dialer.store.sqlite import open_sqlite

        path = settings.sqlite_path
        repos = await open_sqlite(path, settings.sqlite_synchronous, settings.sqlite_busy_timeout_ms)
        log.info(f"using the SQLite store at {path}", extra={"path": path, "synchronous": settings.sqlite_synchronous})
        return repos
    from dialer.store.mongo import open_mongo

    log.info("using MongoDB database %r", settings.database)
    # Every operation gives up after a quarter of the lease (client-side operation timeout): a
    # dispatcher's claim must land well within the grace period its slot reservation has.
    from pymongo.errors import PyMongoError

    try:
        return await open_mongo(settings.mongodb_uri, settings.database, timeout_ms=int(settings.lease_seconds * 250))
    except PyMongoError as exc:  # a traceback before; the driver's text is not shown: it may quote the URI
        raise StoreOpenFailed(f"cannot use MongoDB (MONGODB_URI, database {settings.database!r}): "
                              f"{type(exc).__name__}: check that the server runs, is reachable from here and "
                              "accepts the URI's user") from None
