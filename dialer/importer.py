"""Importing a CSV of contacts into a batch over HTTP (`dialer import-csv`), against any running server.

Rows are read with their header: the phone number's column is `phone_number`, `phoneNumber` or `phone`
(any case); every other column is a variable of the call. UTF-8 with or without a BOM, `,` or `;`
between fields (whichever the header line uses more). Rows go in chunks (1,000 by default) to
addCallsToBatch, each with an Idempotency-Key derived from the file's content, the batch and the
chunk's number: an import interrupted and run again resends the same keys, the server answers the
chunks it already has from its record, and nothing is written twice. A chunk the server refuses
(400: some rows invalid) is sent again without the rows it named, which go to the rejects file with
their reasons (a deterministic key again, so a resumed import takes the same steps).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import aiohttp

from dialer.core.contacts_csv import CsvUnreadable, read_contacts

MAX_ROUNDS = 20  # a chunk is retried without its named bad rows at most this often
MAX_CHUNK = 1000  # the server writes 1,000 records at a time: a request of one such chunk is never a 207
UNAVAILABLE_TRIES = 4  # a 503 (nothing written, the key released) is sent again this often, waiting more each time


class ImportFailed(Exception):
    """The import cannot go on (bad file, unknown batch, server error); the message says why, and `resumable`
    whether running the same command again can help (the server failed or could not be reached: yes; it refused
    the request, a 4xx: no, not until what it says is fixed)."""

    def __init__(self, message: str, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable


@dataclass
class ImportResult:
    rows: int = 0
    added: int = 0  # records written (the server's `added`: new calls and waiting calls updated)
    new: int = 0  # calls created (`inserted`)
    updated: int = 0  # waiting calls the rows updated (a number already waiting in the batch, an earlier chunk's)
    collapsed: int = 0  # rows that repeated a number of their own chunk (`duplicatesCollapsed`)
    in_call: int = 0  # numbers in a call of the batch at the time, not re-enqueued (`inFlight`)
    suppressed: int = 0  # numbers on a do-not-call list, not enqueued (`suppressed`): rows = all of these + rejected
    rejected: int = 0
    chunks: int = 0
    replayed: int = 0  # chunks the server had already (a resumed import)
    rejects: list[dict] = field(default_factory=list)  # {row, phoneNumber, reason}


def read_rows(data: bytes) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, rows as (line number, {column: value})) with the phone column renamed phoneNumber: the
    mapping of dialer/core/contacts_csv.py, which the console's upload uses too."""
    try:
        return read_contacts(data)
    except CsvUnreadable as exc:
        raise ImportFailed(str(exc)) from None


def chunks(rows: list[tuple[int, dict]], size: int) -> Iterator[tuple[int, list[tuple[int, dict]]]]:
    for start in range(0, len(rows), size):
        yield start // size + 1, rows[start:start + size]


async def import_rows(session: aiohttp.ClientSession, url: str, key: str, batch_id: str, data: bytes,
                      chunk_size: int = 1000, progress: Callable[[int], None] | None = None) -> ImportResult:
    _, rows = read_rows(data)
    chunk_size = max(1, min(chunk_size, MAX_CHUNK))
    digest = hashlib.sha256(data).hexdigest()[:24]
    result = ImportResult(rows=len(rows))
    for number, chunk in chunks(rows, chunk_size):
        await _send_chunk(session, url, key, batch_id, f"csv:{digest}:{batch_id}:{chunk_size}:{number}", chunk, result)
        result.chunks += 1
        if progress is not None:
            progress(len(chunk))
    return result


async def _send_chunk(session, url: str, key: str, batch_id: str, base_key: str, chunk: list[tuple[int, dict]],
                      result: ImportResult) -> None:
    pending = chunk
    for attempt in range(MAX_ROUNDS):
        if not pending:
            return
        body = {"batchId": batch_id, "call_data": [record for _, record in pending]}
        status, doc, replay = await post_keyed(session, f"{url}/api/call/addCallsToBatch", key,
                                               f"{base_key}:{attempt}", body)
        if status == 200:
            data = doc["data"]
            result.added += data["added"]
            result.new += data.get("inserted", 0)
            result.updated += data.get("updated", 0)
            result.collapsed += data.get("duplicatesCollapsed", 0)
            result.in_call += len(data.get("inFlight") or ())
            result.suppressed += len(data.get("suppressed") or ())
            result.replayed += replay
            return
        if status == 400 and (doc.get("data") or {}).get("errors"):
            bad = {e["index"]: e["reason"] for e in doc["data"]["errors"]}
            for index, reason in sorted(bad.items()):
                line, record = pending[index]
                result.rejects.append({"row": line, "phoneNumber": record.get("phoneNumber"), "reason": reason})
            result.rejected += len(bad)
            pending = [r for i, r in enumerate(pending) if i not in bad]
            continue
        raise ImportFailed(refusal(status, doc, "check the batch id given to --batch (`dialer batches list`)"),
                           resumable=status >= 500)
    raise ImportFailed("a chunk kept being refused; see the rejects so far")


def refusal(status: int, doc: dict, not_found: str) -> str:
    """What the server's refusal means to the operator: its message, and what to check for the usual 4xx."""
    message = f"the server answered {status}: {doc.get('errorMessage') or doc.get('message')}"
    if status in (401, 403):
        return f"{message}: check the key (--key or DIALER_API_KEY)"
    if status == 404:
        return f"{message}: {not_found}"
    return message


async def post_keyed(session: aiohttp.ClientSession, url: str, key: str, idempotency_key: str, body: Any,
                     failed: type[Exception] = ImportFailed) -> tuple[int, dict, bool]:
    """POST `body` with the workspace key under an Idempotency-Key: (status, JSON answer, replayed). A 503
    (the database failed: nothing was written, the key is free) is sent again up to UNAVAILABLE_TRIES times,
    waiting longer each time; an answer that is not JSON raises `failed`."""
    headers = {"x-api-key": key, "Idempotency-Key": idempotency_key}
    for wait in range(UNAVAILABLE_TRIES):
        async with session.post(url, json=body, headers=headers) as resp:
            try:
                doc = await resp.json(content_type=None) or {}
            except ValueError:
                # a proxy's error page in front of a failed server: running again can help (a 5xx)
                raise failed(f"the server answered {resp.status} without JSON", resumable=resp.status >= 500) from None
            replayed = resp.headers.get("Idempotent-Replay") == "true"
        if resp.status != 503:
            break
        await asyncio.sleep(2 ** wait)
    return resp.status, doc, replayed


def write_rejects(path: str, rejects: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["row", "phoneNumber", "reason"])
        writer.writeheader()
        writer.writerows(rejects)
