"""Reading JSON request bodies without holding the event loop.

orjson parses an 11 MB body (100,000 records) in one C call that holds the GIL for ~120 ms: run in a
thread, it still stops the event loop that long. So large bodies are parsed in a worker process,
which hands back the records as small JSON pieces (1,000 records each) that the event loop reads one
at a time, letting other requests in between. Small bodies, and bodies with integer literals that
may not fit in 64 bits (which only the standard library reads exactly), are parsed in a thread.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import orjson

from dialer.services.errors import Refused

SPLIT_FROM_BYTES = 1 << 20
PIECE_RECORDS = 1000
INLINE_BYTES = 100_000  # below this, parsing in the event loop itself is quicker than any hand-off
PARENT_CHECK_SECONDS = 1.0  # how often the worker process looks whether its server is still there
# An integer literal of 19 digits or more may not fit in 64 bits, and orjson turns such a literal into
# a float without a word (-9223372036854775809 -> -9.223372036854776e+18): a silent change of value.
# Looking for such a run: digits mapped to "9", the rest to " ", then a substring search (both in C,
# ~30 ms for 11 MB, where a regex took ten times that, holding the GIL).
_DIGITS_AS_NINES = bytes(57 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"9" * 19


def has_long_integer(raw: bytes) -> bool:
    return _LONG_RUN in raw.translate(_DIGITS_AS_NINES)


def parse_json(raw: bytes) -> Any:
    """The body as JSON (400 when malformed). Integers keep their exact value: bodies with long digit runs
    are parsed again by the standard library, so validation can refuse the ones MongoDB cannot store
    instead of storing a rounded float."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, "Bad Request", f"malformed JSON: {exc}") from None
    if has_long_integer(raw):
        doc = json.loads(raw)  # orjson has checked it is valid JSON (and has no infinities)
    return doc


def _split(raw: bytes) -> tuple:
    """In the worker process: ("split", the body without call_data, [pieces of call_data]), or
    ("malformed", reason), or ("whole",) when the body must be parsed whole."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return ("malformed", str(exc))
    if has_long_integer(raw) or not isinstance(doc, dict) or not isinstance(doc.get("call_data"), list):
        return ("whole",)
    records = doc.pop("call_data")
    pieces = [orjson.dumps(records[i:i + PIECE_RECORDS]) for i in range(0, len(records), PIECE_RECORDS)]
    return ("split", orjson.dumps(doc), pieces)


def _ready() -> bool:
    return True


def _exit_with_parent(parent: int) -> None:
    """The worker's initializer: it ends when the server that started it (`parent`, named by the server:
    it may be gone before this runs) is gone. A server killed with kill -9 runs no shutdown, and its worker,
    blocked on the pool's queue, would live on, orphaned, holding its memory (found by counting the
    processes a test run left behind)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent,
                               initargs=(os.getpid(),))


class BodyReader:
    """Owns the worker process: started with the server (`start`, so the first large body costs what the
    next ones do), else on the first large body; stopped by close()."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._warming: Any = None

    def start(self) -> None:
        """Start the worker process now, in the background (the server answers meanwhile)."""
        if self._pool is None:
            self._pool = _pool()
            self._warming = self._pool.submit(_ready)

    async def json(self, raw: bytes) -> Any:
        loop = asyncio.get_running_loop()
        if len(raw) < INLINE_BYTES:
            return parse_json(raw)
        if len(raw) < SPLIT_FROM_BYTES:
            return await loop.run_in_executor(None, parse_json, raw)
        if self._pool is None:
            self._pool = _pool()
        answer = await loop.run_in_executor(self._pool, _split, raw)
        if answer[0] == "malformed":
            raise Refused(400, "Bad Request", f"malformed JSON: {answer[1]}")
        if answer[0] == "whole":
            return await loop.run_in_executor(None, parse_json, raw)
        doc, records = orjson.loads(answer[1]), []
        for piece in answer[2]:
            records += orjson.loads(piece)
            await asyncio.sleep(0)
        doc["call_data"] = records
        return doc

    def close(self) -> None:
        pool, self._pool, self._warming = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
