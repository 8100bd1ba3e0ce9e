"""The embedded storage backend: our own indexed in-memory store, implementing every port of
dialer/ports.py (calls, batches, tenancy, idempotency, enrollment intakes, the slot ledger) in one process.

It owns the documents and the indexes that answer each port method without scanning: sorted lists
and dicts kept up to date on every change (each module's docstring names its indexes). Every method
is `async` to match the Protocols but does its work synchronously, so it is atomic on the event loop
(compare-and-set holds without locks), and it never hands out or keeps a caller's dict: documents
are copied in and out. Nothing survives a restart.
"""

from __future__ import annotations

from dialer.ports import Repositories
from dialer.store.memory.batches import MemoryBatches
from dialer.store.memory.calls import MemoryCalls
from dialer.store.memory.idempotency import MemoryIdempotency
from dialer.store.memory.intakes import MemoryIntakes
from dialer.store.memory.ledger import MemoryLedger
from dialer.store.memory.tenancy import MemoryTenancy

__all__ = ["MemoryBatches", "MemoryCalls", "MemoryIdempotency", "MemoryIntakes", "MemoryLedger", "MemoryTenancy", "open_memory"]


def open_memory() -> Repositories:
    return Repositories(kind="memory", calls=MemoryCalls(), batches=MemoryBatches(), tenancy=MemoryTenancy(),
                        idempotency=MemoryIdempotency(), ledger=MemoryLedger(), intakes=MemoryIntakes(),
                        closer=None)
