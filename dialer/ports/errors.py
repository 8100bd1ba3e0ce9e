"""What a repository raises: the store failed, or cannot be opened."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The database failed (connection lost, timeout). The message is safe to show: a type name, never
    a document, a query or a connection string."""


class StoreOpenFailed(Exception):
    """The store cannot be opened at start-up (a data directory that cannot be written, a corrupt, foreign
    or newer file). The message says what to do; the process stops with it."""
