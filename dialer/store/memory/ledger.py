"""The slot ledger in memory: the SlotLedger port (see dialer/ports.py).

One state (version, slots per batch, the account's slots, next dial time); `write` is a
compare-and-set on the version. No index: the state is small (one entry per slot in use). Reads and
writes copy the entries, so no caller shares a list or dict with the ledger.
"""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

from dialer.ports import LedgerState
from dialer.store.memory._common import normalised, utc


def _entries(entries: list[dict]) -> list[dict]:
    return [normalised(e) for e in entries]


class MemoryLedger:
    def __init__(self) -> None:
        self._version = 0
        self._slots: dict[str, list[dict]] = {}
        self._all: list[dict] = []
        self._next_dial_at: dt.datetime | None = None

    async def read(self) -> LedgerState:
        return LedgerState(self._version, {b: _entries(e) for b, e in self._slots.items()}, _entries(self._all),
                           self._next_dial_at)

    async def write(self, version: int, slots: dict[str, list[dict]], all_: list[dict],
                    next_dial_at: dt.datetime | None) -> bool:
        if version != self._version:
            return False
        self._slots = {str(b): _entries(e) for b, e in slots.items()}
        self._all = _entries(all_)
        self._next_dial_at = utc(next_dial_at)
        self._version += 1
        return True

    async def release(self, batch_id: ObjectId, call_ids: list[ObjectId], token: str) -> None:
        ids = set(call_ids)
        if not ids:
            return

        def kept(entries: list[dict]) -> list[dict]:
            return [e for e in entries if not (e.get("callId") in ids and e.get("token") == token)]

        key = str(batch_id)
        if key in self._slots:
            self._slots[key] = kept(self._slots[key])
        self._all = kept(self._all)
        self._version += 1
