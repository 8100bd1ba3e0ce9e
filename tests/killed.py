"""Stand-ins for a process killed with kill -9 in the middle of a request, for tests that cut one short
in process (tests/test_crash.py kills real processes): what the dead request's code saw last, and the
clean-up it never ran."""

from __future__ import annotations

from typing import Any


class ProcessDied(Exception):
    """What the dead process's request saw last."""


async def died(*args: Any, **kwargs: Any) -> Any:
    raise ProcessDied


async def died_silently(*args: Any, **kwargs: Any) -> None:
    """A dead process runs no more code: it releases, refunds and settles nothing."""


def unanswered(monkeypatch: Any, idempotency: Any) -> None:
    """The request's work is written, then its process dies before its answer is stored: its key stays
    claimed until the claim runs out."""
    monkeypatch.setattr(idempotency, "finish", died)
    monkeypatch.setattr(idempotency, "release", died_silently)


def after_the_first_chunk(monkeypatch: Any, idempotency: Any, calls: Any) -> list:
    """The process dies after writing one chunk of calls (its key stays claimed). The chunk results
    written, to read after the request."""
    enqueue, written = calls.enqueue, []

    async def dies_after_the_first_chunk(*args: Any) -> Any:
        if written:
            raise ProcessDied
        written.append(await enqueue(*args))
        return written[-1]

    monkeypatch.setattr(calls, "enqueue", dies_after_the_first_chunk)
    monkeypatch.setattr(idempotency, "release", died_silently)
    return written
