"""Importing a do-not-call list over HTTP (`dialer dnc import FILE`), against any running server.

The file is a CSV whose header names the phone column (`phone_number`, `phoneNumber` or `phone`, as
`dialer import-csv` reads it: dialer/core/contacts_csv.py), or one number per line (blank lines and lines
starting with `#` skipped). Numbers go to `POST /api/dnc` in chunks (50,000 by default), source `import`,
each chunk under an Idempotency-Key made of the file's digest, the chunk size and the chunk's number.

Resumable: after each chunk the number of chunks done is written to `<FILE>.dnc-progress`; run again, the
import continues after them. A crash between the server's answer and that note costs nothing either: the
chunk is sent again under the same key and the server answers it from its record (and a number listed
twice stays listed once). Impossible numbers are counted and named with their file line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import aiohttp

from dialer.core.contacts_csv import CsvUnreadable, read_contacts
from dialer.core.dnc import MAX_NUMBERS
from dialer.importer import post_keyed, refusal

DEFAULT_CHUNK = 50_000
CSV_HEADERS = ("phone", "phone_number", "phonenumber")


class DncImportFailed(Exception):
    """The import cannot go on (bad file, server error); the message says why, and `resumable` whether running
    the same command again can help (the server failed: yes; a bad file or a refused request, a 4xx: no)."""

    def __init__(self, message: str, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable


@dataclass
class DncImportResult:
    numbers: int = 0
    added: int = 0
    already: int = 0
    repeated: int = 0
    invalid: list[dict] = field(default_factory=list)  # {line, phoneNumber, reason}
    chunks: int = 0
    skipped_chunks: int = 0  # done by an earlier run (its progress note)
    replayed: int = 0  # chunks the server had already answered (a crash after its answer)


def read_numbers(data: bytes) -> list[tuple[int, str]]:
    """(file line, number as written) of every number in the file."""
    first = data.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip().lower()
    if b"," in first or b";" in first or first.decode("utf-8", "replace").strip('"') in CSV_HEADERS:
        try:
            _, rows = read_contacts(data)
        except CsvUnreadable as exc:
            raise DncImportFailed(str(exc)) from None
        return [(line, row["phoneNumber"]) for line, row in rows]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DncImportFailed("the file is not UTF-8") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]


def _progress_path(file: str) -> Path:
    return Path(f"{file}.dnc-progress")


def _done_before(file: str, digest: str, chunk: int) -> int:
    try:
        note = json.loads(_progress_path(file).read_text())
    except (OSError, ValueError):
        return 0
    return note.get("done", 0) if note.get("digest") == digest and note.get("chunk") == chunk else 0


def _note(file: str, digest: str, chunk: int, done: int, total: int) -> None:
    path = _progress_path(file)
    if done >= total:
        path.unlink(missing_ok=True)
        return
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"digest": digest, "chunk": chunk, "done": done}))
    partial.replace(path)


@dataclass(frozen=True)
class DncFile:
    path: str
    digest: str  # of the content: a changed file is a new import
    numbers: list[tuple[int, str]]  # (file line, number as written)

    @classmethod
    def read(cls, path: str) -> "DncFile":
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise DncImportFailed(f"cannot read {path}: {exc.strerror}") from None
        return cls(path, hashlib.sha256(data).hexdigest()[:24], read_numbers(data))


async def import_numbers(session: aiohttp.ClientSession, url: str, key: str, file: DncFile, reason: str | None = None,
                         chunk: int = DEFAULT_CHUNK, progress: Callable[[int], None] | None = None) -> DncImportResult:
    numbers = file.numbers
    chunk = max(1, min(chunk, MAX_NUMBERS))
    result = DncImportResult(numbers=len(numbers))
    total = (len(numbers) + chunk - 1) // chunk
    done = result.skipped_chunks = _done_before(file.path, file.digest, chunk)
    if progress is not None and done:
        progress(min(done * chunk, len(numbers)))
    for n in range(done, total):
        part = numbers[n * chunk:(n + 1) * chunk]
        body = {"numbers": [number for _, number in part], "source": "import", **({"reason": reason} if reason else {})}
        answer, replayed = await _send(session, url, key, f"dnc:{file.digest}:{chunk}:{n}", body)
        result.added += answer["added"]
        result.already += answer["alreadyListed"]
        result.repeated += answer["repeated"]
        result.invalid += [{"line": part[e["index"]][0], "phoneNumber": part[e["index"]][1], "reason": e["reason"]}
                           for e in answer["invalidEntries"]]
        result.chunks += 1
        result.replayed += replayed
        _note(file.path, file.digest, chunk, n + 1, total)
        if progress is not None:
            progress(len(part))
    return result


async def _send(session, url: str, key: str, idem: str, body: dict) -> tuple[dict, bool]:
    status, doc, replayed = await post_keyed(session, f"{url}/api/dnc", key, idem, body, failed=DncImportFailed)
    if status == 200:
        return doc["data"], replayed
    raise DncImportFailed(refusal(status, doc, f"is {url} this dialer's server? (--url or DIALER_URL)"),
                          resumable=status >= 500)
