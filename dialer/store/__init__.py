"""Storage: opening MongoDB (real or in-memory), the collections, and the indexes declared in code."""

from dialer.store.database import Store, aggregate, open_store

__all__ = ["Store", "aggregate", "open_store"]
