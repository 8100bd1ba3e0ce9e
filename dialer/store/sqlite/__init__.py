"""The embedded durable backend: the repositories of dialer/ports/ on an SQLite file (WAL mode).

`make run`'s default: one file (`<DIALER_DATA_DIR>/dialer.db`) that outlives the process and that
several processes on one machine share (`dialer serve` and any number of `dialer worker`s): every
compare-and-set is a transaction under the file's write lock. Statements run on store threads, never
on the event loop (database.py); the schema and its migrations are in schema.py; each repository
module names the indexes its queries use. `:memory:` gives a private in-memory database (tests).
"""

from __future__ import annotations

from dialer.ports import Repositories
from dialer.store.sqlite.batches import SqliteBatches
from dialer.store.sqlite.calls import SqliteCalls
from dialer.store.sqlite.caps import SqliteCaps
from dialer.store.sqlite.database import Database
from dialer.store.sqlite.dnc import SqliteDnc
from dialer.store.sqlite.ledger import SqliteLedger
from dialer.store.sqlite.records import SqliteIdempotency, SqliteIntakes
from dialer.store.sqlite.tenancy import SqliteTenancy
from dialer.store.sqlite.webhooks import SqliteWebhooks

DATABASE_FILE = "dialer.db"


async def open_sqlite(path: str, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000) -> Repositories:
    db = Database(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
    await db.open()
    return Repositories(kind="sqlite", calls=SqliteCalls(db), batches=SqliteBatches(db), tenancy=SqliteTenancy(db),
                        idempotency=SqliteIdempotency(db), ledger=SqliteLedger(db), intakes=SqliteIntakes(db),
                        webhooks=SqliteWebhooks(db), dnc=SqliteDnc(db), caps=SqliteCaps(db),
                        closer=db.close, database=db)
