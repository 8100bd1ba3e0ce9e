"""Fault injection at the ports: make chosen calls of a repository method fail as a dropped database
connection does (the MongoDB repositories raise StoreUnavailable for it, see test_mongo_repositories)."""

from __future__ import annotations

from typing import Any

from dialer.ports import StoreUnavailable


class Fault:
    def __init__(self, fail_on: set[int]) -> None:
        self.fail_on = fail_on
        self.calls = 0


def inject(repo: Any, method: str, fail_on: set[int]) -> Fault:
    """The n-th call (1-based) of `repo.method` in `fail_on` raises StoreUnavailable, for every holder
    of the repository (the method is replaced on the instance)."""
    fault = Fault(fail_on)
    original = getattr(repo, method)

    async def failing(*args: Any, **kwargs: Any) -> Any:
        fault.calls += 1
        if fault.calls in fault.fail_on:
            raise StoreUnavailable("database error: AutoReconnect")
        return await original(*args, **kwargs)

    setattr(repo, method, failing)
    return fault
