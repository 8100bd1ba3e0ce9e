"""Fault injection for the store: make chosen database operations fail as a dropped connection would."""

from __future__ import annotations

from typing import Any

from pymongo.errors import AutoReconnect


class FaultyCollection:
    """Wraps a collection; the n-th call (1-based) of a named method in `fail_on` raises AutoReconnect."""

    def __init__(self, inner: Any, method: str, fail_on: set[int]) -> None:
        self._inner = inner
        self._method = method
        self._fail_on = fail_on
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != self._method:
            return attr

        def fail_now() -> bool:
            self.calls += 1
            return self.calls in self._fail_on

        if name == "find":  # a cursor factory, not a coroutine
            def wrapped_find(*args: Any, **kwargs: Any) -> Any:
                if fail_now():
                    raise AutoReconnect("injected: connection reset by peer 10.0.0.7:27017")
                return attr(*args, **kwargs)

            return wrapped_find

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            if fail_now():
                raise AutoReconnect("injected: connection reset by peer 10.0.0.7:27017")
            return await attr(*args, **kwargs)

        return wrapped


class FaultyDb:
    def __init__(self, inner: Any, collection: str, method: str, fail_on: set[int]) -> None:
        self._inner = inner
        self._collection = collection
        self.faulty = FaultyCollection(inner[collection], method, fail_on)

    def __getitem__(self, name: str) -> Any:
        return self.faulty if name == self._collection else self._inner[name]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def inject(store: Any, collection: str, method: str, fail_on: set[int]) -> FaultyCollection:
    store.db = FaultyDb(store.db, collection, method, fail_on)
    return store.db.faulty
