"""Bringing calls and batches into a state through the ports' own transitions (no document surgery)."""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

from dialer.core import machine
from dialer.ports import Claim, Finish, Repositories


async def dial(repos: Repositories, call_id: str, now: dt.datetime, token: str = "t-test") -> None:
    claimed = await repos.calls.claim([Claim(ObjectId(call_id), token, "test", now, now + dt.timedelta(minutes=2))],
                                      [], [], now)
    assert claimed.won == {ObjectId(call_id)}


async def ring(repos: Repositories, call_id: str, now: dt.datetime, token: str = "t-test") -> None:
    await dial(repos, call_id, now, token)
    assert await repos.calls.progress(ObjectId(call_id), token, "CA-test", "ringing", now + dt.timedelta(minutes=2),
                                      {"at": now, "event": "ringing"}, None, now)


async def complete(repos: Repositories, call_id: str, now: dt.datetime, token: str = "t-test") -> None:
    await dial(repos, call_id, now, token)
    done = await repos.calls.finish(ObjectId(call_id), token, None, Finish(
        final="completed", outcome="completed", entry={"at": now, "event": "completed"}), now)
    assert done is not None and done[0] == "final"


async def pause(repos: Repositories, batch_id: str, now: dt.datetime) -> None:
    assert await repos.batches.move(ObjectId(batch_id), machine.PAUSE, now)


async def cancel(repos: Repositories, batch_id: str, now: dt.datetime) -> None:
    assert await repos.batches.move(ObjectId(batch_id), machine.CANCEL, now)
